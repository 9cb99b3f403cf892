#!/usr/bin/env bash
# Benchmarks swh-bridge's tree hashing against the reference tools, in one run, with warm caches,
# and prints times and ratios. Not a test: figures depend on the machine; the ratios are what the
# README records.
#
#   scripts/bench.sh [TREE]      TREE defaults to ~/.rustup (about 2.7 GB in 120,000 files)
#
# Needs hyperfine (Debian package), nix-hash (nix-bin) and swh identify (the venv scripts/test.sh
# creates); installs hyperfine if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

tree=${1:-$HOME/.rustup}
runs=${BENCH_RUNS:-5}
venv="${SWH_BRIDGE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge/venv}"
swh="$venv/bin/swh"

command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
command -v nix-hash >/dev/null || { echo "nix-hash is missing: run scripts/test.sh once" >&2; exit 1; }
[ -x "$swh" ] || { echo "$swh is missing: run scripts/test.sh once" >&2; exit 1; }

cargo build --release --quiet
bridge=${CARGO_TARGET_DIR:-$PWD/target}/release/swh-bridge

bytes=$(du -sb "$tree" | cut -f1)
files=$(find "$tree" | wc -l)
echo "tree: $tree, $((bytes / 1000000)) MB in $files entries; $(nproc) cores"
if [ "$bytes" -lt 1000000000 ] || [ "$files" -lt 50000 ]; then
  echo "warning: the targets are set for a tree of at least 1 GB and 50,000 files" >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The plain-SHA-256 baseline: the tree's NAR as one file, in RAM where the machine allows.
nar_dir=/dev/shm; [ -w "$nar_dir" ] || nar_dir=$work
nar=$(mktemp -p "$nar_dir" bench-XXXXXX.nar)
trap 'rm -rf "$work" "$nar"' EXIT
"$bridge" nar dump "$tree" > "$nar"
nar_bytes=$(stat -c %s "$nar")

# Warm the page cache and check that everyone agrees before timing anyone.
[ "$("$bridge" hash path --format hex "$tree")" = "$(nix-hash --type sha256 "$tree")" ] || { echo "NAR hashes differ" >&2; exit 1; }
[ "$("$bridge" hash path --type swhid --any-exec-bit "$tree")" = "$("$swh" identify --no-filename "$tree")" ] || { echo "SWHIDs differ" >&2; exit 1; }

# hf NAME RUNS WARMUP COMMAND
hf() { hyperfine --style none --runs "$2" --warmup "$3" --export-json "$work/$1.json" -n "$1" "$4" >/dev/null 2>&1; }
hf nix-hash "$runs" 1 "nix-hash --type sha256 '$tree'"
hf nar "$runs" 1 "'$bridge' hash path '$tree'"
hf all "$runs" 1 "'$bridge' hash path --type all '$tree'"
hf swhid "$runs" 1 "'$bridge' hash path --type swhid --any-exec-bit '$tree'"
hf identify 2 0 "'$swh' identify --no-filename '$tree'"
hf sha256 "$runs" 1 "'$bridge' hash file '$nar'"

python3 - "$work" "$nar_bytes" <<'PY'
import json, sys
work, nar_bytes = sys.argv[1], int(sys.argv[2])
t = {name: json.load(open(f"{work}/{name}.json"))["results"][0] for name in
     ["nix-hash", "nar", "all", "swhid", "identify", "sha256"]}
mean = {k: v["mean"] for k, v in t.items()}
sd = {k: v["stddev"] or 0.0 for k, v in t.items()}
rows = [
    ("NAR sha256 (swh-bridge hash path)", "nar", "nix-hash", 0.7),
    ("directory SWHID (swh-bridge hash path --type swhid)", "swhid", "identify", 0.2),
    ("NAR + SWHID in one pass (--type all)", "all", "nix-hash", 1.0),
]
print(f"{'':55} {'seconds':>15}")
for name, label in [("nix-hash --type sha256", "nix-hash"), ("swh identify", "identify")]:
    print(f"{name:55} {mean[label]:7.2f} ± {sd[label]:4.2f}")
for name, key, ref, target in rows:
    ratio = mean[key] / mean[ref]
    verdict = "meets" if ratio <= target else "MISSES"
    print(f"{name:55} {mean[key]:7.2f} ± {sd[key]:4.2f}   {ratio:5.2f}x {ref}  (target <= {target}x: {verdict})")
mb = nar_bytes / 1e6
print(f"{'plain sha256 of the same bytes (one NAR file)':55} {mean['sha256']:7.2f} ± {sd['sha256']:4.2f}   {mb / mean['sha256']:6.0f} MB/s")
print(f"{'NAR sha256 of the tree':55} {'':15}   {mb / mean['nar']:6.0f} MB/s "
      f"({mean['sha256'] / mean['nar']:.0%} of the plain sha256 rate)")
PY
