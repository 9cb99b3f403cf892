#!/usr/bin/env bash
# Benchmarks recipes on real upstream files: for each, `recipe create` (which rebuilds the file
# once to check itself), then `recipe apply` from the unpacked tree (what GNU tar extracts; for
# zips, what Python's shutil extracts, as SWH's loaders do), compared byte for byte; and plain
# decompression of the same file (`gzip -dc`, `xz -dc`, `bzip2 -dc`, `unzip -p`) for scale.
# Prints, per kind of file: files, round trips, failures with reasons, median and p95 recipe
# size (bytes and % of the file), median create and apply times, and apply time over
# decompression. Not a test.
#
#   scripts/bench-recipes.sh [CORPUS_DIR...]   default: ~/.cache/swh-bridge/corpus, filled by
#       ../shared/corpus/fetch-debian-orig.sh ../shared/corpus/debian-orig-tarballs.tsv DIR
#     and ~/.cache/swh-bridge/package-corpus, filled by scripts/fetch-package-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge
[ $# -gt 0 ] || set -- "$cache/corpus" "$cache/package-corpus"
for corpus in "$@"; do
  [ -d "$corpus" ] || { echo "no corpus at $corpus: see the comment at the top of this script" >&2; exit 1; }
done
cargo build --release --quiet
bridge=${CARGO_TARGET_DIR:-$PWD/target}/release/swh-bridge

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$bridge" "$work" "$@" <<'PY'
import os, shutil, statistics, subprocess, sys, time

bridge, work, corpora = sys.argv[1], sys.argv[2], sys.argv[3:]
decompressors = {"gz": ["gzip", "-dc"], "xz": ["xz", "-dc"], "bz2": ["bzip2", "-dc"], "zip": ["unzip", "-p"]}

def kind_of(name):
    """The row a file counts in, and how it is compressed."""
    if name.endswith(".crate.gz"):
        return "crate", "gz"
    ext = name.rsplit(".", 1)[-1]
    return {"tgz": ("npm", "gz"), "whl": ("whl", "zip"), "jar": ("jar", "zip"), "zip": ("zip", "zip"),
            "gz": ("gz", "gz"), "xz": ("xz", "xz"), "bz2": ("bz2", "bz2")}.get(ext, (None, None))

def timed(cmd, **kw):
    start = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL if kw.pop("quiet", False) else subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)
    return time.perf_counter() - start, result

rows, totals = {}, {}
files = sorted((name, os.path.join(corpus, name)) for corpus in corpora for name in os.listdir(corpus))
for name, path in files:
    kind, compression = kind_of(name)
    if kind is None:
        continue
    size = os.path.getsize(path)
    new_row = lambda: {"files": 0, "ok": 0, "failures": [], "bytes": [], "pct": [], "create": [], "apply": [],
                       "ratio": []}
    row = rows.setdefault(kind, new_row())
    # Every file also counts in its compression's total ("all gz", "all zip"), which the targets
    # are about.
    total = totals.setdefault("all " + compression, new_row())
    for r in (row, total):
        r["files"] += 1
    recipe = os.path.join(work, name + ".recipe")
    create_s, created = timed([bridge, "recipe", "create", path, "-o", recipe])
    if created.returncode != 0:
        row["failures"].append((name, created.stderr.decode(errors="replace").strip().splitlines()[-1]))
        total["failures"].append(row["failures"][-1])
        continue
    tree = os.path.join(work, "tree")
    shutil.rmtree(tree, ignore_errors=True)
    os.mkdir(tree)
    if compression == "zip":
        shutil.unpack_archive(path, tree, "zip")
    else:
        subprocess.run(["tar", "-xf", path, "-C", tree], check=True)
    rebuilt = os.path.join(work, "rebuilt")
    if os.path.exists(rebuilt):
        os.remove(rebuilt)
    apply_s, applied = timed([bridge, "recipe", "apply", recipe, "--tree", tree, "-o", rebuilt])
    if applied.returncode != 0 or open(rebuilt, "rb").read() != open(path, "rb").read():
        row["failures"].append((name, "apply: " + applied.stderr.decode(errors="replace").strip()))
        total["failures"].append(row["failures"][-1])
        continue
    decompress_s = min(timed(decompressors[compression] + [path], quiet=True)[0] for _ in range(3))
    recipe_bytes = os.path.getsize(recipe)
    for r in (row, total):
        r["ok"] += 1
        r["bytes"].append(recipe_bytes)
        r["pct"].append(100.0 * recipe_bytes / size)
        r["create"].append(create_s)
        r["apply"].append(apply_s)
        r["ratio"].append(apply_s / decompress_s)

def p95(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]

print(f"{'format':7} {'files':>5} {'ok':>4} {'median B':>9} {'p95 B':>7} {'median %':>9} {'p95 %':>6} "
      f"{'create s':>9} {'apply s':>8} {'apply/decompress':>17}")
for kind, row in list(rows.items()) + sorted(totals.items()):
    if not row["ok"]:
        print(f"{kind:7} {row['files']:5} {0:4}")
        continue
    print(f"{kind:7} {row['files']:5} {row['ok']:4} {statistics.median(row['bytes']):9.0f} {p95(row['bytes']):7.0f} "
          f"{statistics.median(row['pct']):8.2f}% {p95(row['pct']):5.2f}% {statistics.median(row['create']):9.2f} "
          f"{statistics.median(row['apply']):8.2f} {statistics.median(row['ratio']):16.1f}x")
for kind, row in rows.items():
    for name, reason in row["failures"]:
        print(f"failed: {name}: {reason}")
PY
