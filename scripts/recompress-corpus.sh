#!/usr/bin/env bash
# Makes the formats Debian's upstream tarballs rarely come in from some of them, with the real
# tools: zstd (-3, -19, --long), lzip (-6, -9), plzip (several members), bzip2 from lbzip2 (its
# own blocks and tables), and gzip streams from encoders no recipe candidate models (zopfli,
# pigz -11, 7-Zip). Each output is named
# NAME__TOOL.tar.EXT, so that scripts/bench-recipes.sh reports each tool on a row of its own.
# For scripts/bench-recipes.sh. Not a test.
#
#   scripts/recompress-corpus.sh [DEBIAN_CORPUS [DIR]]
#     defaults: ~/.cache/swh-bridge/corpus (see scripts/bench-recipes.sh) and
#     ~/.cache/swh-bridge/recompressed-corpus
set -euo pipefail

cache=${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge
source=${1:-$cache/corpus}
dir=${2:-$cache/recompressed-corpus}
for tool in zstd lzip.lzip plzip lbzip2 zopfli pigz 7z; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: zstd lzip plzip lbzip2 zopfli pigz p7zip-full)" >&2; exit 1; }
done
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every fourth .tar.gz under 4 MB by size: small and large, many upstreams.
mapfile -t picked < <(find "$source" -maxdepth 1 -name '*.tar.gz' -size -4M -printf '%s %p\n' | sort -n | awk 'NR % 4 == 1 {print $2}')
for tarball in "${picked[@]}"; do
  name=$(basename "$tarball" .tar.gz)
  gzip -dc "$tarball" > "$tmp/plain.tar"
  make() { # TAG EXT COMMAND: COMMAND reads plain.tar and writes to standard output
    local out="$dir/${name}__$1.tar.$2"
    [ -s "$out" ] || (cd "$tmp" && sh -c "$3" > "$out.part" && mv "$out.part" "$out")
  }
  make zstd3 zst "zstd -q -3 -c plain.tar"
  make zstd19 zst "zstd -q -19 -c plain.tar"
  make zstdlong zst "zstd -q --long -T0 -c plain.tar"
  make lzip6 lz "lzip.lzip -6 -c plain.tar"
  make lzip9 lz "lzip.lzip -9 -c plain.tar"
  make plzip lz "plzip -0 -c plain.tar"
  make lbzip2 bz2 "lbzip2 -9 -c plain.tar"
  make zopfli gz "zopfli -c plain.tar"
  make pigz11 gz "pigz -11 -c plain.tar"
  make 7z gz "7z a -tgzip -mx=9 -so plain.tar.gz plain.tar 2>/dev/null"
done
echo "$(ls "$dir" | wc -l) files in $dir"
