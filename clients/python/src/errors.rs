//! Cairn's failures as Python exceptions: one base class, and a subclass per kind of failure a
//! caller may want to handle, each with the message `cairn mcp` gives.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use cairn_tools::{ErrorKind, ToolError};

create_exception!(_cairn, CairnError, PyException, "Every failure of a Cairn call.");
create_exception!(_cairn, InvalidInput, CairnError, "The arguments were refused; nothing was written.");
create_exception!(_cairn, NotFoundError, CairnError, "An entity named does not exist; nothing was written.");
create_exception!(
    _cairn,
    ConflictError,
    CairnError,
    "A conditional write (`expect=`) met changes made after its version; nothing was written. `changes` lists them."
);
create_exception!(_cairn, ReadOnlyError, CairnError, "The replica cannot be written (a read-only file or grant).");

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CairnError", py.get_type::<CairnError>())?;
    m.add("InvalidInput", py.get_type::<InvalidInput>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    m.add("ReadOnlyError", py.get_type::<ReadOnlyError>())?;
    Ok(())
}

/// A tool's failure as its exception. A conflict's `changes` attribute holds the conflicting
/// changes as JSON text; the Python half decodes it (`ConflictError.changes` is a list of dicts).
pub(crate) fn to_py(py: Python<'_>, e: ToolError) -> PyErr {
    let err = match e.kind {
        ErrorKind::InvalidInput => InvalidInput::new_err(e.message),
        ErrorKind::NotFound => NotFoundError::new_err(e.message),
        ErrorKind::Conflict => ConflictError::new_err(e.message),
        ErrorKind::ReadOnly => ReadOnlyError::new_err(e.message),
        ErrorKind::Other => CairnError::new_err(e.message),
    };
    let changes = serde_json::to_string(&e.changes).unwrap_or_else(|_| "[]".into());
    // Setting an attribute on a fresh exception object cannot fail but for memory; the error
    // itself is what matters then.
    let _ = err.value(py).setattr("changes_json", changes);
    err
}

/// A core failure as its exception.
pub(crate) fn core(py: Python<'_>, e: cairn::Error) -> PyErr {
    to_py(py, ToolError::from(e))
}
