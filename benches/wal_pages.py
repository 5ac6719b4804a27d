"""Which b-trees a single durable write commits pages to: WAL frames per commit, by table.

    python3 benches/wal_pages.py GRAPH.db [--writes 20]

Makes WRITES single observation writes (the one-write-one-transaction path of `core`'s
figures) through the Python package on a copy of GRAPH.db (a graph `core fill` built), copies
the write-ahead log while the replica is still open, reads each frame's page number and commit
mark from the WAL format, and names each page's b-tree with SQLite's `dbstat` on the copy.
Needs the `cairn` package (`clients/python/test.sh`, or `maturin develop --release`).

    python3 benches/wal_pages.py COPY.db --wal COPY.db.wal [--writes 20]

reads a log copied already instead (`cargo bench --bench core -- wal COPY.db N WRITES` makes
one on a warm replica, without the Python package); COPY.db must be closed.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sqlite3
import struct
import tempfile
from typing import List


def commits(wal: bytes) -> List[List[int]]:
    """The page numbers of each committed transaction in a WAL file, oldest first."""
    _, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">8I", wal[:32])
    out: List[List[int]] = []
    current: List[int] = []
    at = 32
    while at + 24 + page_size <= len(wal):
        page, commit, s1, s2 = struct.unpack(">4I", wal[at:at + 16])
        if (s1, s2) != (salt1, salt2):
            break  # a frame left from before the log last restarted
        current.append(page)
        if commit:
            out.append(current)
            current = []
        at += 24 + page_size
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graph")
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--wal", help="a copy of GRAPH's write-ahead log, taken while open")
    args = parser.parse_args()
    if args.wal:
        with open(args.wal, "rb") as f:
            wal = f.read()
        report(wal, args.graph, args.writes)
        return
    import cairn  # only this way needs the package

    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "copy.db")
        shutil.copy(args.graph, db)
        memory = cairn.Replica(db, agent="wal-pages")
        # Loads the shard documents the measured writes start from, so they are not measured.
        memory.add_observations([{"entityName": "entity-0", "contents": ["wal-pages warm-up"]}])
        for i in range(args.writes):
            memory.add_observations([{"entityName": f"entity-{(i * 7919) % 100}", "contents": [f"wal-pages {i}"]}])
        with open(db + "-wal", "rb") as f:
            wal = f.read()
        del memory
        report(wal, db, args.writes)


def report(wal: bytes, db: str, writes: int) -> None:
    """Prints the pages of the last `writes` commits in `wal`, named by their b-trees in `db`."""
    owner = {page: name for name, page in sqlite3.connect(db).execute("SELECT name, pageno FROM dbstat")}
    done = commits(wal)[-writes:]
    print("pages per commit:", [len(c) for c in done])
    by_tree = collections.Counter(owner.get(page, "(new or free)") for c in done for page in c)
    print("mean pages per commit, by b-tree:")
    for name, n in by_tree.most_common():
        print(f"  {n / len(done):6.1f}  {name}")


if __name__ == "__main__":
    main()
