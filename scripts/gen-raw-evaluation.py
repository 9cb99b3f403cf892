"""Writes a synthetic raw evaluation (the fixed-output records, as `swh-bridge list --save-raw` keeps
it) with N sources, for benchmarking the post-processing: urls with and without mirror://,
hashes in hex, Nix base32 and SRI, git/hg/svn sources, and 5 % duplicates.

Usage: python3 gen-raw-evaluation.py N SEED > raw.json
"""

import base64
import hashlib
import json
import random
import sys

NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"


def nix32(digest):
    out = []
    for n in range((len(digest) * 8 + 4) // 5 - 1, -1, -1):
        b = n * 5
        i, j = b // 8, b % 8
        c = digest[i] >> j
        if i + 1 < len(digest):
            c |= digest[i + 1] << (8 - j)
        out.append(NIX32[c & 0x1F])
    return "".join(out)


def main(n, seed):
    rng = random.Random(seed)
    mirrors = {f"site{i}": [f"https://mirror{k}.site{i}.example/pub/" for k in range(3)] for i in range(20)}
    sources = []
    for i in range(n):
        if sources and rng.random() < 0.05:
            sources.append(dict(rng.choice(sources)))
            continue
        digest = hashlib.sha256(f"{seed}-{i}".encode()).digest()
        spelling = rng.choice(["hex", "nix32", "sri"])
        output_hash, algo = {
            "hex": (digest.hex(), "sha256"),
            "nix32": (nix32(digest), "sha256"),
            "sri": ("sha256-" + base64.b64encode(digest).decode(), None),
        }[spelling]
        record = {
            "storePath": f"/nix/store/{hashlib.sha1(digest).hexdigest()[:32]}-source-{i}",
            "name": f"source-{i}",
            "outputHash": output_hash,
            "outputHashAlgo": algo,
            "outputHashMode": "flat",
            "postFetch": "",
        }
        kind = rng.random()
        if kind < 0.75:
            if rng.random() < 0.3:
                record["urls"] = [f"mirror://site{rng.randrange(20)}/pkg{i}/pkg{i}-1.{i % 10}.tar.gz"]
            else:
                record["urls"] = [f"https://host{rng.randrange(2000)}.example.org/releases/pkg{i}-1.0.tar.xz"]
        elif kind < 0.95:
            record.update(url=f"https://github.com/owner{i % 997}/repo{i}.git", rev=digest.hex()[:40],
                          fetchSubmodules=rng.random() < 0.2, leaveDotGit=False, sparseCheckout="",
                          outputHashMode="recursive")
        elif kind < 0.98:
            record.update(url=f"https://hg.example.org/repo{i}", rev=digest.hex()[:12], subrepoClause="",
                          outputHashMode="recursive")
        else:
            record.update(url=f"svn://svn.example.org/repo{i}/trunk", rev=1000 + i, ignoreExternals=False,
                          outputHashMode="recursive")
        sources.append(record)
    json.dump({"mirrors": mirrors, "sources": sources, "failed": [], "roots": n}, sys.stdout)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
