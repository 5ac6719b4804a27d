"""Calls per second of the Python API: blocking and async, writes and searches, 1/2/4 threads.

Run: `python clients/python/bench.py [--calls N] [--durability full|normal]` with the package
installed (`clients/python/test.sh` installs a dev build; `pip install ./clients/python` a
release one, which is what to measure). Each thread makes N calls on one shared Replica in a new
temporary file; async rows run each thread's calls on its own event loop, 16 in flight at once.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from typing import Callable, List

import cairn

SEARCH_ENTITIES = 2_000


def run_threads(threads: int, work: Callable[[int], None]) -> float:
    """Runs work(i) on `threads` threads at once; the elapsed seconds."""
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - start


def bench(memory: cairn.Replica, kind: str, mode: str, threads: int, calls: int, tag: str) -> float:
    def one(i: int, j: int) -> None:
        if kind == "write":
            memory.create_entities([{"name": f"{tag}-{i}-{j}", "entityType": "bench", "observations": ["x"]}])
        else:
            memory.search_nodes(f"word{(i * calls + j) % 97}")

    async def aone(i: int, j: int) -> None:
        if kind == "write":
            await memory.acreate_entities([{"name": f"{tag}-{i}-{j}", "entityType": "bench", "observations": ["x"]}])
        else:
            await memory.asearch_nodes(f"word{(i * calls + j) % 97}")

    def blocking(i: int) -> None:
        for j in range(calls):
            one(i, j)

    def on_a_loop(i: int) -> None:
        async def main() -> None:
            gate = asyncio.Semaphore(16)

            async def bounded(j: int) -> None:
                async with gate:
                    await aone(i, j)

            await asyncio.gather(*(bounded(j) for j in range(calls)))

        asyncio.run(main())

    elapsed = run_threads(threads, blocking if mode == "sync" else on_a_loop)
    return threads * calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per thread per row (300)")
    parser.add_argument("--durability", default="normal", choices=["full", "normal"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        memory = cairn.Replica(os.path.join(tmp, "bench.db"), agent="bench", durability=args.durability)
        # A graph to search: entities whose observations hold one of 97 words.
        for start in range(0, SEARCH_ENTITIES, 100):
            memory.create_entities([
                {"name": f"seed-{k}", "entityType": "seed", "observations": [f"word{k % 97} text"]}
                for k in range(start, start + 100)
            ])
        rows: List[str] = []
        for kind in ("write", "search"):
            for mode in ("sync", "async"):
                cells = [f"{bench(memory, kind, mode, t, args.calls, f'{kind}{mode}{t}'):,.0f}" for t in (1, 2, 4)]
                rows.append(f"| {kind} | {mode} | " + " | ".join(cells) + " |")
    print(f"calls/s, {args.calls} calls per thread, durability={args.durability}, "
          f"{os.cpu_count()} CPUs, cairn {cairn.__version__}")
    print("| call | API | 1 thread | 2 threads | 4 threads |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
