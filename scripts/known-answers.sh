#!/usr/bin/env bash
# Prints the known answers the unit tests record, as the reference tools give them: run it once
# (after scripts/test.sh has installed the tools) and copy what a section prints into the test
# that names it. The inputs are fixed here, so the answers never change.
#
#   scripts/known-answers.sh encodings     hashing/known_answers.rs: nix32, SRI of fixed digests
#   scripts/known-answers.sh store-paths   store/path.rs: nix-store --print-fixed-path
#   scripts/known-answers.sh tree          hashing/known_answers.rs: a small tree's NAR and SWHIDs
#   scripts/known-answers.sh tarball       recipes/mod.rs: a tiny tar.gz by GNU tar and gzip
set -euo pipefail
export NIX_CONFIG=$'substituters =\nexperimental-features = nix-command'
venv="${SWH_BRIDGE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge/venv}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The small tree: a file, an executable, a symlink, a nested directory, an empty file; names
# whose NAR order (bytes) and git order (directories sort as if `/` followed) differ.
make_tree() {
  mkdir -p "$1/a" "$1/a.b"
  printf 'hello\n' > "$1/a/f"
  printf '#!/bin/sh\n' > "$1/run" && chmod 755 "$1/run"
  : > "$1/a.b/empty" && chmod 644 "$1/a/f" "$1/a.b/empty"
  ln -s a/f "$1/link"
}

case "${1:-}" in
  encodings)
    for text in hello ''; do
      for algo in md5 sha1 sha256 sha512; do
        hex=$(printf '%s' "$text" | "${algo}sum" | cut -d' ' -f1)
        echo "$algo \"$text\": hex $hex"
        echo "  nix32 $(nix hash to-base32 --type "$algo" "$hex")"
        echo "  sri   $(nix hash to-sri --type "$algo" "$hex")"
      done
    done
    ;;
  store-paths)
    hello() { printf hello | "${1}sum" | cut -d' ' -f1; }
    nix-store --print-fixed-path sha256 "$(hello sha256)" hello-2.12.1.tar.gz
    nix-store --print-fixed-path --recursive sha256 "$(hello sha256)" source
    nix-store --print-fixed-path sha512 "$(hello sha512)" foo.patch
    nix-store --print-fixed-path --recursive sha1 "$(hello sha1)" git-src
    nix-store --print-fixed-path md5 "$(hello md5)" a.txt
    ;;
  tree)
    make_tree "$work/tree"
    echo "nar (base64): $(nix-store --dump "$work/tree" | base64 -w0)"
    echo "nar sha256: $(nix-hash --type sha256 --base32 "$work/tree")"
    echo "swhid: $("$venv/bin/swh" identify --no-filename "$work/tree")"
    echo "a/f: $(git hash-object "$work/tree/a/f")"
    ;;
  tarball)
    make_tree "$work/tiny-1.0"
    (cd "$work" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - tiny-1.0 | gzip -9n > tiny.tar.gz)
    echo "tar.gz (base64): $(base64 -w0 "$work/tiny.tar.gz")"
    echo "sha256: $(sha256sum "$work/tiny.tar.gz" | cut -d' ' -f1)"
    # The extraction root (the directory holding the top folder), as SWH's loaders archive it.
    mkdir "$work/root" && tar -C "$work/root" -xzf "$work/tiny.tar.gz"
    echo "extraction root: $("$venv/bin/swh" identify --no-filename "$work/root")"
    echo "gzip: $(gzip --version | head -n1); tar: $(tar --version | head -n1)"
    ;;
  *)
    sed -n '2,9p' "$0" >&2
    exit 2
    ;;
esac
