#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs the reference tools the tests
# compare against (Nix from Debian's nix-bin, git, zip, zstd, Ruby's gem, zopfli, 7-Zip, pigz, lzip, plzip, ncompress, lbzip2 and pbzip2,
# Chromium to render the audit's HTML report, and a Python venv with Python's zlib-ng and Software Heritage's
# packages: swh-model for `swh identify`, swh-lister for its nixguix lister, and swh-storage,
# swh-web, swh-loader-core and swh-loader-git for a real archive on loopback, swh-vault for its
# bundle cooker),
# then runs formatting, lint and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v nix-store >/dev/null || need_apt+=(nix-bin)
command -v git >/dev/null || need_apt+=(git)
command -v zip >/dev/null || need_apt+=(zip)
command -v unzip >/dev/null || need_apt+=(unzip)
command -v zstd >/dev/null || need_apt+=(zstd)
command -v gem >/dev/null || need_apt+=(ruby)
command -v chromium >/dev/null || need_apt+=(chromium)
# Deflate encoders no recipe candidate models (recorded parses).
command -v zopfli >/dev/null || need_apt+=(zopfli)
command -v 7z >/dev/null || need_apt+=(p7zip-full)
command -v pigz >/dev/null || need_apt+=(pigz)
command -v lzip.lzip >/dev/null || need_apt+=(lzip)
command -v plzip >/dev/null || need_apt+=(plzip)
command -v compress >/dev/null || need_apt+=(ncompress)
# bzip2 encoders other than bzip2 itself: lbzip2 writes its own blocks (recorded streams).
command -v lbzip2 >/dev/null || need_apt+=(lbzip2)
command -v pbzip2 >/dev/null || need_apt+=(pbzip2)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} from Debian"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

venv="${SWH_BRIDGE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge/venv}"
if ! "$venv/bin/swh" identify --help >/dev/null 2>&1 \
  || ! "$venv/bin/python" -c 'import zlib_ng, swh.lister.nixguix.lister, swh.storage, swh.web, swh.loader.core, swh.loader.git, swh.vault.cookers' 2>/dev/null; then
  echo "installing Software Heritage's packages into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'swh.model[cli]' 'swh.lister==7.4.0' \
    swh-storage swh-objstorage swh-web swh-loader-core swh-loader-git swh-vault 'zlib-ng==1.1.0'
fi
export PATH="$venv/bin:$PATH"
# Tests never reach a binary cache: the default substituter is off this machine.
export NIX_CONFIG=$'substituters =\nexperimental-features = nix-command'

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
