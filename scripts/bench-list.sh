#!/usr/bin/env bash
# Benchmarks `swh-bridge list` on a real Nixpkgs-derived package set against Nix itself, in one
# run: the sources it lists against the ground truth (the fixed-output derivations with a `url`
# or `urls` in the derivation closure of the top-level attributes that evaluate, found with
# `nix-instantiate`, `nix-store -qR` and `nix show-derivation`), and its wall time and peak memory
# against `nix-instantiate` of those attributes plus `nix-store -qR`. Optionally, nixpkgs-swh's
# find-tarballs.nix on the same attributes (adapted to Nix 2.8: outputHash left unconverted).
# Not a test: the figures depend on the machine; the ratios are what the README records.
#
#   scripts/bench-list.sh CHECKOUT [FIND_TARBALLS_NIX]
#
# CHECKOUT is a package set such as Auxolotl Core (github:auxolotl/core); FIND_TARBALLS_NIX is
# nixpkgs-swh's scripts/find-tarballs.nix. Needs nix-bin (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(realpath "${1:?usage: scripts/bench-list.sh CHECKOUT [FIND_TARBALLS_NIX]}")
find_tarballs=${2:-}
jobs=$(nproc)
export NIX_CONFIG=$'substituters =\nexperimental-features = nix-command'

cargo build --release --quiet
bridge=${CARGO_TARGET_DIR:-$PWD/target}/release/swh-bridge
work=$(mktemp -d)
# Nix leaves its store directories read-only.
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# Runs a command; prints its wall time and the peak resident memory of its whole process tree.
cat > "$work/measure.py" <<'PY'
import json, os, subprocess, sys, time

def tree_rss(root):
    children = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(pid))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total

out, cmd = sys.argv[1], sys.argv[2:]
start = time.time()
proc = subprocess.Popen(cmd, stdout=open(out, "wb"), stderr=open(out + ".err", "wb"))
peak = 0
while proc.poll() is None:
    peak = max(peak, tree_rss(proc.pid))
    time.sleep(0.05)
if proc.returncode != 0:
    sys.exit(f"{' '.join(cmd)[:200]} failed:\n" + open(out + ".err").read()[-2000:])
print(json.dumps({"seconds": time.time() - start, "peak_kib": peak}))
PY
measure() { python3 "$work/measure.py" "$@"; }

echo "package set: $checkout ($(git -C "$checkout" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')); $jobs cores"

# 1. The top-level attributes that evaluate, each instantiated on its own (the reference roots).
# (`nix eval`, not `nix-instantiate --eval`: Nix 2.8's read-only evaluation cannot import a path
# it has only hashed, which Auxolotl's "${path}/packages.nix" does.)
nix eval --store "$work/probe" --impure --json --expr "builtins.attrNames (import $checkout { })" | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))' > "$work/names"
mkdir "$work/roots"
xargs -d '\n' -P "$jobs" -I{} sh -c 'nix-instantiate --store "$1/probe" "$2" -A "$3" > "$1/roots/$3" 2>/dev/null || rm -f "$1/roots/$3"' _ "$work" "$checkout" {} < "$work/names"
ls "$work/roots" > "$work/evaluating"
echo "top-level attributes: $(wc -l < "$work/names"), of which $(wc -l < "$work/evaluating") instantiate"

# 2. Nix itself: one nix-instantiate of those attributes (as one list: `-A` after `-A` would
# import the package set again for each), then their .drv closure.
names_nix=$(sed 's/.*/"&"/' "$work/evaluating" | tr '\n' ' ')
roots_nix="let p = import $checkout { }; in map (n: p.\${n}) [ $names_nix ]"
nix_inst=$(measure "$work/root-drvs" nix-instantiate --store "$work/nix" -E "$roots_nix")
nix_qr=$(measure "$work/closure" sh -c "sed 's/!.*//' '$work/root-drvs' | sort -u | xargs nix-store --store '$work/nix' -qR")

# 3. The ground truth: the closure's fixed outputs with a url or urls, by nix show-derivation.
grep '\.drv$' "$work/closure" | sort -u | xargs -n 2000 nix show-derivation --store "$work/nix" > "$work/shown"
python3 - "$work/shown" > "$work/truth" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
decoder, pos, truth = json.JSONDecoder(), 0, set()
while pos < len(text):
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    shown, pos = decoder.raw_decode(text, pos)
    for drv in shown.values():
        out = drv["outputs"].get("out", {})
        if out.get("hash") and ("url" in drv["env"] or "urls" in drv["env"]):
            truth.add(out["path"])
print("\n".join(sorted(truth)))
PY

# 4. swh-bridge list, one evaluator and one per core, each into its own throwaway store.
list_1=$(measure "$work/list-1.out" "$bridge" list "$checkout" --no-narinfo --jobs 1 -o "$work/list-1.json" --json)
list_n=$(measure "$work/list-n.out" "$bridge" list "$checkout" --no-narinfo --jobs "$jobs" -o "$work/list-n.json" --json)

# 5. nixpkgs-swh's find-tarballs.nix on the same attributes, if given.
ft='null'
if [ -n "$find_tarballs" ]; then
  # Nix 2.8 has no builtins.convertHash: the hash is left as the expression wrote it.
  python3 - "$find_tarballs" "$work/find-tarballs.nix" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
start = text.index("outputHash = if builtins.hasAttr")
end = text.index("outputHashAlgo =", start)
open(sys.argv[2], "w").write(text[:start] + 'outputHash = drv.outputHash or "";\n    ' + text[end:])
PY
  ft=$(measure "$work/ft.json" nix eval --store "$work/ft-store" --impure --json -I "nixpkgs=$checkout" \
    --expr "import $work/find-tarballs.nix { expr = $roots_nix; }" || echo '"failed"')
fi

python3 - "$work" "$nix_inst" "$nix_qr" "$list_1" "$list_n" "$ft" "$jobs" <<'PY'
import json, sys
work, nix_inst, nix_qr, list_1, list_n, ft, jobs = sys.argv[1], *map(json.loads, sys.argv[2:7]), sys.argv[7]
truth = set(open(f"{work}/truth").read().split())
def listed(name):
    return {s["nixStorePath"] for s in json.load(open(f"{work}/{name}.json"))["sources"]}
nix_seconds = nix_inst["seconds"] + nix_qr["seconds"]
nix_peak = max(nix_inst["peak_kib"], nix_qr["peak_kib"])
print(f"ground truth: {len(truth)} fixed outputs with a url or urls")
print(f"nix-instantiate + nix-store -qR     {nix_seconds:7.1f} s  peak {nix_peak / 1024:6.0f} MiB")
for label, run, name in [("1", list_1, "list-1"), (jobs, list_n, "list-n")]:
    got = listed(name)
    summary = json.load(open(f"{work}/{name}.out"))
    print(f"swh-bridge list --jobs {label:<2}          {run['seconds']:7.1f} s  peak {run['peak_kib'] / 1024:6.0f} MiB"
          f"  {run['seconds'] / nix_seconds:4.2f}x time  {run['peak_kib'] / nix_peak:4.2f}x memory"
          f"  recall {len(got & truth) / len(truth):6.1%}  ({len(got)} listed, {len(got - truth)} not in the truth,"
          f" {len(summary['url_less'])} URL-less outputs, {len(summary['failed'])} failed attributes)")
if ft == "failed":
    print("find-tarballs.nix (nixpkgs-swh) failed (its error above)")
elif ft is not None:
    found = json.load(open(f"{work}/ft.json"))
    paths = {entry["nixStorePath"] for entry in found}
    print(f"find-tarballs.nix (nixpkgs-swh)     {ft['seconds']:7.1f} s  peak {ft['peak_kib'] / 1024:6.0f} MiB"
          f"  {ft['seconds'] / nix_seconds:4.2f}x time  recall {len(paths & truth) / len(truth):6.1%}  ({len(found)} listed)")
PY
