"""Benchmarks of the Python package, in three modes (a Markdown table or JSON on stdout).

- `python clients/python/bench.py [throughput] [--calls N] [--durability full|normal]`: calls
  per second, blocking and async, writes and searches, on 1/2/4 threads. Each thread makes N
  calls on one shared Replica in a new temporary file; async rows run each thread's calls on its
  own event loop, 16 in flight at once.
- `python clients/python/bench.py percall --db FILE`: the latency of each call, one at a time,
  blocking and async, on a file already seeded; prints the samples as JSON. The Rust bench
  `cargo bench -p cairn-cli --bench percall` runs it beside the Rust API and `cairn mcp`.
- `python clients/python/bench.py fastapi [--requests N] [--concurrency C]`: requests per
  second of `examples/fastapi_service.py` under uvicorn in its own process, over real HTTP on
  127.0.0.1, beside the same server answering a route that does nothing.

Measure a release build: `pip install ./clients/python`, or `maturin develop --release`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List

import cairn

SEARCH_ENTITIES = 2_000
HERE = os.path.dirname(os.path.abspath(__file__))


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


def throughput(args: argparse.Namespace) -> None:
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


def percall(args: argparse.Namespace) -> None:
    """The same calls, in the same order, as the Rust bench makes on its other sides."""
    memory = cairn.Replica(args.db, agent="bench")
    n, words = args.entities, args.words

    def call(op: str, j: int, prefix: str) -> Any:
        if op == "create":
            return [{"name": f"{prefix}new-{j}", "entityType": "bench", "observations": ["fresh"]}]
        if op == "observe":
            return [{"entityName": f"seed-{(j * 7919) % n}", "contents": [f"{prefix}note {j}"]}]
        if op == "search":
            return f"word{j % words}"
        return [f"seed-{(j * 104729) % n}"]

    blocking = {"create": memory.create_entities, "observe": memory.add_observations,
                "search": memory.search_nodes, "open": memory.open_nodes}
    awaited = {"create": memory.acreate_entities, "observe": memory.aadd_observations,
               "search": memory.asearch_nodes, "open": memory.aopen_nodes}
    out: Dict[str, Dict[str, List[float]]] = {"sync": {}, "async": {}}
    for op, f in blocking.items():
        samples = out["sync"].setdefault(op, [])
        for j in range(args.calls):
            a = call(op, j, "")
            t = time.perf_counter()
            f(a)
            samples.append((time.perf_counter() - t) * 1e6)

    async def on_a_loop() -> None:
        for op, f in awaited.items():
            samples = out["async"].setdefault(op, [])
            for j in range(args.calls):
                # Other names and texts than the blocking calls': a repeat would be a no-op.
                a = call(op, j, "a")
                t = time.perf_counter()
                await f(a)
                samples.append((time.perf_counter() - t) * 1e6)

    asyncio.run(on_a_loop())
    json.dump(out, sys.stdout)


def serve(args: argparse.Namespace) -> None:
    """The server process of `fastapi`: uvicorn on the listening socket it inherited."""
    import uvicorn
    from fastapi_service import make_app

    app = make_app(cairn.Replica(args.db, agent="service"))

    @app.get("/noop")
    async def noop() -> Dict[str, str]:
        return {"ok": "yes"}

    @app.post("/echo")
    async def echo(body: Dict[str, Any]) -> Dict[str, Any]:
        return body  # the framework's cost of a write's request and answer, without Cairn

    # A socket object, not uvicorn's `fd=`: uvicorn takes an fd for a Unix socket, and asyncio then
    # leaves Nagle on, so every response waited ~40 ms for a delayed ACK.
    listener = socket.socket(fileno=args.fd)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])


def fastapi(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "service.db")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        port = listener.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "examples"))
        server = subprocess.Popen(
            [sys.executable, __file__, "serve", "--db", db, "--fd", str(listener.fileno())],
            pass_fds=[listener.fileno()], env=env)
        listener.close()
        try:
            rows = asyncio.run(hammer(port, args.requests, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=30)
        memory = cairn.Replica(db, agent="counter")
        written = sum(1 for e in memory.read_graph().entities if e["name"].startswith("req-"))
    print(f"{args.requests} requests per row over {args.concurrency} connections, uvicorn in its own process, "
          f"client on one event loop, {os.cpu_count()} CPUs, cairn {cairn.__version__}")
    print("| route | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(row)
    print(f"writes present afterwards: {written} of {args.requests * 7 // 10}")


async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, target: str,
               body: bytes = b"") -> int:
    """One HTTP/1.1 request on a kept-alive connection; its status. A client this small keeps
    the client's own cost out of the figures (httpx spent a whole core at ~550 requests/s)."""
    head = f"{method} {target} HTTP/1.1\r\nhost: bench\r\ncontent-length: {len(body)}\r\n"
    if body:
        head += "content-type: application/json\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def hammer(port: int, requests: int, concurrency: int) -> List[str]:
    """Each route in turn: `requests` requests over `concurrency` kept-alive connections."""
    rows: List[str] = []
    deadline = time.monotonic() + 30
    while True:  # the server is up once it answers
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await http(reader, writer, "GET", "/noop")
            writer.close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    for route in ("GET /noop", "POST /echo", "cairn: 70% writes, 30% searches"):
        latencies: List[float] = []
        errors = 0
        todo = iter(range(requests))

        async def connection() -> None:
            nonlocal errors
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for i in todo:  # the connections share one iterator: each request is sent once
                body = json.dumps({"name": f"req-{i}", "entityType": "request", "observations": [f"n{i}"]}).encode()
                t = time.perf_counter()
                if route == "GET /noop":
                    status = await http(reader, writer, "GET", "/noop")
                elif route == "POST /echo":
                    status = await http(reader, writer, "POST", "/echo", body)
                elif i % 10 < 7:
                    status = await http(reader, writer, "POST", "/entities", body)
                else:
                    # One earlier write's observation: a search with a small answer.
                    status = await http(reader, writer, "GET", f"/search?q=n{i // 10 * 10}")
                latencies.append((time.perf_counter() - t) * 1e3)
                errors += status != 200
            writer.close()

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(concurrency))), timeout=600)
        elapsed = time.perf_counter() - start
        latencies.sort()
        q = lambda f: latencies[round((len(latencies) - 1) * f)]  # noqa: E731
        rows.append(f"| {route} | {requests / elapsed:,.0f} | {q(0.5):.1f} | {q(0.99):.1f} | {errors} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="throughput", choices=["throughput", "percall", "fastapi", "serve"])
    parser.add_argument("--calls", type=int, default=300, help="calls per thread per row, or of each kind (300)")
    parser.add_argument("--durability", default="normal", choices=["full", "normal"], help="throughput's")
    parser.add_argument("--db", help="percall: the seeded file; serve: the service's file")
    parser.add_argument("--entities", type=int, default=5000, help="percall: entities seed-0.. in --db")
    parser.add_argument("--words", type=int, default=97, help="percall: words word0.. the seed holds")
    parser.add_argument("--requests", type=int, default=4000, help="fastapi: requests per row (4000)")
    parser.add_argument("--concurrency", type=int, default=64, help="fastapi: requests in flight (64)")
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode in ("percall", "serve") and not args.db:
        parser.error(f"{args.mode} needs --db")
    {"throughput": throughput, "percall": percall, "fastapi": fastapi, "serve": serve}[args.mode](args)


if __name__ == "__main__":
    main()
