#!/usr/bin/env bash
# Benchmarks `swh-bridge load` capturing the recipes of a corpus: the files are served over
# loopback by Python's http.server, listed in a sources.json with their sha256, and loaded into an
# empty recipe store; the same files then go through `recipe create` alone, which is the
# computing part of a capture. Prints sources per second, and the share of the load's wall time
# that was not computing (downloading, hashing on the way, writing). Not a test.
#
#   scripts/bench-load.sh [CORPUS_DIR]   default: ~/.cache/swh-bridge/package-corpus, filled by
#                                        scripts/fetch-package-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."

corpus=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge/package-corpus}
[ -d "$corpus" ] || { echo "no corpus at $corpus: see the comment at the top of this script" >&2; exit 1; }
cargo build --release --quiet
bridge=$PWD/target/release/swh-bridge

work=$(mktemp -d)
server_pid=
trap '[ -n "$server_pid" ] && kill "$server_pid"; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$corpus" "$port" >/dev/null 2>&1 &
server_pid=$!
sleep 1

python3 - "$bridge" "$corpus" "$work" "$port" <<'PY'
import base64, hashlib, json, os, subprocess, sys, time

bridge, corpus, work, port = sys.argv[1:5]
names = sorted(n for n in os.listdir(corpus) if not n.startswith("."))
sources = []
for name in names:
    digest = hashlib.sha256(open(os.path.join(corpus, name), "rb").read()).digest()
    url = f"http://127.0.0.1:{port}/{name}"
    # The bench names .crate files .crate.gz; the loader knows .crate.
    sources.append({"type": "url", "urls": [url], "integrity": "sha256-" + base64.b64encode(digest).decode(),
                    "outputHashAlgo": "sha256", "outputHashMode": "flat"})
with open(os.path.join(work, "sources.json"), "w") as f:
    json.dump({"version": 1, "sources": sources}, f)

start = time.perf_counter()
# No archive: nothing is archived on loopback, and a miss must not reach the public one.
load = subprocess.run([bridge, "load", "--json", "--no-cache", "--archive", "http://127.0.0.1:9/api/1/",
                       os.path.join(work, "sources.json"), "--recipes", os.path.join(work, "recipes"),
                       "--state", os.path.join(work, "state.sqlite")], capture_output=True, text=True)
load_s = time.perf_counter() - start
statuses = [json.loads(line)["status"] for line in load.stdout.splitlines()]
captured = statuses.count("captured")

start = time.perf_counter()
attempted = [name for name, status in zip(names, statuses) if status in ("captured", "failed")]
for name in attempted:
    subprocess.run([bridge, "recipe", "create", os.path.join(corpus, name), "-o", os.path.join(work, "r")],
                   capture_output=True)
create_s = time.perf_counter() - start

print(f"{len(names)} files, {captured} captured, {statuses.count('failed')} failed, "
      f"{statuses.count('skipped')} skipped")
print(f"load:            {load_s:6.2f} s   {captured / load_s:6.1f} captures/s")
print(f"recipe create:   {create_s:6.2f} s   (the computing part, for the {len(attempted)} files attempted, "
      "one process each)")
print(f"not computing:   {max(0.0, 1 - create_s / load_s) * 100:5.1f} % of the load's wall time")
PY
