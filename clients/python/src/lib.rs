//! `cairn._cairn`: the Rust half of the Python package `cairn`.
//!
//! The Python half (`python/cairn/__init__.py`) turns keyword arguments into the reference
//! memory server's JSON and back; this half runs each call on the replica with the GIL released,
//! through the same [`cairn_tools::call`] as `cairn mcp`, so both answer in the same shapes and
//! words. Nothing here holds a Python object or an event loop: a [`replica::PyReplica`] is an
//! `Arc<Replica>` that any thread may use at once.

mod errors;
mod replica;
mod sync;

use pyo3::prelude::*;

#[pymodule]
fn _cairn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<replica::PyReplica>()?;
    m.add_class::<sync::PySync>()?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
