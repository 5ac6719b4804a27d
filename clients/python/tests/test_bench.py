"""The benchmark's modes still run and still measure what they say (tiny sizes; no timing).

`bench.py` is what BENCHMARKS.md's Python figures come from; these keep it from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cairn

BENCH = Path(__file__).resolve().parents[1] / "bench.py"


def test_percall_reports_every_call_of_every_kind(tmp_path: Path) -> None:
    db = tmp_path / "seeded.db"
    seed = cairn.Replica(db, agent="bench")
    seed.create_entities([{"name": f"seed-{k}", "entityType": "seed", "observations": [f"word{k % 7} text"]}
                          for k in range(50)])
    out = subprocess.run(
        [sys.executable, str(BENCH), "percall", "--db", str(db), "--calls", "5", "--entities", "50", "--words", "7"],
        capture_output=True, text=True, timeout=120, check=True)
    samples = json.loads(out.stdout)
    assert sorted(samples) == ["async", "sync"]
    for side in samples.values():
        assert sorted(side) == ["create", "observe", "open", "search"]
        assert all(len(v) == 5 and all(x > 0 for x in v) for v in side.values())
    # The calls really happened: five new entities per API, five notes each on seed entities.
    names = {e["name"] for e in seed.read_graph().entities}
    assert {f"new-{j}" for j in range(5)} | {f"anew-{j}" for j in range(5)} <= names


def test_fastapi_mode_serves_every_request_and_keeps_every_write() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "fastapi", "--requests", "60", "--concurrency", "4"],
        capture_output=True, text=True, timeout=300, check=True)
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 3, out.stdout
    assert all(row.rstrip(" |").endswith("| 0") for row in rows), out.stdout  # zero errors
    assert "writes present afterwards: 42 of 42" in out.stdout, out.stdout
