"""Shared helpers for the Python package's tests: real files, real processes, real sockets.

Every wait here is bounded in time; nothing is skipped: a missing `cairn` binary fails loudly.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[3]
# The examples the tests serve (fastapi_service.py) import as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def cairn_bin() -> str:
    """The workspace's `cairn` binary: $CAIRN_BIN, else the debug build in the target dir."""
    explicit = os.environ.get("CAIRN_BIN")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = Path(explicit) if explicit else target / "debug" / "cairn"
    if not path.is_file():
        pytest.fail(
            f"the cairn binary is not at {path}: build it with `cargo build -p cairn-cli` "
            "or point CAIRN_BIN at it",
            pytrace=False,
        )
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the process exited with {proc.returncode} before listening on {port}")
            if time.monotonic() > deadline:
                pytest.fail(f"nothing listened on 127.0.0.1:{port} within {seconds} s")
            time.sleep(0.02)


class Relay:
    """A real `cairn relay` on loopback, with one write token for the default graph."""

    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "relay-data"
        env = dict(os.environ, CAIRN_DB=str(tmp / "admin.db"), CAIRN_AGENT="admin")
        out = subprocess.run(
            [cairn_bin(), "relay", "token", "create", "--data", str(self.data), "--graph", "default",
             "--role", "write", "--label", "python-tests"],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )
        self.token = out.stdout.strip().splitlines()[-1]
        assert self.token.startswith("cairn_"), out.stdout
        self.port = free_port()
        self.proc = subprocess.Popen(
            [cairn_bin(), "relay", "--listen", f"127.0.0.1:{self.port}", "--data", str(self.data)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)
        self.url = f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    r = Relay(tmp_path)
    try:
        yield r
    finally:
        r.stop()


class Mcp:
    """A `cairn mcp` session over stdio, driven as an MCP client drives it (JSON-RPC lines)."""

    def __init__(self, db: Path, agent: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRN_", "MEMORY_FILE"))}
        self.proc = subprocess.Popen(
            [cairn_bin(), "mcp", "--db", str(db), "--agent", agent],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, cwd=str(db.parent),
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0
        self.request("initialize", {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "pytest", "version": "1"},
        })
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, message: Dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: Dict[str, Any]) -> Dict[str, Any]:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        deadline = time.monotonic() + 60
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"cairn mcp did not answer {method} within 60 s")
            try:
                message = json.loads(self.lines.get(timeout=left))
            except queue.Empty:
                continue
            if message.get("id") == self.next_id:
                return message

    def tool(self, name: str, arguments: Dict[str, Any]) -> Dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})["result"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def run_python(code: str, *args: str, seconds: float = 120) -> subprocess.CompletedProcess:
    """Runs `code` in a new Python process with this interpreter (and this package)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=seconds, check=False)


def names(entities: List[Dict[str, Any]]) -> List[str]:
    return sorted(e["name"] for e in entities)


