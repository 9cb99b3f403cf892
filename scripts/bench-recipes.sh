#!/usr/bin/env bash
# Benchmarks recipes on real upstream files: for each, `recipe create` (which rebuilds the file
# once to check itself), then `recipe apply` from the unpacked tree (what GNU tar extracts; for
# zips, what Python's shutil extracts, as SWH's loaders do), compared byte for byte; and plain
# decompression of the same file (`gzip -dc`, `xz -dc`, `bzip2 -dc`, `zstd -dc`, `lzip -dc`,
# `unzip -p`) for scale. On the same tarballs in the same run, Debian's pristine-tar
# (`gendelta`, then `gentar` from the unpacked tree) where it handles the format (gzip, xz,
# bzip2). Prints, per kind of file: files, round trips, failures with reasons, median and p95
# recipe size (bytes and % of the file), median create and apply times, apply time over
# decompression; then both tools side by side: round trips, median and p95 recipe or delta
# size, the median of delta over recipe on files both rebuild, create and apply times. Not a
# test.
#
#   scripts/bench-recipes.sh [CORPUS_DIR...]   default: ~/.cache/swh-bridge/corpus, filled by
#       ../shared/corpus/fetch-debian-orig.sh ../shared/corpus/debian-orig-tarballs.tsv DIR,
#     ~/.cache/swh-bridge/package-corpus, filled by scripts/fetch-package-corpus.sh, and
#     ~/.cache/swh-bridge/recompressed-corpus, filled by scripts/recompress-corpus.sh
#   NO_PRISTINE_TAR=1 skips pristine-tar.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge
[ $# -gt 0 ] || set -- "$cache/corpus" "$cache/package-corpus" "$cache/recompressed-corpus"
for corpus in "$@"; do
  [ -d "$corpus" ] || { echo "no corpus at $corpus: see the comment at the top of this script" >&2; exit 1; }
done
pristine_tar=$(command -v pristine-tar || true)
[ -n "$pristine_tar" ] || [ -n "${NO_PRISTINE_TAR:-}" ] || { echo "pristine-tar is missing (Debian: pristine-tar), or set NO_PRISTINE_TAR=1" >&2; exit 1; }
[ -z "${NO_PRISTINE_TAR:-}" ] || pristine_tar=
cargo build --release --quiet
bridge=${CARGO_TARGET_DIR:-$PWD/target}/release/swh-bridge

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$bridge" "$work" "$pristine_tar" "$@" <<'PY'
import os, shutil, statistics, subprocess, sys, time

bridge, work, pristine_tar, corpora = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
decompressors = {"gz": ["gzip", "-dc"], "xz": ["xz", "-dc"], "bz2": ["bzip2", "-dc"], "zst": ["zstd", "-qdc"],
                 "lz": ["lzip", "-dc"], "zip": ["unzip", "-p"]}

def kind_of(name):
    """The row a file counts in, and how it is compressed (recompressed files, NAME__TOOL.tar.EXT,
    get a row per tool)."""
    if name.endswith(".crate.gz"):
        return "crate", "gz"
    ext = name.rsplit(".", 1)[-1]
    if "__" in name and ext in ("gz", "zst", "lz"):
        return f"{ext}:{name.rsplit('__', 1)[1].split('.')[0]}", ext
    return {"tgz": ("npm", "gz"), "whl": ("whl", "zip"), "jar": ("jar", "zip"), "zip": ("zip", "zip"),
            "gz": ("gz", "gz"), "xz": ("xz", "xz"), "bz2": ("bz2", "bz2")}.get(ext, (None, None))

def pristine(path, tree):
    """pristine-tar on the same file: gendelta, then gentar from the unpacked top folder."""
    delta, rebuilt = os.path.join(work, "pt.delta"), os.path.join(work, "pt.rebuilt" + os.path.splitext(path)[1])
    for leftover in (delta, rebuilt):
        if os.path.exists(leftover):
            os.remove(leftover)
    # pristine-tar names the compressor by the file's extension.
    named = os.path.join(work, "pt-input.tar" + os.path.splitext(path)[1])
    shutil.copyfile(path, named)
    create_s, created = timed([pristine_tar, "gendelta", named, delta])
    if created.returncode != 0:
        return None
    entries = os.listdir(tree)
    top = os.path.join(tree, entries[0]) if len(entries) == 1 and os.path.isdir(os.path.join(tree, entries[0])) else tree
    apply_s, applied = timed([pristine_tar, "gentar", delta, rebuilt], cwd=top)
    if applied.returncode != 0 or open(rebuilt, "rb").read() != open(path, "rb").read():
        return None
    return os.path.getsize(delta), create_s, apply_s

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
                       "ratio": [], "pt_files": 0, "pt_ok": 0, "pt_bytes": [], "pt_create": [], "pt_apply": [],
                       "pt_over_ours": []}
    row = rows.setdefault(kind, new_row())
    # Every file also counts in its compression's total ("all gz", "all zip"), which the targets
    # are about.
    total = totals.setdefault("all " + compression if ":" not in kind else "all recompressed", new_row())
    for r in (row, total):
        r["files"] += 1
    recipe = os.path.join(work, name + ".recipe")
    if os.path.exists(recipe):
        os.remove(recipe)
    create_s, created = timed([bridge, "recipe", "create", path, "-o", recipe])
    tree = os.path.join(work, "tree")
    shutil.rmtree(tree, ignore_errors=True)
    os.mkdir(tree)
    if compression == "zip":
        shutil.unpack_archive(path, tree, "zip")
    else:
        subprocess.run(["tar", "-xf", path, "-C", tree], check=True)
    theirs = None
    if pristine_tar and compression in ("gz", "xz", "bz2"):
        theirs = pristine(path, tree)
        for r in (row, total):
            r["pt_files"] += 1
            if theirs:
                r["pt_ok"] += 1
                r["pt_bytes"].append(theirs[0])
                r["pt_create"].append(theirs[1])
                r["pt_apply"].append(theirs[2])
    if created.returncode != 0:
        row["failures"].append((name, created.stderr.decode(errors="replace").strip().splitlines()[-1]))
        total["failures"].append(row["failures"][-1])
        continue
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
        if theirs:
            r["pt_over_ours"].append(theirs[0] / recipe_bytes)

def p95(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]

print(f"{'format':16} {'files':>5} {'ok':>4} {'median B':>9} {'p95 B':>7} {'median %':>9} {'p95 %':>6} "
      f"{'create s':>9} {'apply s':>8} {'apply/decompress':>17}")
for kind, row in list(rows.items()) + sorted(totals.items()):
    if not row["ok"]:
        print(f"{kind:16} {row['files']:5} {0:4}")
        continue
    print(f"{kind:16} {row['files']:5} {row['ok']:4} {statistics.median(row['bytes']):9.0f} {p95(row['bytes']):7.0f} "
          f"{statistics.median(row['pct']):8.2f}% {p95(row['pct']):5.2f}% {statistics.median(row['create']):9.2f} "
          f"{statistics.median(row['apply']):8.2f} {statistics.median(row['ratio']):16.1f}x")
if pristine_tar:
    print()
    print(f"{'format':16} {'files':>5} {'ok':>9} {'median B':>15} {'p95 B':>15} {'delta/recipe':>12} {'':>11}"
          f"{'create s':>11} {'apply s':>11}   (swh-bridge / pristine-tar)")
    for kind, row in list(rows.items()) + sorted(totals.items()):
        if not row["pt_files"]:
            continue
        # "-" where a tool rebuilt none of the files (pristine-tar on lbzip2's).
        def med(key, spec):
            return format(statistics.median(row[key]), spec) if row[key] else "-"
        def top(key):
            return format(p95(row[key]), ".0f") if row[key] else "-"
        ratio = med("pt_over_ours", ".1f") + "x" if row["pt_over_ours"] else "-"
        least = format(min(row["pt_over_ours"]), ".1f") + "x" if row["pt_over_ours"] else "-"
        print(f"{kind:16} {row['files']:5} {row['ok']:4}/{row['pt_ok']:<4} {med('bytes', '.0f'):>7}/{med('pt_bytes', '.0f'):<7} "
              f"{top('bytes'):>7}/{top('pt_bytes'):<7} "
              f"{ratio:>12} (min {least}) {med('create', '.2f'):>5}/{med('pt_create', '.2f'):<5} "
              f"{med('apply', '.2f'):>5}/{med('pt_apply', '.2f'):<5}")
for kind, row in rows.items():
    for name, reason in row["failures"]:
        print(f"failed: {name}: {reason}")
PY
