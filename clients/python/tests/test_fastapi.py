"""A FastAPI app served by uvicorn over real HTTP on 127.0.0.1, one Replica for every request.

Step 1: the app starts on a port of its own, in a thread with its own event loop. Step 2: a
client on another loop sends 1,000 requests at once (httpx.AsyncClient): 700 async writes and
300 async searches, interleaved. Step 3: zero errors, and every
write is in the graph afterwards.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import List, Tuple

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi_service import make_app  # examples/, on the path by conftest.py

import cairn

WRITES = 700
READS = 300


def serve(app: FastAPI) -> Tuple[uvicorn.Server, threading.Thread, int]:
    # Keep-alive for the whole run: uvicorn closes a connection idle for 5 s by default, and a
    # client that sends its next request on it as it closes gets a ReadError. One run in CI
    # failed so (a ReadError while reading a response's headers) on a loaded machine, where
    # httpx's pool, itself CPU-bound, can leave a connection idle that long.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", backlog=4096, timeout_keep_alive=600)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        assert thread.is_alive(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, port


async def hammer(port: int) -> List[httpx.Response]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    # No pool timeout: all 1,000 wait their turn for one of 200 connections; the whole run is
    # bounded below instead.
    timeout = httpx.Timeout(120.0, pool=None)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=timeout) as client:
        writes = [
            client.post("/entities", json={"name": f"req-{i}", "entityType": "request", "observations": [f"n{i}"]})
            for i in range(WRITES)
        ]
        reads = [client.get("/search", params={"q": "request"}) for _ in range(READS)]
        calls = [c for pair in zip(writes[:READS], reads) for c in pair] + writes[READS:]
        return await asyncio.wait_for(asyncio.gather(*calls), timeout=540)


def test_a_thousand_concurrent_requests_share_one_replica(tmp_path: Path) -> None:
    memory = cairn.Replica(tmp_path / "service.db", agent="service", durability="normal")
    server, thread, port = serve(make_app(memory))
    try:
        responses = asyncio.run(hammer(port))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    failed = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200]
    assert failed == [], failed[:5]
    assert len(responses) == WRITES + READS
    graph = memory.read_graph()
    got = {e["name"]: e["observations"] for e in graph.entities}
    assert len(got) == WRITES
    assert all(got[f"req-{i}"] == [f"n{i}"] for i in range(WRITES))
