#!/usr/bin/env bash
# Builds the Python package from this checkout into a virtual environment (the dev profile, in
# the workspace's target directory, so it reuses what `cargo test` compiled) and runs its pytest
# suite. The MCP and relay tests need the `cairn` binary: $CAIRN_BIN, else the one `cargo test
# --workspace` builds, built here the same way (a no-op right after the README's cargo test; the
# same features, so nothing is compiled twice).
# Usage: clients/python/test.sh [pytest arguments]. PYTHON picks the interpreter (python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${CAIRN_PY_VENV:-$root/.venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
# maturin builds the wheel; the rest is what the tests use.
"$venv/bin/pip" install -q maturin pytest fastapi uvicorn httpx langgraph
if [ -z "${CAIRN_BIN:-}" ]; then
    cargo test --workspace --locked --no-run
fi
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --locked -m "$here/Cargo.toml"
export CAIRN_BIN="${CAIRN_BIN:-$CARGO_TARGET_DIR/debug/cairn}"
cd "$here"
exec "$venv/bin/python" -m pytest -q tests "$@"
