#!/usr/bin/env bash
# Benchmarks fetching a large tree through the vault path: `swh-bridge fetch --mode recursive`
# downloads a flat bundle (tar.gz, top folder named by the SWHID, members in sorted order as
# the vault's cooker writes them) over loopback, unpacks it, NAR-hashes it on the way and
# renames it into place. Compared with `nix-hash` alone on the same tree, in one run. Not a test.
#
#   scripts/bench-vault.sh [TREE]   TREE defaults to a copy of a Rust toolchain's share/ and
#                                   lib/ (about 1.2 GB in 53,000 entries)
#
# The vault is played by a small local HTTP server (the local SWH setup has no vault service):
# it answers the ExtID lookup, says the bundle is cooked, and serves it.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${BENCH_RUNS:-5}
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
command -v nix-hash >/dev/null || { echo "nix-hash is missing: run scripts/test.sh once" >&2; exit 1; }

cargo build --release --quiet
bridge=${CARGO_TARGET_DIR:-$PWD/target}/release/swh-bridge

work=$(mktemp -d)
server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid"; rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
  tree=$1
else
  toolchain=$(ls -d "$HOME"/.rustup/toolchains/*/ | head -1)
  tree=$work/tree
  mkdir -p "$tree"
  cp -a "$toolchain/share" "$tree/"
  cp -a "$toolchain/lib" "$tree/"
fi
bytes=$(du -sb "$tree" | cut -f1)
files=$(find "$tree" | wc -l)
echo "tree: $tree, $((bytes / 1000000)) MB in $files entries; $(nproc) cores"

nar_hex=$(nix-hash --type sha256 "$tree")
[ "$("$bridge" hash path --format hex "$tree")" = "$nar_hex" ] || { echo "NAR hashes differ" >&2; exit 1; }
swhid=$("$bridge" hash path --type swhid "$tree")
mkdir "$work/vault"
# Python's tarfile (the cooker) writes each directory's entries sorted; GNU tar's --sort=name
# does the same, and -9 is tarfile's default gzip level.
tar -C "$(dirname "$tree")" --sort=name --transform "s,^$(basename "$tree"),$swhid,S" -cf - "$(basename "$tree")" \
  | gzip -9 > "$work/vault/bundle.tar.gz"
echo "bundle: $(( $(stat -c %s "$work/vault/bundle.tar.gz") / 1000000 )) MB"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 - "$port" "$work/vault/bundle.tar.gz" "$nar_hex" "$swhid" <<'PY' &
import http.server, json, os, shutil, sys
port, bundle, nar_hex, swhid = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Vault(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def answer(self, body, kind="application/json"):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) if isinstance(body, bytes) else os.path.getsize(body)))
        self.end_headers()
        if isinstance(body, bytes):
            self.wfile.write(body)
        else:
            with open(body, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 20)
    def do_GET(self):
        if self.path.startswith(f"/api/1/extid/nar-sha256/hex:{nar_hex}/"):
            self.answer(json.dumps({"extid_type": "nar-sha256", "extid_version": 1, "target": swhid}).encode())
        elif self.path == f"/api/1/vault/flat/{swhid}/raw/":
            self.answer(bundle, "application/gzip")
        else:
            self.send_error(404)
    def do_POST(self):
        self.answer(json.dumps({"status": "done"}).encode())
http.server.ThreadingHTTPServer(("127.0.0.1", port), Vault).serve_forever()
PY
server_pid=$!
sleep 1

# The unpacked trees go to tmpfs where the machine has one: creating and deleting 53,000 files
# on a VM's disk costs anywhere from 1 to 12 s of kernel time from one run to the next, which
# would drown what is measured here (the same holds for GNU tar).
shm=/dev/shm; [ -w "$shm" ] || shm=$work
out=$(mktemp -d -p "$shm" bench-vault-XXXXXX)
rmdir "$out"
trap '[ -n "$server_pid" ] && kill "$server_pid"; rm -rf "$work" "$out" "$out.data"' EXIT
fetch="'$bridge' fetch --mode recursive --algo sha256 $nar_hex -o '$out' --walk-limit 0 --archive http://127.0.0.1:$port/api/1/"
eval "$fetch --no-cache"
[ "$(nix-hash --type sha256 "$out")" = "$nar_hex" ] || { echo "the fetched tree differs" >&2; exit 1; }

# Each run starts with the previous run's files removed and every dirty page written back, so
# that no run pays for another's writeback.
sync
hf() { hyperfine --style none --runs "$runs" --warmup 1 --export-json "$work/$1.json" -n "$1" "${@:2}" >/dev/null 2>&1; }
hf nix-hash "nix-hash --type sha256 '$tree'"
hf gunzip "gzip -dc '$work/vault/bundle.tar.gz' > /dev/null"
hf untar --prepare "rm -rf '$out'; mkdir '$out'; sync" "tar -xzf '$work/vault/bundle.tar.gz' -C '$out'"
hf fetch --prepare "rm -rf '$out'; sync" "$fetch --no-cache"
hf fetch-cached --prepare "rm -rf '$out' '$out.data'; sync" "$fetch --data-dir '$out.data'"

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
t = {n: json.load(open(f"{work}/{n}.json"))["results"][0]
     for n in ["nix-hash", "gunzip", "untar", "fetch", "fetch-cached"]}
print(f"{'':58} {'seconds':>15}")
for name, key in [("nix-hash --type sha256 (the tree, warm)", "nix-hash"),
                  ("gzip -dc of the bundle alone", "gunzip"),
                  ("GNU tar -xzf of the bundle (unpack only, no check)", "untar"),
                  ("fetch from the bundle: unpack + NAR-verify + rename", "fetch"),
                  ("the same, also keeping the NAR in the cache", "fetch-cached")]:
    r = t[key]
    ratio = "" if key == "nix-hash" else f"   {r['mean'] / t['nix-hash']['mean']:5.2f}x nix-hash"
    print(f"{name:58} {r['mean']:7.2f} ± {r['stddev'] or 0:4.2f}{ratio}")
PY
