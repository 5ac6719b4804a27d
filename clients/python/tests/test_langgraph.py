"""`cairn.langgraph.CairnStore` as LangGraph uses it: the same calls as LangGraph's own
InMemoryStore give the same answers, concurrent puts are never lost, and a compiled LangGraph
graph reads and writes Cairn's memory by configuration."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from langgraph.store.base import GetOp, Item, ListNamespacesOp, MatchCondition, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from cairn import Replica
from cairn.langgraph import ITEM_TYPE, CairnItem, CairnStore, entity_name

SEED = 20261203


def store(tmp_path: Path, name: str = "a") -> CairnStore:
    return CairnStore(Replica(tmp_path / f"{name}.db", agent=name, durability="normal"))


def plain(result: Any) -> Any:
    """A result without the timestamps (which differ between any two stores), comparable."""
    if isinstance(result, Item):
        return (result.namespace, result.key, result.value)
    if isinstance(result, list):
        return [plain(r) for r in result]
    return result


def random_ops(rng: random.Random, count: int) -> list:
    namespaces = [("users", "u1"), ("users", "u2"), ("users", "u1", "prefs"), ("docs",), ("docs", "v1")]
    keys = ["a", "b", "c", "dé", "with space"]
    ops: list = []
    for _ in range(count):
        ns, key = rng.choice(namespaces), rng.choice(keys)
        roll = rng.random()
        if roll < 0.45:
            value = {"n": rng.randint(0, 5), "tag": rng.choice(["red", "blue"]), "nested": {"k": rng.randint(0, 2)}}
            ops.append(PutOp(ns, key, value))
        elif roll < 0.55:
            ops.append(PutOp(ns, key, None))
        elif roll < 0.75:
            ops.append(GetOp(ns, key))
        elif roll < 0.9:
            prefix = ns[: rng.randint(0, len(ns))]
            filters = [None, {"tag": "red"}, {"n": {"$gte": 3}}, {"nested": {"k": 1}}, {"n": {"$ne": 2}, "tag": "blue"}]
            ops.append(SearchOp(prefix, filter=rng.choice(filters), limit=100))
        else:
            conditions = [
                None,
                (MatchCondition("prefix", ("users",)),),
                (MatchCondition("suffix", ("prefs",)),),
                (MatchCondition("prefix", ("users", "*")),),
            ]
            ops.append(ListNamespacesOp(rng.choice(conditions), max_depth=rng.choice([None, 1, 2]), limit=100))
    return ops


def test_the_same_calls_give_what_langgraphs_in_memory_store_gives(tmp_path: Path) -> None:
    # A differential test: a seeded sequence of every operation LangGraph's stores take, sent to
    # InMemoryStore and to CairnStore one at a time, answers compared but for timestamps (and
    # search order, which InMemoryStore takes from insertion and CairnStore from recency).
    rng = random.Random(SEED)
    ours, theirs = store(tmp_path), InMemoryStore()
    for i, op in enumerate(random_ops(rng, 400)):
        if isinstance(op, ListNamespacesOp):
            # The one difference: InMemoryStore keeps listing a namespace after its last item is
            # deleted (or after a get of a key in it); CairnStore, like LangGraph's PostgreSQL
            # store, lists the namespaces that hold items.
            for ns in [ns for ns, items in theirs._data.items() if not items]:
                del theirs._data[ns]
        (a,), (b,) = ours.batch([op]), theirs.batch([op])
        if isinstance(op, SearchOp):
            a, b = sorted(plain(a)), sorted(plain(b))
        assert plain(a) == plain(b), f"operation {i}: {op!r}"


def test_the_store_api_and_its_async_forms(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.put(("memories", "alice"), "tea", {"likes": "green tea", "since": 2020})
    item = s.get(("memories", "alice"), "tea")
    assert isinstance(item, CairnItem)
    assert (item.namespace, item.key, item.value, item.conflicts) == (
        ("memories", "alice"),
        "tea",
        {"likes": "green tea", "since": 2020},
        [],
    )
    assert item.created_at == item.updated_at
    s.put(("memories", "alice"), "tea", {"likes": "oolong"})
    later = s.get(("memories", "alice"), "tea")
    assert later.value == {"likes": "oolong"}
    assert later.created_at == item.created_at and later.updated_at > item.updated_at
    # A value put back after a change is current again (each put is its own fact).
    s.put(("memories", "alice"), "tea", {"likes": "green tea", "since": 2020})
    assert s.get(("memories", "alice"), "tea").value == {"likes": "green tea", "since": 2020}
    assert [i.key for i in s.search(("memories",), query="green")] == ["tea"]
    assert s.list_namespaces() == [("memories", "alice")]
    s.delete(("memories", "alice"), "tea")
    assert s.get(("memories", "alice"), "tea") is None

    async def the_async_forms() -> None:
        await s.aput(("a",), "k", {"v": 1})
        assert (await s.aget(("a",), "k")).value == {"v": 1}
        assert [i.value for i in await s.asearch(("a",))] == [{"v": 1}]
        assert await s.alist_namespaces(prefix=("a",)) == [("a",)]
        await s.adelete(("a",), "k")
        assert await s.aget(("a",), "k") is None

    asyncio.run(the_async_forms())
    # Every value ever put is in the item's history, superseded, not overwritten.
    facts = s.replica.open_nodes([entity_name(("memories", "alice"), "tea")], include_superseded=True)
    assert facts.entities == []  # deleted: gone from reads ...
    history = s.replica.history(entity_name(("memories", "alice"), "tea"))
    assert len(history) >= 4  # ... but not from history (three puts, one delete)


def test_what_the_store_refuses(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(NotImplementedError, match="TTL"):
        s.put(("ttl",), "k", {"v": 1}, ttl=5)
    with pytest.raises(NotImplementedError, match="vector index"):
        s.put(("index",), "k", {"v": 1}, index=["v"])
    with pytest.raises(ValueError):
        s.put(("bad.label",), "k", {"v": 1})  # LangGraph's own namespace rule
    s.put(("a",), "k", {"v": 1})
    with pytest.raises(ValueError, match="unsupported filter operator"):
        s.search(("a",), filter={"v": {"$regex": "x"}})
    # Nothing refused was written.
    assert s.get(("a",), "k").value == {"v": 1} and s.list_namespaces() == [("a",)]
    assert [e["name"] for e in s.replica.read_graph().entities] == [entity_name(("a",), "k")]


def test_threads_and_loops_putting_one_key_lose_nothing(tmp_path: Path) -> None:
    # Eight threads, each with its own event loop, put the same key twenty times: no error, one
    # current value, and every put in the item's history (none overwritten).
    s = store(tmp_path)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        async def run() -> None:
            for i in range(20):
                await s.aput(("hot",), "key", {"thread": t, "i": i})

        try:
            asyncio.run(run())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    item = s.get(("hot",), "key")
    assert item.conflicts == []
    all_facts = s.replica.open_nodes([entity_name(("hot",), "key")], include_superseded=True).entities[0]
    values = [json.loads(o)["value"] for o in all_facts["observations"]]
    assert len(values) == 160
    assert sorted((v["thread"], v["i"]) for v in values) == sorted((t, i) for t in range(8) for i in range(20))
    assert item.value in values


def test_concurrent_puts_on_two_replicas_are_both_kept_and_reported(tmp_path: Path, relay: Any) -> None:
    # LangGraph's own stores keep the last write and drop the other silently. Two agents put the
    # same key while apart: after sync both replicas return the same winner and name the loser.
    a, b = store(tmp_path, "alice"), store(tmp_path, "bob")
    a.put(("team",), "plan", {"step": "draft"})
    with a.replica.sync(relay.url, token=relay.token) as sa, b.replica.sync(relay.url, token=relay.token) as sb:
        assert sa.wait_settled(30) and sb.wait_settled(30)
        assert _wait_for(lambda: b.get(("team",), "plan") is not None)
    a.put(("team",), "plan", {"step": "review"})  # neither is syncing now
    b.put(("team",), "plan", {"step": "ship"})
    with a.replica.sync(relay.url, token=relay.token) as sa, b.replica.sync(relay.url, token=relay.token) as sb:
        assert _wait_for(lambda: len(a.get(("team",), "plan").conflicts) == 1 and len(b.get(("team",), "plan").conflicts) == 1)
        ga, gb = a.get(("team",), "plan"), b.get(("team",), "plan")
        assert ga.value == gb.value and ga.value in ({"step": "review"}, {"step": "ship"})
        loser = ga.conflicts[0]
        assert {ga.value["step"], loser["value"]["step"]} == {"review", "ship"}
        assert loser["by"] == ("bob" if loser["value"]["step"] == "ship" else "alice")
        assert gb.conflicts[0]["value"] == loser["value"]
        # A later put resolves it, everywhere.
        b.put(("team",), "plan", {"step": "ship it reviewed"})
        assert _wait_for(lambda: a.get(("team",), "plan").value == {"step": "ship it reviewed"})
        assert a.get(("team",), "plan").conflicts == [] and b.get(("team",), "plan").conflicts == []


def test_a_langgraph_graph_uses_cairn_memory_by_configuration(tmp_path: Path) -> None:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph
    from langgraph.store.base import BaseStore

    class State(TypedDict):
        user: str
        seen: int

    def remember(state: State, *, store: BaseStore) -> State:
        ns = ("visits", state["user"])
        before = store.get(ns, "count")
        count = (before.value["n"] if before else 0) + 1
        store.put(ns, "count", {"n": count})
        return {"user": state["user"], "seen": count}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    s = store(tmp_path)
    graph = builder.compile(store=s)
    for expected in (1, 2, 3):
        assert graph.invoke({"user": "alice", "seen": 0})["seen"] == expected

    async def on_a_loop() -> int:
        return (await graph.ainvoke({"user": "alice", "seen": 0}))["seen"]

    assert asyncio.run(on_a_loop()) == 4
    # It is Cairn's memory: another replica object on the same file (another process would do)
    # reads it as a graph entity.
    other = Replica(tmp_path / "a.db", agent="reader")
    read = other.open_nodes([entity_name(("visits", "alice"), "count")])
    assert read.entities[0]["entityType"] == ITEM_TYPE
    assert json.loads(read.entities[0]["observations"][0])["value"] == {"n": 4}


def _wait_for(condition: Any, seconds: float = 30) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
