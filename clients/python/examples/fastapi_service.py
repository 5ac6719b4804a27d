"""A FastAPI service whose requests share one Cairn replica.

One `cairn.Replica` is opened when the process starts and used by every request, on uvicorn's
event loop, through the async twins: they hold no loop-bound state and run the file's work off
the loop without the GIL, so no request waits on another's disk. Run it:

    CAIRN_DB=service.db python -m uvicorn fastapi_service:app --app-dir clients/python/examples

The test suite (`tests/test_fastapi.py`) and the benchmark (`bench.py fastapi`) serve this app.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from fastapi import FastAPI, HTTPException

import cairn


def make_app(memory: cairn.Replica) -> FastAPI:
    app = FastAPI()

    @app.post("/entities")
    async def create(body: Dict[str, Any]) -> Dict[str, Any]:
        try:
            return await memory.acreate_entities([body])
        except cairn.CairnError as e:
            # The replica's own message: which field of which entity was wrong, and why.
            raise HTTPException(status_code=400, detail=str(e)) from None

    @app.get("/search")
    async def search(q: str) -> Dict[str, Any]:
        read = await memory.asearch_nodes(q)
        return {"entities": read.entities, "version": read.version, "freshness": read.freshness}

    return app


def _from_env() -> Optional[FastAPI]:
    path = os.environ.get("CAIRN_DB")
    if path is None:
        return None
    return make_app(cairn.Replica(path, agent=os.environ.get("CAIRN_AGENT", "service")))


# For `uvicorn fastapi_service:app`: the replica named by CAIRN_DB (None when imported without it).
app = _from_env()
