"""Invalid input raises the right exception with a clear message, and stores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import cairn


def test_the_hierarchy() -> None:
    for e in (cairn.InvalidInput, cairn.NotFoundError, cairn.ConflictError, cairn.ReadOnlyError):
        assert issubclass(e, cairn.CairnError)
    assert issubclass(cairn.CairnError, Exception)


def test_invalid_arguments_are_refused_in_the_references_words_and_store_nothing(tmp_path: Path) -> None:
    memory = cairn.Replica(tmp_path / "m.db", agent="a")
    with pytest.raises(cairn.InvalidInput) as e:
        memory.create_entities([{"name": "X", "entityType": "t"}])
    assert str(e.value) == (
        "MCP error -32602: Input validation error: Invalid arguments for tool create_entities: "
        "Invalid input: expected array, received undefined at entities[0].observations"
    )
    with pytest.raises(cairn.InvalidInput, match="arguments must be JSON values"):
        memory.create_entities([{"name": "X", "entityType": "t", "observations": {1, 2}}])  # type: ignore[list-item]
    with pytest.raises(cairn.InvalidInput, match="the limit is 65536 bytes"):
        memory.create_entities([{"name": "n" * 70_000, "entityType": "t", "observations": []}])
    with pytest.raises(cairn.InvalidInput, match="invalid expect"):
        memory.create_entities([{"name": "Y", "entityType": "t", "observations": []}], expect="not-a-version")
    assert memory.read_graph().entities == []
    assert memory.status()["entities"] == 0


def test_a_missing_entity_is_not_found(tmp_path: Path) -> None:
    memory = cairn.Replica(tmp_path / "m.db", agent="a")
    with pytest.raises(cairn.NotFoundError, match="^Entity with name Ghost not found$"):
        memory.add_observations([{"entityName": "Ghost", "contents": ["boo"]}])
    assert memory.read_graph().entities == []


def test_a_conditional_write_after_a_change_is_a_conflict_with_the_changes(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    alice = cairn.Replica(path, agent="alice")
    bob = cairn.Replica(path, agent="bob")
    alice.create_entities([{"name": "Plan", "entityType": "doc", "observations": ["v1"]}])
    seen = bob.open_nodes(["Plan"]).version
    alice.add_observations([{"entityName": "Plan", "contents": ["v2 by alice"]}])
    with pytest.raises(cairn.ConflictError) as e:
        bob.add_observations([{"entityName": "Plan", "contents": ["v2 by bob"]}], expect=seen)
    assert str(e.value).startswith("Conflict: 1 change(s) touched these entities after")
    assert [(c["agent"], c["entity"]) for c in e.value.changes] == [("alice", "Plan")]
    assert "v2 by bob" not in bob.open_nodes(["Plan"]).entities[0]["observations"]
    # Read again, then retry: applied.
    fresh = bob.open_nodes(["Plan"]).version
    bob.add_observations([{"entityName": "Plan", "contents": ["v2 by bob"]}], expect=fresh)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(cairn.InvalidInput, match="unknown durability"):
        cairn.Replica(tmp_path / "m.db", agent="a", durability="sometimes")
    with pytest.raises(cairn.InvalidInput):
        cairn.Replica(tmp_path / "m.db", agent="")
    memory = cairn.Replica(tmp_path / "m.db", agent="a", durability="normal")
    version = memory.status()["version"]
    with pytest.raises(cairn.InvalidInput, match="timeout must be between"):
        memory.wait_for_change(version, -1)
    with pytest.raises(cairn.InvalidInput, match="invalid atVersion"):
        memory.read_graph(at_version="nope")
    assert len(memory.wait_for_change(version, 0)) == 0
