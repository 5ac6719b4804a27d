"""``warm_up``: the graph loads on a thread of Cairn's own while calls go on."""

from __future__ import annotations

from pathlib import Path

import pytest

import cairn


def test_warm_up_loads_the_graph_while_writes_go_on(tmp_path: Path) -> None:
    filler = cairn.Replica(tmp_path / "m.db", agent="filler")
    filler.create_entities(
        [{"name": f"e{i}", "entityType": "thing", "observations": ["first"]} for i in range(500)]
    )
    del filler
    memory = cairn.Replica(tmp_path / "m.db", agent="a")
    assert memory.warm_up() is None  # returns at once
    for i in range(50):
        memory.add_observations([{"entityName": f"e{i * 7}", "contents": [f"during {i}"]}])
    # A second warm-up finds what the first (and the writes) loaded: nothing left but the rest.
    loaded = memory.warm_up(wait=60)
    assert loaded is not None, "the warm-up ended within 60 s"
    memory.add_observations([{"entityName": "e1", "contents": ["after"]}])
    cold = cairn.Replica(tmp_path / "m.db", agent="cold")
    assert memory.read_graph().entities == cold.read_graph().entities
    assert "during 1" in cold.open_nodes(["e7"]).entities[0]["observations"]
    assert "after" in cold.open_nodes(["e1"]).entities[0]["observations"]


def test_a_bad_wait_is_refused(tmp_path: Path) -> None:
    memory = cairn.Replica(tmp_path / "m.db", agent="a")
    with pytest.raises(cairn.InvalidInput, match="wait must be between"):
        memory.warm_up(wait=-1)
