//! A tool call's failure: the words `cairn mcp` shows the model, and a kind that other bindings
//! (the Python package's exceptions) map to their own error types.

use cairn::{EntityChange, Error};

use crate::text;

/// What kind of failure a tool call met, coarse enough for a binding's exception hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The arguments or a value in them were refused; nothing was written.
    InvalidInput,
    /// An entity named does not exist; nothing was written.
    NotFound,
    /// A conditional write (`expect`) met changes made after its version; nothing was written.
    Conflict,
    /// The replica cannot be written (a read-only file, a read-only grant).
    ReadOnly,
    /// Anything else: the file, the disk, a damaged store.
    Other,
}

/// Why a tool call failed: `message` is exactly what `cairn mcp` answers in its `isError` result.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// The message, in the reference server's words where it has some.
    pub message: String,
    /// For a conflict: the changes made after the expected version to the entities the write
    /// names (empty otherwise).
    pub changes: Vec<EntityChange>,
}

impl ToolError {
    /// Refused input, with its message.
    pub fn invalid(message: impl Into<String>) -> Self {
        ToolError { kind: ErrorKind::InvalidInput, message: message.into(), changes: Vec::new() }
    }
}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Invalid(_)
            | Error::Parse(_)
            | Error::AlreadySuperseded { .. }
            | Error::ForeignVersion(_)
            | Error::UnknownVersion(..) => ErrorKind::InvalidInput,
            Error::EntityNotFound(_) => ErrorKind::NotFound,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::ReadOnly { .. } => ErrorKind::ReadOnly,
            _ => ErrorKind::Other,
        };
        match e {
            // The reference server's words, so existing prompts keep working.
            Error::EntityNotFound(name) => {
                ToolError { kind, message: format!("Entity with name {name} not found"), changes: Vec::new() }
            }
            Error::Conflict { expected, changes, .. } => {
                let lines: Vec<String> = changes.iter().map(text::change).collect();
                let message = format!(
                    "Conflict: {} change(s) touched these entities after {expected}; nothing was written. Read again, then retry.\n{}",
                    changes.len(),
                    lines.join("\n")
                );
                ToolError { kind, message, changes }
            }
            other => ToolError { kind, message: other.to_string(), changes: Vec::new() },
        }
    }
}
