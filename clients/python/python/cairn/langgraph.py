"""A LangGraph store on a Cairn replica: ``CairnStore`` is a ``BaseStore``.

Each item is one entity of type ``langgraph.item`` whose name is the JSON array of its
namespace and key (``["users","u1","prefs"]``), so names never collide and read back exactly.
Its value is an observation holding the value's JSON. A ``put`` over an existing value
*supersedes* it (Cairn's facts over time, ``docs/temporal.md``): the old value ends, the new one
holds from now, and history keeps both. Nothing is overwritten in place, so:

* two agents that ``put`` the same key concurrently (on different replicas, or while offline)
  both keep their value; after sync every replica's ``get`` returns the same winner (the later
  put; ties broken by the value's text) as a :class:`CairnItem` whose ``conflicts`` lists the
  other values, with who wrote them and when, until a later ``put`` supersedes them all;
* two threads or processes on one replica that ``put`` at once are ordered: each put is a
  conditional write on the version it read, and the one that finds the item changed since is
  retried over the new value, so one replica never forks an item.

LangGraph's own stores are last write wins and drop the loser silently; this store never does.
TTLs and vector search are not supported (``supports_ttl`` is False; ``index`` is refused);
``search(query=...)`` is Cairn's word search over items' namespaces, keys and values.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from . import CairnError, ConflictError, Replica

#: The entity type of every item this store writes.
ITEM_TYPE = "langgraph.item"
#: How many times a put re-reads and retries when another writer on this replica changed the item
#: after it read it (each retry follows a real, newer write, so this bounds a hot key only).
PUT_ATTEMPTS = 64
#: Items are read "as of" the end of time (9999-12-31, in milliseconds): the values whose
#: validity has not ended. Not "now": a put right after a put supersedes at one millisecond
#: after the value it replaces began (``docs/temporal.md``), which can be a moment ahead of the
#: clock, and a get must see the put that returned before it.
LIVE = {"as_of": 253402214400000}


class CairnItem(Item):
    """An :class:`Item` that also says which concurrent values lost (``conflicts``).

    ``conflicts`` is empty unless agents put this key concurrently; each entry is a dict with
    ``value``, ``by`` (the agent) and ``updated_at`` (when that value began to hold).
    """

    __slots__ = ("conflicts",)

    def __init__(self, *, conflicts: list[dict[str, Any]] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.conflicts = conflicts or []


class CairnSearchItem(SearchItem):
    """A :class:`SearchItem` with ``conflicts``, as :class:`CairnItem`."""

    __slots__ = ("conflicts",)

    def __init__(self, *, conflicts: list[dict[str, Any]] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.conflicts = conflicts or []


def entity_name(namespace: tuple[str, ...], key: str) -> str:
    """The entity an item lives in: the JSON array of its namespace and key."""
    return json.dumps([*namespace, key], ensure_ascii=False, separators=(",", ":"))


def _parse_name(name: str) -> tuple[tuple[str, ...], str] | None:
    try:
        parts = json.loads(name)
    except ValueError:
        return None
    if not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(p, str) for p in parts):
        return None
    return tuple(parts[:-1]), parts[-1]


def _time(iso: str | None) -> datetime:
    if iso is None:
        return datetime.fromtimestamp(0, timezone.utc)
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CairnStore(BaseStore):
    """A LangGraph ``BaseStore`` on a :class:`cairn.Replica`: memory that merges, syncs and says
    how fresh it is. Share one store (or one replica) across threads, tasks and event loops."""

    supports_ttl = False

    def __init__(self, replica: Replica) -> None:
        self.replica = replica

    @classmethod
    def open(cls, path: str, **options: Any) -> CairnStore:
        """A store on the replica file at ``path`` (options as :class:`cairn.Replica`)."""
        return cls(Replica(path, **options))

    # -- BaseStore --------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        results: list[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                results.append(self._get(op.namespace, op.key))
            elif isinstance(op, PutOp):
                if op.index not in (None, False):
                    raise NotImplementedError("CairnStore has no vector index: put with index=None or False")
                if op.ttl is not None:
                    raise NotImplementedError("CairnStore does not support TTLs (supports_ttl is False)")
                if op.value is None:
                    self._delete(op.namespace, op.key)
                else:
                    self._put(op.namespace, op.key, op.value)
                results.append(None)
            elif isinstance(op, SearchOp):
                results.append(self._search(op))
            elif isinstance(op, ListNamespacesOp):
                results.append(self._list_namespaces(op))
            else:
                raise TypeError(f"unknown store operation: {op!r}")
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        # The loop is looked up at each call, never kept: the store works on any loop, on
        # several loops in several threads at once. The replica releases the GIL while it works.
        ops = list(ops)
        return await asyncio.get_running_loop().run_in_executor(None, self.batch, ops)

    # -- the operations -------------------------------------------------------------------------

    def _get(self, namespace: tuple[str, ...], key: str) -> CairnItem | None:
        read = self.replica.open_nodes([entity_name(namespace, key)], **LIVE)
        items = self._items(read, CairnItem)
        return items[0] if items else None

    def _put(self, namespace: tuple[str, ...], key: str, value: dict[str, Any]) -> None:
        name = entity_name(namespace, key)
        for _ in range(PUT_ATTEMPTS):
            read = self.replica.open_nodes([name], **LIVE)
            entity = next((e for e in read.entities if e["name"] == name), None)
            current = _values(entity) if entity else []
            created = min((v["created"] for v in current if v["created"]), default=None) or _now_iso()
            content = _content(value, created)
            # Every write is conditional on the version read: a writer on this replica (another
            # thread or process) that got in between makes it fail with nothing written, and it
            # is retried over that writer's value. So one replica never forks an item.
            try:
                if entity is None:
                    self.replica.create_entities(
                        [{"name": name, "entityType": ITEM_TYPE, "observations": [content]}], expect=read.version
                    )
                elif not current:
                    self.replica.add_observations([{"entityName": name, "contents": [content]}], expect=read.version)
                else:
                    # Every current value is replaced by the new one: a put after a conflict
                    # resolves it.
                    self.replica.supersede_observations(
                        [{"entityName": name, "replaces": v["text"], "content": content} for v in current],
                        expect=read.version,
                    )
                return
            except ConflictError:
                continue
        raise CairnError(f"put of {name} lost {PUT_ATTEMPTS} races in a row to other writers on this replica")

    def _delete(self, namespace: tuple[str, ...], key: str) -> None:
        self.replica.delete_entities([entity_name(namespace, key)])

    def _search(self, op: SearchOp) -> list[CairnSearchItem]:
        if op.query:
            read = self.replica.search_nodes(op.query, **LIVE)
        else:
            read = self.replica.read_graph(**LIVE)
        prefix = tuple(op.namespace_prefix)
        items = [
            i
            for i in self._items(read, CairnSearchItem)
            if i.namespace[: len(prefix)] == prefix and _matches(i.value, op.filter)
        ]
        if not op.query:
            items.sort(key=lambda i: i.updated_at, reverse=True)
        return items[op.offset : op.offset + op.limit]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        namespaces = {i.namespace for i in self._items(self.replica.read_graph(**LIVE), CairnItem)}
        if op.match_conditions:
            namespaces = {n for n in namespaces if all(_namespace_matches(c, n) for c in op.match_conditions)}
        if op.max_depth is not None:
            namespaces = {n[: op.max_depth] for n in namespaces}
        return sorted(namespaces)[op.offset : op.offset + op.limit]

    def _items(self, read: Any, kind: type) -> list[Any]:
        """The items in a read, each with its winning value and its conflicts."""
        out = []
        for entity in read.entities:
            if entity.get("entityType") != ITEM_TYPE:
                continue
            where = _parse_name(entity["name"])
            values = _values(entity)
            if where is None or not values:
                continue
            # The winner is the same on every replica: the latest to hold, then the text.
            values.sort(key=lambda v: (v["from"], v["text"]), reverse=True)
            win, lost = values[0], values[1:]
            by = _writers(read, entity["name"])
            conflicts = [
                {"value": v["value"], "by": by.get(v["text"]), "updated_at": _time(v["from"])} for v in lost
            ]
            namespace, key = where
            out.append(
                kind(
                    namespace=namespace,
                    key=key,
                    value=win["value"],
                    created_at=_time(win["created"]),
                    updated_at=_time(win["from"]),
                    conflicts=conflicts,
                )
            )
        return out


def _content(value: dict[str, Any], created: str) -> str:
    # `put` makes each write its own fact even when the value repeats an older one (a value put
    # back after a change must become current again, not stay an ended fact).
    return json.dumps(
        {"value": value, "created": created, "put": uuid.uuid4().hex},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )


def _values(entity: dict[str, Any]) -> list[dict[str, Any]]:
    """The current values of an item entity, parsed, with when each began to hold."""
    since = {v["content"]: v.get("validFrom") for v in entity.get("observationValidity", [])}
    values = []
    for text in entity.get("observations", []):
        try:
            doc = json.loads(text)
        except ValueError:
            continue  # an observation someone else added to the entity: not a value
        if not isinstance(doc, dict) or not isinstance(doc.get("value"), dict) or "put" not in doc:
            continue
        created = doc.get("created")
        # A first value has no validity of its own: it holds from the item's creation.
        values.append({"text": text, "value": doc["value"], "created": created, "from": since.get(text) or created})
    return values


def _writers(read: Any, name: str) -> dict[str, str]:
    """Who wrote each conflicting replacement of an item's value, from the read's conflicts."""
    by: dict[str, str] = {}
    for conflict in getattr(read, "conflicts", None) or []:
        for r in conflict.get("replacements", []):
            if r.get("entityName") == name:
                by[r["content"]] = r.get("by")
    return by


def _matches(value: dict[str, Any], filter: dict[str, Any] | None) -> bool:
    return not filter or all(_compare(value.get(k), want) for k, want in filter.items())


def _compare(have: Any, want: Any) -> bool:
    # LangGraph's filter language, as its in-memory and PostgreSQL stores read it: equality,
    # nested dicts, and the operators $eq $ne $gt $gte $lt $lte.
    if isinstance(want, dict):
        if any(k.startswith("$") for k in want):
            return all(_operator(have, op, arg) for op, arg in want.items())
        return isinstance(have, dict) and all(_compare(have.get(k), v) for k, v in want.items())
    if isinstance(want, (list, tuple)):
        return (
            isinstance(have, (list, tuple))
            and len(have) == len(want)
            and all(_compare(h, w) for h, w in zip(have, want))
        )
    return have == want


def _operator(have: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return have == arg
    if op == "$ne":
        return have != arg
    if op in ("$gt", "$gte", "$lt", "$lte"):
        try:
            h, a = float(have), float(arg)
        except (TypeError, ValueError):
            return False
        return {"$gt": h > a, "$gte": h >= a, "$lt": h < a, "$lte": h <= a}[op]
    raise ValueError(f"unsupported filter operator {op!r}: use $eq, $ne, $gt, $gte, $lt or $lte")


def _namespace_matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path))
    else:
        raise ValueError(f"unsupported match type {condition.match_type!r}: use 'prefix' or 'suffix'")
    return all(p == "*" or n == p for n, p in pairs)
