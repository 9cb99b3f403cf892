#!/usr/bin/env bash
# The daily job: list -> sources diff -> load -> load status -> publish.
#
# Lists the Nixpkgs revision checked out in $NIXPKGS (update it first, say with
# `git -C $NIXPKGS pull`), compares it with the previous day's sources.json, loads what is new or
# changed (Save Code Now for VCS revisions the archive lacks, recipes and bridge entries for the
# rest), follows the save requests, and publishes the recipe store to $SWH_BRIDGE_SITE.
#
#   NIXPKGS=/srv/nixpkgs SWH_BRIDGE_SITE=/srv/www/recipes scripts/daily.sh
#
# Settings (environment):
#   NIXPKGS           a Nixpkgs checkout (required)
#   SWH_BRIDGE_SITE   the directory a web server publishes (required)
#   SWH_BRIDGE        the swh-bridge binary [default: swh-bridge on PATH]
#   SWH_BRIDGE_DATA   where sources.json files, the recipe store and the state live
#                     [default: $XDG_DATA_HOME/swh-bridge]
#   SWH_BRIDGE_JOBS   evaluators and captures at once [default: number of cores]
#   SWH_BRIDGE_LIST_ARGS  more arguments for `list` (--system S, --binary-cache URL, --no-narinfo)
#   SWH_BRIDGE_LOAD_ARGS  more arguments for `load` and `load status` (--archive URL, say)
#   SWH_TOKEN         an archive API token (1,200 requests an hour instead of 120)
# Each step's output goes to $SWH_BRIDGE_DATA/daily/<UTC time>/; a failed step stops the job with a
# non-zero exit, and the next run picks up where this one stopped (the loader's state).
set -euo pipefail

: "${NIXPKGS:?set NIXPKGS to a Nixpkgs checkout}"
: "${SWH_BRIDGE_SITE:?set SWH_BRIDGE_SITE to the directory to publish to}"
bridge=${SWH_BRIDGE:-swh-bridge}
data=${SWH_BRIDGE_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/swh-bridge}
jobs=${SWH_BRIDGE_JOBS:-$(nproc)}
today=$data/daily/$(date -u +%Y-%m-%dT%H%M%SZ)
read -r -a list_args <<< "${SWH_BRIDGE_LIST_ARGS:-}"
read -r -a load_args <<< "${SWH_BRIDGE_LOAD_ARGS:-}"
mkdir -p "$today"

revision=$(git -C "$NIXPKGS" rev-parse HEAD)
echo "listing nixpkgs $revision"
"$bridge" list "$NIXPKGS" --jobs "$jobs" "${list_args[@]}" --output "$today/sources.json" --json > "$today/list.json"

since=()
if [ -e "$data/latest.json" ]; then
    "$bridge" sources diff --json "$data/latest.json" "$today/sources.json" > "$today/diff.json"
    since=(--since "$data/latest.json")
fi

# A load that fails on some sources still published what it captured; its failures are in the
# state and are retried tomorrow, so they do not stop the job.
load_status=0
"$bridge" load "$today/sources.json" "${since[@]}" --jobs "$jobs" --recipes "$data/recipes" \
    --state "$data/state.sqlite" "${load_args[@]}" --json > "$today/load.json" || load_status=$?
"$bridge" load status --state "$data/state.sqlite" "${load_args[@]}" --json > "$today/status.json" || true

"$bridge" publish --recipes "$data/recipes" --out "$SWH_BRIDGE_SITE" --sources "$today/sources.json" \
    --state "$data/state.sqlite"
ln -sfn "$today/sources.json" "$data/latest.json"
tail -n 1 "$today/load.json"
exit "$load_status"
