"""Feeds a sources.json to Software Heritage's own nixguix lister (PyPI swh.lister) and prints
the origins it would schedule, as JSON lines: {"url", "visit_type", "extra"}.

Usage: python nixguix_origins.py SOURCES_JSON [NIX_CACHE_URL]

NIX_CACHE_URL is the binary cache the lister builds NAR origins on (its nixos_cache_url, which
defaults to cache.nixos.org): the one the listed narinfos came from.

The file is served from 127.0.0.1 (the lister fetches its manifest over HTTP); the scheduler is a
stub that records what it is given; canonicalize=False keeps the lister off the GitHub API.
Nothing leaves this machine: every URL in the test manifest has an extension, so the lister has
no reason to probe any of them.
"""

import functools
import http.server
import json
import logging
import os
import sys
import threading
import uuid

from swh.lister.nixguix.lister import NixGuixLister


class StubLister:
    def __init__(self):
        self.id = uuid.uuid4()
        self.current_state = {}
        self.last_listing_finished_at = None


class StubScheduler:
    """The three calls a lister makes, recording the origins."""

    def __init__(self):
        self.lister = StubLister()
        self.origins = []

    def get_or_create_lister(self, name, instance_name=None, first_visits_queue_prefix=None):
        return self.lister

    def update_lister(self, lister):
        return lister

    def record_listed_origins(self, origins):
        origins = list(origins)
        self.origins.extend(origins)
        return origins


class DroppedEntries(logging.Handler):
    """Collects what the lister logs when it skips an entry."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def main(path, nix_cache_url=None):
    directory, name = os.path.split(os.path.abspath(path))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dropped = DroppedEntries()
    logging.getLogger("swh.lister").addHandler(dropped)
    logging.getLogger("swh.lister").setLevel(logging.INFO)
    try:
        scheduler = StubScheduler()
        lister = NixGuixLister(
            scheduler=scheduler,
            url=f"http://127.0.0.1:{server.server_address[1]}/{name}",
            origin_upstream="https://github.com/NixOS/nixpkgs",
            canonicalize=False,
            **({"nixos_cache_url": nix_cache_url} if nix_cache_url else {}),
        )
        lister.run()
    finally:
        server.shutdown()
    for origin in scheduler.origins:
        print(json.dumps({
            "url": origin.url,
            "visit_type": origin.visit_type,
            "extra": origin.extra_loader_arguments,
        }, sort_keys=True, default=str))
    for message in dropped.messages:
        print(json.dumps({"dropped": message}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
