"""One Replica, many threads and event loops at once; two processes on one file.

Step 1: four threads each run their own event loop (`asyncio.run`) and await the async twins
on one shared Replica, while four plain threads call the blocking methods on it. Step 2: every
write is there afterwards, and no call failed (no "attached to a different loop").
Then: two Python processes write the same file at once, and each sees the other's writes.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import List

import cairn
from conftest import run_python

PER_WORKER = 40


def test_threads_with_their_own_loops_and_plain_threads_share_one_replica(tmp_path: Path) -> None:
    memory = cairn.Replica(tmp_path / "m.db", agent="many")
    errors: List[BaseException] = []

    async def loop_worker(i: int) -> None:
        async def one(j: int) -> None:
            name = f"loop{i}-{j}"
            await memory.acreate_entities([{"name": name, "entityType": "note", "observations": [f"from loop {i}"]}])
            await memory.aadd_observations([{"entityName": name, "contents": ["again"]}])
            found = await memory.asearch_nodes(name)
            assert name in [e["name"] for e in found.entities]

        await asyncio.gather(*(one(j) for j in range(PER_WORKER)))
        await memory.aread_graph()
        await memory.astatus()

    def in_thread(f, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            f(*args)
        except BaseException as e:  # noqa: BLE001 - reported below, with the thread's failure
            errors.append(e)

    def plain_worker(i: int) -> None:
        for j in range(PER_WORKER):
            memory.create_entities([{"name": f"plain{i}-{j}", "entityType": "note", "observations": []}])
            memory.open_nodes([f"plain{i}-{j}"])

    threads = [threading.Thread(target=in_thread, args=(lambda i=i: asyncio.run(loop_worker(i)),)) for i in range(4)]
    threads += [threading.Thread(target=in_thread, args=(plain_worker, i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a worker did not finish within 300 s"
    assert errors == []
    graph = memory.read_graph()
    got = {e["name"]: e for e in graph.entities}
    want = [f"loop{i}-{j}" for i in range(4) for j in range(PER_WORKER)]
    want += [f"plain{i}-{j}" for i in range(4) for j in range(PER_WORKER)]
    assert sorted(got) == sorted(want)
    assert all(got[f"loop{i}-{j}"]["observations"] == [f"from loop {i}", "again"] for i in range(4) for j in range(PER_WORKER))


def test_one_loop_can_use_two_replicas_and_two_loops_one_replica(tmp_path: Path) -> None:
    a = cairn.Replica(tmp_path / "a.db", agent="a")
    b = cairn.Replica(tmp_path / "b.db", agent="b")

    async def both(tag: str) -> None:
        await asyncio.gather(
            a.acreate_entities([{"name": f"{tag}-a", "entityType": "t", "observations": []}]),
            b.acreate_entities([{"name": f"{tag}-b", "entityType": "t", "observations": []}]),
        )

    # A loop made, used, closed, then another: nothing of the first one is kept.
    asyncio.run(both("first"))
    asyncio.run(both("second"))
    assert sorted(e["name"] for e in a.read_graph().entities) == ["first-a", "second-a"]
    assert sorted(e["name"] for e in b.read_graph().entities) == ["first-b", "second-b"]


WRITER = """
import sys, cairn
path, agent, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
memory = cairn.Replica(path, agent=agent)
for i in range(n):
    memory.create_entities([{"name": f"{agent}-{i}", "entityType": "note", "observations": [agent]}])
print(len(memory.read_graph().entities))
"""


def test_two_processes_write_one_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = str(tmp_path / "shared.db")
    # The reader has read once before the writers start: what they write is news to it.
    memory = cairn.Replica(path, agent="reader")
    memory.read_graph()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, path, agent, "60"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for agent in ("proc-a", "proc-b")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    read = memory.read_graph()
    assert len(read.entities) == 120
    assert read.unseen["count"] >= 120 and sorted(read.unseen["agents"]) == ["proc-a", "proc-b"]
    # A process started after them sees the same.
    later = run_python("import sys, cairn; print(len(cairn.Replica(sys.argv[1], agent='late').read_graph().entities))", path)
    assert later.returncode == 0, later.stderr
    assert later.stdout.strip() == "120"


def test_wait_for_change_wakes_on_a_write_from_another_thread_and_loop(tmp_path: Path) -> None:
    memory = cairn.Replica(tmp_path / "m.db", agent="waiter")
    since = memory.status()["version"]

    def write_soon() -> None:
        asyncio.run(memory.acreate_entities([{"name": "Wake", "entityType": "t", "observations": []}]))

    writer = threading.Timer(0.2, write_soon)
    writer.start()

    async def wait() -> cairn.Changes:
        # Bounded: on timeout the answer is empty and the assertion below says so.
        return await memory.await_for_change(since, 60)

    changes = asyncio.run(wait())
    writer.join(timeout=60)
    assert [c["entity"] for c in changes] == ["Wake"]
    assert memory.changes_since(since).changes == changes.changes
