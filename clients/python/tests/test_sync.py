"""Two replicas converge through a real `cairn relay` on loopback, with a token.

Step 1: a relay with a write token. Step 2: Alice and Bob, each in a file of their own, sync
with it on threads Cairn owns (no event loop anywhere). Step 3: each writes; both end with both
writes; reads say `synced`, and `unseen` names the other agent.
"""

from __future__ import annotations

import time
from pathlib import Path

import cairn
from conftest import Relay


def wait_until(condition, seconds: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not true within {seconds} s"
        time.sleep(0.02)


def test_two_replicas_converge_through_the_relay(tmp_path: Path, relay: Relay) -> None:
    alice = cairn.Replica(tmp_path / "alice.db", agent="alice")
    bob = cairn.Replica(tmp_path / "bob.db", agent="bob")
    # Each has read once: what the other writes from now on is news to it.
    alice.read_graph()
    bob.read_graph()
    with alice.sync(relay.url, token=relay.token) as a, bob.sync(relay.url, token=relay.token) as b:
        assert a.wait_connected(60) and b.wait_connected(60), (a.status(), b.status())
        alice.create_entities([{"name": "Shared", "entityType": "note", "observations": ["from alice"]}])
        bob.create_entities([{"name": "Other", "entityType": "note", "observations": ["from bob"]}])
        # Status does not mark anything as seen, so the read below still reports the news.
        wait_until(lambda: bob.status()["entities"] == 2 and alice.status()["entities"] == 2)
        assert a.wait_settled(60) and b.wait_settled(60)
        read = bob.read_graph()
        assert sorted(e["name"] for e in read.entities) == ["Other", "Shared"]
        assert read.unseen["agents"] == ["alice"] and "Shared" in read.unseen["entities"], read.unseen
        assert read.freshness["state"] == "synced", read.freshness
        assert alice.read_graph().unseen["agents"] == ["bob"]
        assert a.status()["connected"] is True and a.status()["last_error"] is None
    assert a.status()["running"] is False
    assert {c["agent"] for c in bob.history("Shared")} == {"alice"}


def test_a_wrong_token_is_reported_not_raised(tmp_path: Path, relay: Relay) -> None:
    memory = cairn.Replica(tmp_path / "m.db", agent="m")
    s = memory.sync(relay.url, token="cairn_wrong")
    try:
        assert not s.wait_connected(1.0)
        wait_until(lambda: s.status()["last_error"] is not None)
        assert "401" in s.status()["last_error"]
        # Local first: writes succeed with the relay refusing us.
        memory.create_entities([{"name": "Local", "entityType": "t", "observations": []}])
        assert memory.read_graph().freshness["state"] == "offline"
    finally:
        s.stop()
        s.stop()


def test_sync_fails_over_to_the_next_relay(tmp_path: Path, relay: Relay) -> None:
    """A list of relays: the first is down (nothing listens), so the client goes on to the
    second, and syncs there."""
    from conftest import free_port

    writer = cairn.Replica(tmp_path / "w.db", agent="writer")
    reader = cairn.Replica(tmp_path / "r.db", agent="reader")
    down = f"ws://127.0.0.1:{free_port()}"
    with writer.sync([down, relay.url], token=relay.token) as w, reader.sync(relay.url, token=relay.token) as r:
        assert w.wait_connected(60), w.status()
        writer.create_entities([{"name": "Failed over", "entityType": "t", "observations": ["via the second"]}])
        assert w.wait_settled(60)
        wait_until(lambda: reader.status()["entities"] == 1)
        assert reader.open_nodes(["Failed over"]).entities[0]["observations"] == ["via the second"]
        assert w.status()["url"].split(",")[0] == down


def test_sync_without_a_url_is_refused(tmp_path: Path) -> None:
    memory = cairn.Replica(tmp_path / "m.db", agent="m")
    for empty in ("", [], " , "):
        try:
            memory.sync(empty)
        except cairn.InvalidInput as e:
            assert "no relay URL" in str(e)
        else:
            raise AssertionError(f"sync({empty!r}) was accepted")
