#!/usr/bin/env bash
# Benchmarks `swh-bridge load` capturing the recipes of a corpus: the files are served over
# loopback by Python's http.server, listed in a sources.json with their sha256, and loaded into an
# empty recipe store, once with --jobs 1 and once with --jobs 4. Prints sources per second, and
# the time the captures spent waiting for bytes versus computing (recipes, hashes, the store), as
# the load's own summary counts them. Not a test.
#
#   scripts/bench-load.sh [CORPUS_DIR]   default: ~/.cache/swh-bridge/package-corpus, filled by
#                                        scripts/fetch-package-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."

corpus=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge/package-corpus}
[ -d "$corpus" ] || { echo "no corpus at $corpus: see the comment at the top of this script" >&2; exit 1; }
cargo build --release --quiet
bridge=${CARGO_TARGET_DIR:-$PWD/target}/release/swh-bridge

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
    sources.append({"type": "url", "urls": [url], "integrity": "sha256-" + base64.b64encode(digest).decode(),
                    "outputHashAlgo": "sha256", "outputHashMode": "flat"})
with open(os.path.join(work, "sources.json"), "w") as f:
    json.dump({"version": 1, "sources": sources}, f)

print(f"{len(names)} files, {sum(os.path.getsize(os.path.join(corpus, n)) for n in names) / 1e6:.0f} MB")
for jobs in (1, 4):
    run = os.path.join(work, f"jobs-{jobs}")
    start = time.perf_counter()
    # No archive and no NixOS mirrors: a miss must not leave loopback.
    load = subprocess.run([bridge, "load", "--json", "--no-cache", "--no-nixos-mirrors", "--jobs", str(jobs),
                           "--per-host", str(jobs), "--archive", "http://127.0.0.1:9/api/1/",
                           os.path.join(work, "sources.json"), "--recipes", os.path.join(run, "recipes"),
                           "--state", os.path.join(run, "state.sqlite")], capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [json.loads(line) for line in load.stdout.splitlines()]
    summary = next(line["summary"] for line in lines if "summary" in line)
    statuses = [line["status"] for line in lines if "index" in line]
    captured = statuses.count("captured")
    seconds = summary["seconds"]
    busy = seconds["download"] + seconds["compute"]
    print(f"--jobs {jobs}: {wall:6.2f} s, {captured} captured, {statuses.count('failed')} failed: "
          f"{captured / wall:5.1f} sources/s; of the captures' time, "
          f"{seconds['download'] / busy * 100:4.1f} % waiting for bytes, {seconds['compute'] / busy * 100:4.1f} % computing")
PY
