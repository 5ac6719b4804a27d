//! Validated names: graphs, agents, and the text that goes into a graph.
//!
//! Everything a user can type is checked here, once, before it reaches a document: a bad name is
//! an [`InvalidInput`] error and nothing is written.

use std::fmt;
use std::str::FromStr;

/// Longest entity name, entity type or relation type, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest graph name, in characters (`[a-z0-9._-]`, so characters and bytes agree).
pub const MAX_GRAPH_NAME: usize = 64;
/// Longest agent name, in bytes.
pub const MAX_AGENT_BYTES: usize = 128;
/// Longest observation text, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Why a piece of user input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// The input was the empty string.
    #[error("{what} is empty; give it at least one printable character")]
    Empty {
        /// What was being checked ("entity name", "graph name", ...).
        what: &'static str,
    },
    /// The input was longer than its limit.
    #[error("{what} is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// What was being checked.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The input held a control character where only printable text is allowed.
    #[error("{what} {value:?} contains the control character U+{code:04X}; use printable text only")]
    ControlCharacter {
        /// What was being checked.
        what: &'static str,
        /// The offending input, for the message.
        value: String,
        /// The code point found.
        code: u32,
    },
    /// A graph name used a character outside `[a-z0-9._-]`.
    #[error("graph name {value:?} is invalid: use only a-z, 0-9, '.', '_' and '-' (at most 64)")]
    GraphName {
        /// The offending input.
        value: String,
    },
    /// A validity interval ended before it began.
    #[error("validity interval is empty: valid_to ({to}) is not after valid_from ({from})")]
    EmptyValidity {
        /// Start, milliseconds since the Unix epoch.
        from: i64,
        /// End, milliseconds since the Unix epoch.
        to: i64,
    },
}

/// Checks a name-like string: non-empty, at most `max` bytes, no control characters.
pub(crate) fn check_name(what: &'static str, value: &str, max: usize) -> Result<(), InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput::Empty { what });
    }
    if value.len() > max {
        return Err(InvalidInput::TooLong { what, len: value.len(), max });
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(InvalidInput::ControlCharacter { what, value: value.to_owned(), code: c as u32 });
    }
    Ok(())
}

/// Checks observation text: non-empty, bounded, and free of NUL (other control characters such
/// as newlines and tabs are ordinary text in an observation).
pub(crate) fn check_text(value: &str) -> Result<(), InvalidInput> {
    const WHAT: &str = "observation text";
    if value.is_empty() {
        return Err(InvalidInput::Empty { what: WHAT });
    }
    if value.len() > MAX_TEXT_BYTES {
        return Err(InvalidInput::TooLong { what: WHAT, len: value.len(), max: MAX_TEXT_BYTES });
    }
    if value.contains('\0') {
        return Err(InvalidInput::ControlCharacter { what: WHAT, value: value.chars().take(80).collect(), code: 0 });
    }
    Ok(())
}

/// The name of a graph: a memory space shared by a team of agents (`team`, `alice-notes`).
///
/// Graph names are `[a-z0-9._-]{1,64}` so that they are safe in URLs, file names and logs, and
/// so that every implementation derives the same document ids from them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GraphName(String);

impl GraphName {
    /// The graph used when none is named.
    pub fn default_graph() -> Self {
        GraphName("default".to_owned())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GraphName {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(InvalidInput::Empty { what: "graph name" });
        }
        let ok = s.len() <= MAX_GRAPH_NAME
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok { Ok(GraphName(s.to_owned())) } else { Err(InvalidInput::GraphName { value: s.to_owned() }) }
    }
}

impl fmt::Display for GraphName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name an agent writes under (`planner@laptop`). It travels in every change's metadata so
/// that history can say who wrote what; it is *not* the Automerge actor id, which is fresh for
/// every open replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentName(String);

impl AgentName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AgentName {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_name("agent name", s, MAX_AGENT_BYTES)?;
        Ok(AgentName(s.to_owned()))
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_names() {
        for ok in ["team", "alice-notes", "a.b_c-1", &"x".repeat(64)] {
            assert_eq!(ok.parse::<GraphName>().unwrap().as_str(), ok);
        }
        for bad in ["Team", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(matches!(bad.parse::<GraphName>(), Err(InvalidInput::GraphName { .. })), "{bad}");
        }
        assert_eq!("".parse::<GraphName>(), Err(InvalidInput::Empty { what: "graph name" }));
    }

    #[test]
    fn names_refuse_control_characters_and_length() {
        assert!(check_name("entity name", "Alice", MAX_NAME_BYTES).is_ok());
        assert!(matches!(
            check_name("entity name", "Al\u{1f}ice", MAX_NAME_BYTES),
            Err(InvalidInput::ControlCharacter { code: 0x1f, .. })
        ));
        assert!(matches!(
            check_name("entity name", &"é".repeat(129), MAX_NAME_BYTES),
            Err(InvalidInput::TooLong { len: 258, .. })
        ));
        assert!(check_text("line one\nline two\twith tab").is_ok());
        assert!(check_text("nul\0").is_err());
    }
}
