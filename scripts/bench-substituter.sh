#!/usr/bin/env bash
# Benchmarks `serve` as a substituter against a binary cache made by `nix copy --to file://…`
# served by a plain static server (Python's threaded http.server), in one run, on cache hits:
# narinfo latency, NAR throughput, and `nix-store -r` of every source into an empty store.
# The sources: FLAT random files (incompressible, like source tarballs) and TREES small text
# trees, added to a throwaway store with `nix-store --add-fixed`, then copied to two file://
# caches (xz, Nix's default, and `compression=none`). serve gets them once through its
# `--binary-cache` way (its "archive" is the static server, which has nothing: every lookup is a
# quick 404), which fills its cache; then every server is
# measured on the same requests. Not a test: the figures depend on the machine.
#
#   scripts/bench-substituter.sh [FLAT] [TREES]
set -euo pipefail
cd "$(dirname "$0")/.."
flat=${1:-200}
trees=${2:-50}
export NIX_CONFIG=$'substituters =\nexperimental-features = nix-command'
cargo build --release --quiet
bridge=${CARGO_TARGET_DIR:-$PWD/target}/release/swh-bridge
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    chmod -R u+w "$work" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The sources, in a store of their own.
python3 - "$work/src" "$flat" "$trees" <<'PY'
import os, random, sys
root, flat, trees = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1)
os.makedirs(f"{root}/flat"); os.makedirs(f"{root}/trees")
for i in range(flat):
    size = int(4096 * (256 ** rng.random()))  # 4 KiB to 1 MiB, log-uniform
    with open(f"{root}/flat/file-{i}.tar.gz", "wb") as f:
        f.write(rng.randbytes(size))
words = "source tree build make install test check config main lib src doc".split()
for i in range(trees):
    for j in range(30):
        path = f"{root}/trees/tree-{i}/dir-{j % 5}/file-{j}.c"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(" ".join(rng.choice(words) for _ in range(rng.randint(300, 3000))))
PY
store="$work/store"
nix-store --store "$store" --add-fixed sha256 "$work"/src/flat/* > "$work/flat.paths"
nix-store --store "$store" --add-fixed --recursive sha256 "$work"/src/trees/* > "$work/tree.paths"
cat "$work/flat.paths" "$work/tree.paths" > "$work/all.paths"
nix copy --from "$store" --to "file://$work/bc-xz" $(cat "$work/all.paths") 2>/dev/null
nix copy --from "$store" --to "file://$work/bc-none?compression=none" $(cat "$work/all.paths") 2>/dev/null

# sources.json, as the lister writes it.
python3 - "$work" <<'PY'
import base64, hashlib, json, subprocess, sys
work = sys.argv[1]
sources = []
for kind in ["flat", "tree"]:
    for path in open(f"{work}/{kind}.paths").read().split():
        name = path.split("-", 1)[1]
        if kind == "flat":
            digest = hashlib.sha256(open(f"{work}/src/flat/{name}", "rb").read()).digest()
        else:
            nix32 = subprocess.run(["nix-store", "--store", f"{work}/store", "-q", "--hash", path],
                                   capture_output=True, text=True, check=True).stdout.strip()
            hexed = subprocess.run(["nix", "hash", "to-base16", nix32], capture_output=True, text=True,
                                   check=True).stdout.strip()
            digest = bytes.fromhex(hexed)
        sources.append({"type": "url", "urls": [f"http://127.0.0.1:1/{name}"],
                        "integrity": "sha256-" + base64.b64encode(digest).decode(),
                        "outputHashMode": "flat" if kind == "flat" else "recursive", "nixStorePath": path})
json.dump({"version": 1, "sources": sources}, open(f"{work}/sources.json", "w"))
PY

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
static() {
    local port
    port=$(free_port)
    python3 -m http.server --bind 127.0.0.1 --directory "$1" "$port" >/dev/null 2>&1 &
    pids+=($!)
    echo "http://127.0.0.1:$port"
}
xz_url=$(static "$work/bc-xz")
none_url=$(static "$work/bc-none")
port=$(free_port)
"$bridge" serve --listen "127.0.0.1:$port" --sources "$work/sources.json" --data-dir "$work/data" \
    --archive "$none_url/api/1/" --binary-cache "$none_url" --max-resolutions 8 2>"$work/serve.log" &
pids+=($!)
serve_url="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$serve_url/nix-cache-info" >/dev/null && break; sleep 0.1; done

# narinfo latency and NAR throughput over keep-alive connections, sequentially; serve's first
# pass fills its cache and is not counted.
python3 - "$work/all.paths" "$serve_url" "$none_url" "$xz_url" <<'PY' | tee "$work/http.txt"
import http.client, statistics, sys, time, urllib.parse
paths = open(sys.argv[1]).read().split()
servers = {"swh-bridge serve": sys.argv[2], "static, compression=none": sys.argv[3], "static, xz": sys.argv[4]}
def connect(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port)
def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"GET {path}: {r.status} {body[:200]!r}")
    return body
warm = connect(servers["swh-bridge serve"])
for p in paths:
    get(warm, f"/{p[11:43]}.narinfo")
for name, url in servers.items():
    conn = connect(url)
    latencies, nar_urls = [], []
    for _ in range(3):
        for p in paths:
            started = time.perf_counter()
            info = get(conn, f"/{p[11:43]}.narinfo").decode()
            latencies.append(time.perf_counter() - started)
            nar_urls.append(next(l[5:] for l in info.splitlines() if l.startswith("URL: ")))
    nar_urls = nar_urls[: len(paths)]
    started = time.perf_counter()
    size = sum(len(get(conn, "/" + u)) for u in nar_urls)
    seconds = time.perf_counter() - started
    latencies.sort()
    print(f"{name:26} narinfo p50 {statistics.median(latencies) * 1e3:5.2f} ms  "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:5.2f} ms   "
          f"NARs {size / 1e6:6.1f} MB in {seconds:5.2f} s = {size / 1e6 / seconds:7.1f} MB/s")
PY

# nix-store -r of every source into an empty store, from each cache alone.
realise() {
    local target="$work/realise-$RANDOM"
    local started ended
    started=$(date +%s.%N)
    nix-store --store "$target" -r $(cat "$work/all.paths") --option substituters "$1" \
        --option require-sigs true --option trusted-public-keys '' >/dev/null 2>"$work/realise.err" \
        || { tail -5 "$work/realise.err" >&2; return 1; }
    ended=$(date +%s.%N)
    chmod -R u+w "$target"; rm -rf "$target"
    python3 -c "print(f'{$ended - $started:.2f}')"
}
echo "nix-store -r of $(wc -l < "$work/all.paths") paths ($flat flat, $trees trees), require-sigs, no keys (5 rounds, order rotated):"
: > "$work/realise.txt"
for round in 1 2 3 4 5; do
    order=("serve $serve_url" "none $none_url" "xz $xz_url")
    for i in $(seq 0 2); do
        set -- ${order[$(((i + round) % 3))]}
        echo "$1 $(realise "$2")" >> "$work/realise.txt"
    done
done
python3 - "$work/realise.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, seconds = line.split()
    runs.setdefault(name, []).append(float(seconds))
base = statistics.median(runs["none"])
for name, label in [("serve", "swh-bridge serve"), ("none", "static, compression=none"), ("xz", "static, xz")]:
    median = statistics.median(runs[name])
    print(f"  {label:26} median {median:5.2f} s  ({median / base:4.2f}x static none)  runs {' '.join(f'{s:.2f}' for s in runs[name])}")
PY
