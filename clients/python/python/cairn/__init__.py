"""Cairn: shared memory for AI agents, as a local replica in one SQLite file.

``Replica`` is thread-safe: one object serves every thread and every asyncio task of a process,
and several processes may open the same file. Its methods are named like the reference memory
server's tools and take and return the same JSON shapes as ``cairn mcp``; each has an async twin
(``a`` + name) that runs the call on the running loop's default executor, looked up at call
time, so it works on any loop and on several loops in several threads at once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import _cairn
from ._cairn import CairnError, ConflictError, InvalidInput, NotFoundError, ReadOnlyError

__all__ = [
    "Replica",
    "Read",
    "Changes",
    "Sync",
    "CairnError",
    "ConflictError",
    "InvalidInput",
    "NotFoundError",
    "ReadOnlyError",
    "__version__",
]

__version__: str = _cairn.__version__

Time = Union[str, int]


class Read:
    """A graph read: the data in the reference's shape, and what the read saw.

    ``entities`` and ``relations`` are lists of dicts exactly as ``cairn mcp``'s ``read_graph``
    gives them. ``version`` can be passed back as ``expect=`` or to ``changes_since``;
    ``freshness`` says how fresh the view is (``{"state": "local" | "synced" | "behind" |
    "offline", ...}``); ``unseen`` what other agents changed since this agent's previous read.
    """

    __slots__ = ("value", "version", "freshness", "unseen", "read_only", "notices")

    def __init__(self, answer: Mapping[str, Any]) -> None:
        seen = answer.get("seen") or {}
        self.value: Dict[str, Any] = answer["value"]
        self.version: str = seen.get("version", "")
        self.freshness: Dict[str, Any] = seen.get("freshness", {})
        self.unseen: Dict[str, Any] = seen.get("unseen", {})
        self.read_only: Optional[str] = seen.get("read_only")
        # The lines `cairn mcp` adds after the JSON: stale view, news, conflicts.
        self.notices: List[str] = list(answer.get("texts", [])[1:])

    @property
    def entities(self) -> List[Dict[str, Any]]:
        return self.value.get("entities", [])

    @property
    def relations(self) -> List[Dict[str, Any]]:
        return self.value.get("relations", [])

    @property
    def left_out(self) -> Optional[Dict[str, int]]:
        return self.value.get("leftOut")

    @property
    def conflicts(self) -> List[Dict[str, Any]]:
        return self.value.get("conflicts", [])

    def to_dict(self) -> Dict[str, Any]:
        """The read as ``cairn mcp`` structures it (what the reference's tool returns)."""
        return dict(self.value)

    def __getitem__(self, key: str) -> Any:
        return self.value[key]

    def __repr__(self) -> str:
        return (
            f"Read(entities={len(self.entities)}, relations={len(self.relations)}, "
            f"version={self.version!r}, freshness={self.freshness.get('state')!r})"
        )


class Changes:
    """Entity-level changes (history, changes since, a wait): ``changes`` oldest first, and the
    ``version`` read."""

    __slots__ = ("changes", "version", "freshness", "unseen")

    def __init__(self, value: Mapping[str, Any], seen: Optional[Mapping[str, Any]] = None) -> None:
        seen = seen or value
        self.changes: List[Dict[str, Any]] = value.get("changes", [])
        self.version: str = value.get("version", "")
        self.freshness: Dict[str, Any] = seen.get("freshness", {})
        self.unseen: Dict[str, Any] = seen.get("unseen", {})

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.changes)

    def __repr__(self) -> str:
        return f"Changes({len(self.changes)} change(s), version={self.version!r})"


class Sync:
    """A relay sync client running on a thread and runtime Cairn owns (``Replica.sync``)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: "_cairn.Sync") -> None:
        self._inner = inner

    def wait_connected(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds for a connection; whether there is one."""
        return self._inner.wait_connected(float(timeout))

    def wait_settled(self, timeout: float) -> bool:
        """Waits up to ``timeout`` seconds until the relay and this replica hold the same changes."""
        return self._inner.wait_settled(float(timeout))

    def status(self) -> Dict[str, Any]:
        """``{"url", "running", "connected", "last_error", "pending", "settled", "read_only"}``."""
        return json.loads(self._inner.status())

    def stop(self) -> None:
        """Stops syncing (idempotent)."""
        self._inner.stop()

    async def await_connected(self, timeout: float) -> bool:
        return await _off_loop(self.wait_connected, timeout)

    async def await_settled(self, timeout: float) -> bool:
        return await _off_loop(self.wait_settled, timeout)

    def __enter__(self) -> "Sync":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _json(args: Mapping[str, Any]) -> str:
    try:
        return json.dumps({k: v for k, v in args.items() if v is not None})
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"arguments must be JSON values: {e}") from None


async def _off_loop(f: Any, *args: Any, **kwargs: Any) -> Any:
    # The running loop is looked up now, at each call, never kept: the same Replica serves
    # every loop of every thread. Its default executor runs `f`, which releases the GIL.
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(f, *args, **kwargs))


def _attach_changes(e: CairnError) -> None:
    raw = getattr(e, "changes_json", None)
    e.changes = json.loads(raw) if raw else []  # type: ignore[attr-defined]


class Replica:
    """One agent's replica of one graph, in the SQLite file at ``path``.

    ``agent`` names the writer (``planner@laptop``); ``graph`` chooses the graph (``default``);
    ``durability`` is ``"full"`` (a returned write survives power loss; the default) or
    ``"normal"`` (it survives the process being killed). Thread-safe: share one object.
    """

    __slots__ = ("_inner",)

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        agent: str,
        graph: Optional[str] = None,
        durability: Optional[str] = None,
    ) -> None:
        self._inner = _cairn.Replica(os.fspath(path), agent, graph, durability)

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, tool: str, **args: Any) -> Dict[str, Any]:
        try:
            return json.loads(self._inner.call(tool, _json(args)))
        except ConflictError as e:
            _attach_changes(e)
            raise

    def _write(self, tool: str, **args: Any) -> Dict[str, Any]:
        answer = self._call(tool, **args)
        value = answer["value"]
        # Beside the reference's shape: the version right after the write, for a later expect=.
        value["version"] = answer.get("written")
        return value

    def _read(self, tool: str, **args: Any) -> Read:
        return Read(self._call(tool, **args))

    @property
    def agent(self) -> str:
        return self._inner.agent

    @property
    def graph(self) -> str:
        return self._inner.graph

    @property
    def path(self) -> str:
        return os.fspath(self._inner.path)

    # -- the reference's writes -------------------------------------------------------------

    def create_entities(self, entities: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        """``[{"name", "entityType", "observations"}]`` -> ``{"entities": created, "skipped": names, "version"}``."""
        return self._write("create_entities", entities=entities, expect=expect)

    def create_relations(self, relations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        """``[{"from", "relationType", "to", "validFrom"?, "validTo"?}]`` -> ``{"relations": created, "version"}``."""
        return self._write("create_relations", relations=relations, expect=expect)

    def add_observations(self, observations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        """``[{"entityName", "contents": [text | {"content", "validFrom"?, "validTo"?}]}]`` -> ``{"results": [{"entityName", "addedObservations"}], "version"}``."""
        return self._write("add_observations", observations=observations, expect=expect)

    def delete_entities(self, entity_names: Sequence[str], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return self._write("delete_entities", entityNames=entity_names, expect=expect)

    def delete_observations(self, deletions: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        """``[{"entityName", "observations": [text]}]``."""
        return self._write("delete_observations", deletions=deletions, expect=expect)

    def delete_relations(self, relations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return self._write("delete_relations", relations=relations, expect=expect)

    # -- Cairn's temporal writes ---------------------------------------------------------------

    def supersede_observations(self, observations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        """``[{"entityName", "replaces", "content", "validFrom"?}]`` -> ``{"results", "notFound", "version"}``."""
        return self._write("supersede_observations", observations=observations, expect=expect)

    def supersede_relations(self, relations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        """``[{"from", "relationType", "to", "replaces": {...}, "validFrom"?}]`` -> ``{"relations", "notFound", "version"}``."""
        return self._write("supersede_relations", relations=relations, expect=expect)

    # -- reads -----------------------------------------------------------------------------------

    def read_graph(self, *, as_of: Optional[Time] = None, at_version: Optional[str] = None, include_superseded: Optional[bool] = None) -> Read:
        return self._read("read_graph", asOf=as_of, atVersion=at_version, includeSuperseded=include_superseded)

    def search_nodes(self, query: str, *, as_of: Optional[Time] = None, at_version: Optional[str] = None, include_superseded: Optional[bool] = None) -> Read:
        return self._read("search_nodes", query=query, asOf=as_of, atVersion=at_version, includeSuperseded=include_superseded)

    def open_nodes(self, names: Sequence[str], *, as_of: Optional[Time] = None, at_version: Optional[str] = None, include_superseded: Optional[bool] = None) -> Read:
        return self._read("open_nodes", names=names, asOf=as_of, atVersion=at_version, includeSuperseded=include_superseded)

    def history(self, name: str) -> Changes:
        """Everything that ever happened to entity ``name``, oldest first, deletes included."""
        answer = self._call("memory_history", name=name)
        return Changes(answer["value"], answer.get("seen"))

    def changes_since(self, since: str, limit: Optional[int] = None) -> Changes:
        """Entity-level changes after version ``since`` (at most ``limit``, default 200)."""
        answer = self._call("memory_changes_since", since=since, limit=limit)
        return Changes(answer["value"], answer.get("seen"))

    def status(self) -> Dict[str, Any]:
        """``memory_status``' answer: version, freshness, summary, unseen, counts, conflicts."""
        return json.loads(self._inner.status())

    def wait_for_change(self, since: str, timeout: float) -> Changes:
        """Blocks until a change is logged after ``since`` or ``timeout`` seconds (at most a day)
        pass; the changes after ``since`` (none on timeout)."""
        return Changes(json.loads(self._inner.wait_for_change(since, float(timeout))))

    def warm_up(self, wait: Optional[float] = None) -> Optional[int]:
        """Loads the graph into memory on a thread Cairn owns, so that no later call waits for
        part of it to load (30-50 ms at 100k entities); calls go on meanwhile. Returns at once,
        or after at most ``wait`` seconds: how many documents it loaded, ``None`` if still
        loading. For a long-lived service, right after opening."""
        return self._inner.warm_up(None if wait is None else float(wait))

    def sync(self, url: Union[str, Sequence[str]], token: Optional[str] = None) -> Sync:
        """Syncs with the relay at ``url`` in the background, on a thread Cairn owns, until
        ``stop()``. Reads report the relay in ``freshness``. Several relays (a list, or URLs
        separated by commas as in ``CAIRN_RELAY``): the first, failing over to the next on
        disconnect, with backoff."""
        urls = url if isinstance(url, str) else ",".join(url)
        return Sync(self._inner.sync(urls, token))

    # -- async twins -------------------------------------------------------------------------------

    async def acreate_entities(self, entities: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return await _off_loop(self.create_entities, entities, expect=expect)

    async def acreate_relations(self, relations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return await _off_loop(self.create_relations, relations, expect=expect)

    async def aadd_observations(self, observations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return await _off_loop(self.add_observations, observations, expect=expect)

    async def adelete_entities(self, entity_names: Sequence[str], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return await _off_loop(self.delete_entities, entity_names, expect=expect)

    async def adelete_observations(self, deletions: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return await _off_loop(self.delete_observations, deletions, expect=expect)

    async def adelete_relations(self, relations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return await _off_loop(self.delete_relations, relations, expect=expect)

    async def asupersede_observations(self, observations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return await _off_loop(self.supersede_observations, observations, expect=expect)

    async def asupersede_relations(self, relations: Sequence[Mapping[str, Any]], *, expect: Optional[str] = None) -> Dict[str, Any]:
        return await _off_loop(self.supersede_relations, relations, expect=expect)

    async def aread_graph(self, **options: Any) -> Read:
        return await _off_loop(self.read_graph, **options)

    async def asearch_nodes(self, query: str, **options: Any) -> Read:
        return await _off_loop(self.search_nodes, query, **options)

    async def aopen_nodes(self, names: Sequence[str], **options: Any) -> Read:
        return await _off_loop(self.open_nodes, names, **options)

    async def ahistory(self, name: str) -> Changes:
        return await _off_loop(self.history, name)

    async def achanges_since(self, since: str, limit: Optional[int] = None) -> Changes:
        return await _off_loop(self.changes_since, since, limit)

    async def astatus(self) -> Dict[str, Any]:
        return await _off_loop(self.status)

    async def await_for_change(self, since: str, timeout: float) -> Changes:
        """The async twin of ``wait_for_change`` (``await`` + ``_for_change``)."""
        return await _off_loop(self.wait_for_change, since, timeout)

    def __repr__(self) -> str:
        return f"Replica({self.path!r}, agent={self.agent!r}, graph={self.graph!r})"
