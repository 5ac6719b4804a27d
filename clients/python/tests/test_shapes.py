"""The same calls give the same JSON through Python as through `cairn mcp`.

Step 1: one script of tool calls (the reference's nine, supersedes, history) runs on two new
files, once through `cairn.Replica` and once through a real `cairn mcp` session. Step 2: every
answer's structured content is compared, and every refusal's message. Only versions differ
(each file has its own), so they are left out of the comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import cairn
from conftest import Mcp

SCRIPT: List[Tuple[str, Dict[str, Any]]] = [
    ("create_entities", {"entities": [
        {"name": "Alice", "entityType": "person", "observations": ["likes tea", "likes tea", "works late"]},
        {"name": "ACME", "entityType": "company", "observations": []},
    ]}),
    ("create_entities", {"entities": [{"name": "Alice", "entityType": "person", "observations": ["dup"]}]}),
    ("create_relations", {"relations": [{"from": "Alice", "relationType": "works_at", "to": "ACME"}]}),
    ("add_observations", {"observations": [{"entityName": "ACME", "contents": ["makes anvils", {"content": "founded", "validFrom": "1949-01-01"}]}]}),
    ("read_graph", {}),
    ("search_nodes", {"query": "tea"}),
    ("open_nodes", {"names": ["ACME", "Nobody"]}),
    ("supersede_observations", {"observations": [{"entityName": "Alice", "replaces": "works late", "content": "works early", "validFrom": "2024-03-01"}]}),
    ("read_graph", {"includeSuperseded": True}),
    ("read_graph", {"asOf": "2020-01-01"}),
    ("delete_observations", {"deletions": [{"entityName": "Alice", "observations": ["likes tea"]}]}),
    ("delete_relations", {"relations": [{"from": "Alice", "relationType": "works_at", "to": "ACME"}]}),
    ("delete_entities", {"entityNames": ["ACME"]}),
    ("read_graph", {}),
    # Refusals: the reference's validation words, and its not-found words.
    ("create_entities", {"entities": {}}),
    ("create_entities", {"entities": [{"name": "X"}]}),
    ("add_observations", {"observations": [{"entityName": "Ghost", "contents": ["boo"]}]}),
    ("search_nodes", {"query": 5}),
]

PY_ARGS = {
    "delete_entities": lambda a: ((a["entityNames"],), {}),
    "search_nodes": lambda a: ((a["query"],), {}),
    "open_nodes": lambda a: ((a["names"],), {}),
}


def python_call(memory: cairn.Replica, tool: str, args: Dict[str, Any]) -> Tuple[bool, Any]:
    """One call through the Python API: (ok, structured value or error message)."""
    if tool == "read_graph":
        kwargs = {"as_of": args.get("asOf"), "include_superseded": args.get("includeSuperseded")}
        call = lambda: memory.read_graph(**kwargs).to_dict()  # noqa: E731
    elif tool in PY_ARGS:
        pos, kw = PY_ARGS[tool](args)
        call = lambda: getattr(memory, tool)(*pos, **kw)  # noqa: E731
        if tool in ("search_nodes", "open_nodes"):
            inner = call
            call = lambda: inner().to_dict()  # noqa: E731
    else:
        (key,) = [k for k in args]
        call = lambda: getattr(memory, tool)(args[key])  # noqa: E731
    try:
        value = call()
    except cairn.CairnError as e:
        return False, str(e)
    value.pop("version", None)
    return True, value


def test_python_answers_what_cairn_mcp_answers(tmp_path: Path) -> None:
    memory = cairn.Replica(tmp_path / "py.db", agent="tester@host")
    mcp = Mcp(tmp_path / "mcp.db", agent="tester@host")
    try:
        for tool, args in SCRIPT:
            ok, got = python_call(memory, tool, args)
            result = mcp.tool(tool, args)
            if result.get("isError"):
                assert not ok, f"{tool} {args}: python accepted what cairn mcp refused: {result}"
                assert got == result["content"][0]["text"], tool
            else:
                assert ok, f"{tool} {args}: python refused ({got}) what cairn mcp accepted"
                assert got == result["structuredContent"], tool
    finally:
        mcp.close()


def test_reads_carry_version_freshness_and_unseen(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    alice = cairn.Replica(path, agent="alice")
    bob = cairn.Replica(path, agent="bob")
    bob.read_graph()
    written = alice.create_entities([{"name": "Tea", "entityType": "drink", "observations": ["green"]}])
    assert written["entities"][0]["name"] == "Tea" and written["version"].startswith("v")
    read = bob.search_nodes("green")
    assert [e["name"] for e in read.entities] == ["Tea"] and read.relations == []
    assert read.version.startswith("v")
    assert read.freshness["state"] == "local"
    assert read.unseen["count"] >= 1 and read.unseen["agents"] == ["alice"]
    assert any("NEW:" in n for n in read.notices), read.notices
    # Seen now: the next read has nothing new.
    assert bob.read_graph().unseen["count"] == 0
    # History and changes since speak in the same versions.
    assert {c["agent"] for c in bob.history("Tea")} == {"alice"}
    assert len(bob.changes_since(read.version)) == 0
    status = bob.status()
    assert status["entities"] == 1 and status["summary"] == "local (no relay)"
