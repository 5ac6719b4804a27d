//! What a tool call answers: the reference server's result shapes, Cairn's freshness line, and
//! failures as `isError` results.

use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;
use serde_json::{Value, json};

use cairn::{Error, Freshness};

use crate::output;
use crate::shape::RefEntity;

/// A tool's failure, shown to the model as an `isError` result (never a protocol error).
pub(super) struct ToolError(pub(super) String);

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        ToolError(match e {
            // The reference server's words, so existing prompts keep working.
            Error::EntityNotFound(name) => format!("Entity with name {name} not found"),
            Error::Conflict { expected, changes, .. } => {
                let lines: Vec<String> = changes.iter().map(output::change).collect();
                format!(
                    "Conflict: {} change(s) touched these entities after {expected}; nothing was written. Read again, then retry.\n{}",
                    changes.len(),
                    lines.join("\n")
                )
            }
            other => other.to_string(),
        })
    }
}

/// A success in the reference server's shape: the value as pretty JSON text, and as structured
/// content (under `key`, or as itself).
pub(super) fn success<T: Serialize>(value: &T, key: Option<&str>, notice: Option<String>) -> CallToolResult {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let structured = serde_json::to_value(value).unwrap_or(Value::Null);
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(match key {
        Some(k) => json!({ k: structured }),
        None => structured,
    });
    // The reference server leaves `isError` out on success.
    r.is_error = None;
    if let Some(n) = notice {
        r.content.push(ContentBlock::text(n));
    }
    r
}

/// `create_entities`' answer: the entities created as the reference lists them, then, as the
/// reference's next release does (a compatible extension, adopted now), the names it skipped
/// because they already existed (or repeated within the call): `skipped` in the structured
/// content, and a second text block saying so, since an agent would otherwise take their
/// observations for stored.
pub(super) fn created_entities(created: &[RefEntity], skipped: Vec<String>) -> CallToolResult {
    let mut r = success(&created, Some("entities"), None);
    if !skipped.is_empty() {
        let one = skipped.len() == 1;
        r.content.push(ContentBlock::text(format!(
            "Skipped {} {}: {}. {} observations were not added; use add_observations for existing entities.",
            skipped.len(),
            if one { "entity that already exists" } else { "entities that already exist" },
            skipped.join(", "),
            if one { "Its" } else { "Their" },
        )));
    }
    if let Some(Value::Object(structured)) = r.structured_content.as_mut() {
        structured.insert("skipped".into(), json!(skipped));
    }
    r
}

pub(super) fn done(message: &str) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(message)]);
    r.structured_content = Some(json!({ "success": true, "message": message }));
    r.is_error = None;
    r
}

/// The one line a model should notice: behind, offline, not in step with some of its peers,
/// changed by others since last read, or read-only (writes will be refused, and what is new
/// stays new).
pub(super) fn notice(
    f: &Freshness,
    peers: &[cairn::PeerFreshness],
    unseen: &cairn::Unseen,
    read_only: Option<cairn::ReadOnlyCause>,
) -> Option<String> {
    let mut parts = Vec::new();
    if matches!(f, Freshness::Behind { .. } | Freshness::Offline { .. }) {
        parts.push(format!("your view may be stale: {}", output::freshness(f)));
    }
    // With several peers, say which ones this view is in step with, once any is not.
    if peers.iter().any(|p| !matches!(p.freshness, Freshness::Synced { .. }))
        && let Some(each) = output::peers(peers)
    {
        parts.push(format!("peers: {each}"));
    }
    if let Some(u) = output::unseen(unseen) {
        parts.push(format!("NEW: {u}"));
    }
    if let Some(cause) = read_only {
        parts.push(format!("{}; writes will be refused", output::read_only(cause)));
    }
    (!parts.is_empty()).then(|| format!("[cairn] {}", parts.join("; ")))
}
