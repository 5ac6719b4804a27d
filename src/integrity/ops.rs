//! The rules for what a change says: its message, and each of its operations on a shard.

use automerge::Change;
use automerge::legacy::{Key, OpType};
use serde_json::Value as Json;

use super::{DocRules, Rule, Violation};
use crate::decode::ChangeMessage;
use crate::names::{self, InvalidInput, MAX_AGENT_BYTES, MAX_NAME_BYTES};
use crate::schema::{MapKind, shard_of, split_observation_key, split_relation_key};

/// The longest record string. A record holds a type or nothing, an agent name, and a few
/// numbers: room for the longest type with every byte JSON-escaped (`\u0001` is six bytes),
/// plus 4 KiB for fields a later schema adds, and none for a payload.
pub const MAX_RECORD_BYTES: usize = 6 * MAX_NAME_BYTES + 4096;

/// Rule `message`: every change names its agent, `{"agent":"<agent name>"}`.
pub(super) fn check_message(change: &Change) -> Result<(), Violation> {
    let refuse = |detail: String| Violation::new(change, Rule::Message, detail);
    let Some(message) = change.message() else {
        return Err(refuse("the change has no message; write {\"agent\":\"<agent name>\"}".into()));
    };
    let parsed: ChangeMessage = serde_json::from_str(message)
        .map_err(|_| refuse("the message is not JSON of the form {\"agent\":\"<agent name>\"}".into()))?;
    names::check_label("agent name", &parsed.agent, MAX_AGENT_BYTES).map_err(|e| refuse(e.to_string()))
}

/// Rules `root` to `record`: every operation of a change to shard `shard` is a put of a record
/// string, or a delete, at a well-formed key of one of the three maps genesis made, and the key's
/// entity hashes to this shard.
pub(super) fn check_ops(change: &Change, rules: &DocRules, shard: u32) -> Result<(), Violation> {
    let expanded = change.decode();
    for op in &expanded.operations {
        let refuse = |rule: Rule, detail: String| Violation::new(change, rule, detail);
        let Some(kind) = rules.map_of(&op.obj) else {
            return Err(match op.obj {
                automerge::legacy::ObjectId::Root => {
                    refuse(Rule::Root, "an operation on the shard's root map, which only genesis writes".into())
                }
                _ => refuse(Rule::Object, "an operation on an object other than the shard's three maps".into()),
            });
        };
        let Key::Map(key) = &op.key else {
            return Err(refuse(Rule::Object, "a list operation on a map".into()));
        };
        let record = match &op.action {
            OpType::Delete => None,
            OpType::Put(automerge::ScalarValue::Str(record)) => Some(record),
            OpType::Make(obj) => {
                return Err(refuse(
                    Rule::Object,
                    format!(
                        "creates a {obj:?} object at {:?}; records are strings (in automerge-js 3, `new ImmutableString(json)`: a plain string makes a text object)",
                        short(key)
                    ),
                ));
            }
            OpType::Put(v) => {
                return Err(refuse(Rule::Value, format!("puts {v:?} at {:?}; records are strings", short(key))));
            }
            OpType::Increment(_) | OpType::MarkBegin(_) | OpType::MarkEnd(_) => {
                return Err(refuse(Rule::Value, format!("a counter or mark operation at {:?}", short(key))));
            }
        };
        let entity = check_key(kind, key).map_err(|e| refuse(Rule::Key, format!("the key {:?}: {e}", short(key))))?;
        let home = shard_of(entity);
        if home != shard {
            return Err(refuse(
                Rule::Shard,
                format!(
                    "{entity:?} lives in shard {home}, and this is shard {shard} (docs/schema.md, \"Shard of an entity\")"
                ),
            ));
        }
        if let Some(record) = record {
            check_record(kind, record)
                .map_err(|detail| refuse(Rule::Record, format!("the record at {:?}: {detail}", short(key))))?;
        }
    }
    Ok(())
}

/// Checks a key's shape and names; returns the entity whose shard it belongs to.
fn check_key(kind: MapKind, key: &str) -> Result<&str, String> {
    let name = |what: &'static str, v: &str| names::check_name(what, v).map_err(|e| quoted(&e));
    match kind {
        MapKind::Entities => {
            name("entity name", key)?;
            Ok(key)
        }
        MapKind::Observations => {
            let (entity, text) = split_observation_key(key).ok_or("an observation key is <entity>\\u001f<text>")?;
            name("entity name", entity)?;
            names::check_text(text).map_err(|e| quoted(&e))?;
            Ok(entity)
        }
        MapKind::Relations => {
            let (from, relation_type, to) =
                split_relation_key(key).ok_or("a relation key is <from>\\u001f<relation type>\\u001f<to>")?;
            name("entity name", from)?;
            name("relation type", relation_type)?;
            name("entity name", to)?;
            Ok(from)
        }
    }
}

/// An error message without the (possibly huge) value it quotes.
fn quoted(e: &InvalidInput) -> String {
    match e {
        InvalidInput::ControlCharacter { what, code, .. } => {
            format!("{what} contains the control character U+{code:04X}")
        }
        other => other.to_string(),
    }
}

/// A key shortened for a message: at most 80 characters.
fn short(key: &str) -> String {
    let mut s: String = key.chars().take(80).collect();
    if s.len() < key.len() {
        s.push('…');
    }
    s
}

/// Rule `record`: the record is a JSON object of at most [`MAX_RECORD_BYTES`] whose known
/// fields have the documented types; fields it does not know are allowed (readers ignore them).
fn check_record(kind: MapKind, record: &str) -> Result<(), String> {
    if record.len() > MAX_RECORD_BYTES {
        return Err(format!("{} bytes; a record is at most {MAX_RECORD_BYTES}", record.len()));
    }
    let Ok(Json::Object(fields)) = serde_json::from_str::<Json>(record) else {
        return Err("not a JSON object".into());
    };
    let int = |k: &str| match fields.get(k) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| format!("{k:?} is not an integer")),
    };
    match fields.get("by") {
        None => {}
        Some(Json::String(by)) => names::check_label("agent name", by, MAX_AGENT_BYTES).map_err(|e| quoted(&e))?,
        Some(_) => return Err("\"by\" is not a string".into()),
    }
    int("at")?;
    match kind {
        MapKind::Entities => match fields.get("type") {
            Some(Json::String(t)) => names::check_name("entity type", t).map_err(|e| quoted(&e))?,
            _ => return Err("an entity record needs \"type\", a string".into()),
        },
        MapKind::Observations | MapKind::Relations => {
            if let (Some(from), Some(to)) = (int("valid_from")?, int("valid_to")?)
                && to <= from
            {
                return Err(format!("valid_to ({to}) is not after valid_from ({from})"));
            }
            if let Some(n) = fields.get("n") {
                n.as_u64().filter(|n| u32::try_from(*n).is_ok()).ok_or("\"n\" is not a small unsigned integer")?;
            }
            if let Some(link) = fields.get("replaces") {
                check_link(kind, link)?;
            }
        }
    }
    Ok(())
}

/// The supersede link of a fact record (`docs/schema.md`, "The supersede link"): an observation
/// names the text it replaces (a valid observation text; the entity is the record's own), a
/// relation the `[from, type, to]` it replaces (three valid parts).
fn check_link(kind: MapKind, link: &Json) -> Result<(), String> {
    let name = |what: &'static str, v: &str| names::check_name(what, v).map_err(|e| quoted(&e));
    match (kind, link) {
        (MapKind::Observations, Json::String(text)) => names::check_text(text).map_err(|e| quoted(&e)),
        (MapKind::Observations, _) => Err("\"replaces\" of an observation is the text it replaces, a string".into()),
        (MapKind::Relations, Json::Array(parts)) if parts.len() == 3 => {
            let part = |i: usize| parts[i].as_str().ok_or("\"replaces\" of a relation holds three strings");
            name("entity name", part(0)?)?;
            name("relation type", part(1)?)?;
            name("entity name", part(2)?)
        }
        (MapKind::Relations, _) => {
            Err("\"replaces\" of a relation is the [from, type, to] it replaces, three strings".into())
        }
        (MapKind::Entities, _) => Ok(()),
    }
}
