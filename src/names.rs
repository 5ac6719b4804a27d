//! Validated names: graphs, agents, and the text that goes into a graph.
//!
//! Everything a user can type is checked here, once, before it reaches a document: a bad name is
//! an [`InvalidInput`] error and nothing is written.
//!
//! What goes into a graph is stored as given, as the reference memory server stores it: empty
//! strings, newlines, tabs, any Unicode. The bounds exist for safety only, and are the same for
//! local writes, imports and the schema check of changes from peers (`docs/schema.md`). The one
//! character a name cannot hold is U+001F, which separates the parts of observation and relation
//! keys.

use std::fmt;
use std::str::FromStr;

/// Longest entity name, entity type or relation type, in bytes (64 KiB). A name is repeated in
/// the key of each of its entity's observations and relations, and in the index.
pub const MAX_NAME_BYTES: usize = 64 * 1024;
/// Longest graph name, in characters (`[a-z0-9._-]`, so characters and bytes agree).
pub const MAX_GRAPH_NAME: usize = 64;
/// Longest agent name, in bytes.
pub const MAX_AGENT_BYTES: usize = 128;
/// Most bytes one write may store (12 MiB): its names and texts, counting an entity's name once
/// per key it appears in, plus 128 bytes per operation for the record. One write is one change
/// per shard, and a change must fit one sync message: a relay takes messages of up to 16 MiB.
pub const MAX_WRITE_BYTES: usize = 12 * 1024 * 1024;
/// Longest observation text, in bytes (10 MiB): the reference memory server's next release caps
/// a whole message at 10 MiB, and one such observation still fits the relay's 16 MiB message.
pub const MAX_TEXT_BYTES: usize = 10 * 1024 * 1024;

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
    /// A name held U+001F, the separator of the parts of observation and relation keys.
    #[error(
        "{what} contains U+001F (the unit separator), which Cairn reserves to separate the parts of a key; \
         the reference memory server accepts it, Cairn cannot store it (docs/mcp.md)"
    )]
    Separator {
        /// What was being checked.
        what: &'static str,
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
    /// A write would store more than [`MAX_WRITE_BYTES`].
    #[error("the write is about {bytes} bytes; one write stores at most {max} bytes (split it into several)")]
    WriteTooLarge {
        /// Its estimated size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A supersede named the same fact as old and new.
    #[error("{what} cannot replace itself; give a different new {what}")]
    ReplacesItself {
        /// Which kind of fact.
        what: &'static str,
    },
    /// A supersede's new record, with its link to the old fact, would exceed the record bound.
    #[error(
        "the new record, with its link to the {what} it replaces, is {bytes} bytes; a record is at most {max} \
         (delete the old {what} and add the new one instead)"
    )]
    LinkTooLong {
        /// Which kind of fact.
        what: &'static str,
        /// The record's size.
        bytes: usize,
        /// The bound.
        max: usize,
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

/// Checks an entity name, entity type or relation type: at most [`MAX_NAME_BYTES`], without
/// U+001F. Empty names and any other character are stored as given.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.len() > MAX_NAME_BYTES {
        return Err(InvalidInput::TooLong { what, len: value.len(), max: MAX_NAME_BYTES });
    }
    if value.contains(crate::schema::SEP) {
        return Err(InvalidInput::Separator { what });
    }
    Ok(())
}

/// Checks observation text: at most [`MAX_TEXT_BYTES`]; any character, the empty text included.
pub(crate) fn check_text(value: &str) -> Result<(), InvalidInput> {
    if value.len() > MAX_TEXT_BYTES {
        return Err(InvalidInput::TooLong { what: "observation text", len: value.len(), max: MAX_TEXT_BYTES });
    }
    Ok(())
}

/// Checks a label Cairn itself names things by (an agent): non-empty, at most `max` bytes, no
/// control characters, since it is printed in logs, history and status lines.
pub(crate) fn check_label(what: &'static str, value: &str, max: usize) -> Result<(), InvalidInput> {
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
        check_label("agent name", s, MAX_AGENT_BYTES)?;
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
    fn names_hold_what_the_reference_stores_but_the_key_separator() {
        for ok in ["Alice", "", "line\nbreak\ttab", "nul\0", &"名".repeat(100)] {
            assert_eq!(check_name("entity name", ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_name("entity name", "Al\u{1f}ice"), Err(InvalidInput::Separator { what: "entity name" }));
        assert!(matches!(
            check_name("entity name", &"é".repeat(MAX_NAME_BYTES / 2 + 1)),
            Err(InvalidInput::TooLong { len, .. }) if len == MAX_NAME_BYTES + 2
        ));
        for ok in ["", "line one\nline two\twith tab", "nul\0", "unit\u{1f}separator"] {
            assert_eq!(check_text(ok), Ok(()), "{ok:?}");
        }
        assert!(matches!(check_text(&"x".repeat(MAX_TEXT_BYTES + 1)), Err(InvalidInput::TooLong { .. })));
    }

    #[test]
    fn agent_names_are_printable_labels() {
        assert!("planner@laptop".parse::<AgentName>().is_ok());
        assert_eq!("".parse::<AgentName>(), Err(InvalidInput::Empty { what: "agent name" }));
        assert!(matches!("a\nb".parse::<AgentName>(), Err(InvalidInput::ControlCharacter { code: 0x0a, .. })));
    }
}
