#!/usr/bin/env bash
# Benchmarks the lister's post-processing and `sources diff` against `jq -c .` over the same
# inputs, in one run: a synthetic raw evaluation of N sources (default 200,000) is normalised,
# mirror-expanded, deduplicated and written; then two such outputs are compared.
#
#   scripts/bench-lister.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000}
runs=${BENCH_RUNS:-5}
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }
cargo build --release --quiet
bridge=${CARGO_TARGET_DIR:-$PWD/target}/release/swh-bridge

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/gen-raw-evaluation.py "$n" 1 > "$work/raw-old.json"
python3 scripts/gen-raw-evaluation.py "$n" 2 > "$work/raw-new.json"
"$bridge" list --no-narinfo --from-raw "$work/raw-old.json" -o "$work/old.json" 2>/dev/null
"$bridge" list --no-narinfo --from-raw "$work/raw-new.json" -o "$work/new.json" 2>/dev/null
echo "raw evaluation: $n records, $(($(stat -c %s "$work/raw-old.json") / 1000000)) MB; sources.json: $(($(stat -c %s "$work/old.json") / 1000000)) MB"

hf() { hyperfine --style none --runs "$runs" --warmup 1 --export-json "$work/$1.json" -n "$1" "$2" >/dev/null 2>&1; }
hf post-process "'$bridge' list --no-narinfo --from-raw '$work/raw-old.json' -o '$work/out.json'"
hf jq-raw "jq -c . '$work/raw-old.json' > /dev/null"
hf diff "'$bridge' sources diff '$work/old.json' '$work/new.json' > /dev/null 2>&1"
hf jq-both "jq -c . '$work/old.json' '$work/new.json' > /dev/null"

rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
post_rss=$(rss "$bridge" list --no-narinfo --from-raw "$work/raw-old.json" -o "$work/out.json")
diff_rss=$(rss "$bridge" sources diff "$work/old.json" "$work/new.json")

python3 - "$work" "$post_rss" "$diff_rss" <<'PY'
import json, sys
work, post_rss, diff_rss = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = {k: json.load(open(f"{work}/{k}.json"))["results"][0]["mean"] for k in ["post-process", "jq-raw", "diff", "jq-both"]}
print(f"post-processing (list --from-raw)   {m['post-process']:6.2f} s  {m['post-process'] / m['jq-raw']:5.2f}x jq -c . ({m['jq-raw']:.2f} s)  peak {post_rss / 1024:.0f} MiB")
print(f"sources diff of two files           {m['diff']:6.2f} s  {m['diff'] / m['jq-both']:5.2f}x jq -c . ({m['jq-both']:.2f} s)  peak {diff_rss / 1024:.0f} MiB")
PY
