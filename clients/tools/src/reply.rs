//! What a tool call answers: the reference server's result shapes, Cairn's freshness line, and
//! what the read saw (version, freshness, unseen) for bindings that return it as data.

use serde::Serialize;
use serde_json::{Value, json};

use cairn::{Freshness, Read, ReadOnlyCause, Unseen, Version};

use crate::shape::RefEntity;
use crate::{text, when};

/// A tool's answer. `cairn mcp` sends `texts` as its text blocks, in order, and `structured` as
/// the structured content; a binding returns `structured` with `seen` beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The value as pretty JSON first, then any notices (stale view, news, conflicts, skips).
    pub texts: Vec<String>,
    /// The value, in the reference server's shape (plus Cairn's optional fields).
    pub structured: Value,
    /// What the read behind this answer saw; `None` for writes.
    pub seen: Option<Seen>,
    /// For writes: the version right after the write (a later `expect`).
    pub written: Option<Version>,
}

/// The causal facts a read carries beside its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// The version the read saw.
    pub version: Version,
    /// How fresh the replica's view was.
    pub freshness: Freshness,
    /// Changes by other agents this agent had not seen before the read.
    pub unseen: Unseen,
    /// Why the replica is read-only, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<ReadOnlyCause>,
}

impl Seen {
    /// What `read` saw, without its data.
    pub fn of<T>(read: &Read<T>) -> Self {
        Seen {
            version: read.version,
            freshness: read.freshness,
            unseen: read.unseen.clone(),
            read_only: read.read_only,
        }
    }
}

/// A success in the reference server's shape: the value as pretty JSON text, and as structured
/// content (under `key`, or as itself).
pub fn success<T: Serialize>(value: &T, key: Option<&str>, notice: Option<String>) -> Reply {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let structured = serde_json::to_value(value).unwrap_or(Value::Null);
    let mut texts = vec![text];
    texts.extend(notice);
    let structured = match key {
        Some(k) => json!({ k: structured }),
        None => structured,
    };
    Reply { texts, structured, seen: None, written: None }
}

/// `create_entities`' answer: the entities created as the reference lists them, then, as the
/// reference's next release does (a compatible extension, adopted now), the names it skipped
/// because they already existed (or repeated within the call): `skipped` in the structured
/// content, and a second text block saying so, since an agent would otherwise take their
/// observations for stored.
pub fn created_entities(created: &[RefEntity], skipped: Vec<String>) -> Reply {
    let mut r = success(&created, Some("entities"), None);
    if !skipped.is_empty() {
        let one = skipped.len() == 1;
        r.texts.push(format!(
            "Skipped {} {}: {}. {} observations were not added; use add_observations for existing entities.",
            skipped.len(),
            if one { "entity that already exists" } else { "entities that already exist" },
            skipped.join(", "),
            if one { "Its" } else { "Their" },
        ));
    }
    if let Value::Object(structured) = &mut r.structured {
        structured.insert("skipped".into(), json!(skipped));
    }
    r
}

/// A write's plain acknowledgement, as the reference words it.
pub fn done(message: &str) -> Reply {
    Reply {
        texts: vec![message.to_owned()],
        structured: json!({ "success": true, "message": message }),
        seen: None,
        written: None,
    }
}

/// The one line a model should notice: behind, offline, not in step with some of its peers,
/// changed by others since last read, or read-only (writes will be refused, and what is new
/// stays new).
pub fn notice(
    f: &Freshness,
    peers: &[cairn::PeerFreshness],
    unseen: &cairn::Unseen,
    read_only: Option<cairn::ReadOnlyCause>,
) -> Option<String> {
    let mut parts = Vec::new();
    if matches!(f, Freshness::Behind { .. } | Freshness::Offline { .. }) {
        parts.push(format!("your view may be stale: {}", text::freshness(f)));
    }
    // With several peers, say which ones this view is in step with, once any is not.
    if peers.iter().any(|p| !matches!(p.freshness, Freshness::Synced { .. }))
        && let Some(each) = text::peers(peers)
    {
        parts.push(format!("peers: {each}"));
    }
    if let Some(u) = text::unseen(unseen) {
        parts.push(format!("NEW: {u}"));
    }
    if let Some(cause) = read_only {
        parts.push(format!("{}; writes will be refused", text::read_only(cause)));
    }
    (!parts.is_empty()).then(|| format!("[cairn] {}", parts.join("; ")))
}
/// A fact named in the reference's camelCase style.
fn fact(f: &cairn::FactRef) -> Value {
    match f {
        cairn::FactRef::Observation { entity, text } => json!({ "entityName": entity, "content": text }),
        cairn::FactRef::Relation { relation } => relation_json(relation),
    }
}

fn relation_json(r: &cairn::Relation) -> Value {
    json!({ "from": r.from, "relationType": r.relation_type, "to": r.to })
}

/// `validFrom` / `validTo` (ISO 8601) of a validity, into `out`; nothing for an open end.
fn put_validity(out: &mut Value, v: &cairn::Validity) {
    if let Some(from) = v.valid_from {
        out["validFrom"] = json!(when::iso(from));
    }
    if let Some(to) = v.valid_to {
        out["validTo"] = json!(when::iso(to));
    }
}

/// Supersede conflicts in camelCase, each replacement with who recorded it and when.
pub fn conflicts(all: &[cairn::SupersedeConflict]) -> Value {
    Value::Array(
        all.iter()
            .map(|c| {
                let replacements: Vec<Value> = c
                    .replacements
                    .iter()
                    .map(|r| {
                        let mut v = fact(&r.fact);
                        v["by"] = json!(r.by);
                        v["recordedAt"] = json!(when::iso(r.at));
                        put_validity(&mut v, &r.validity);
                        v
                    })
                    .collect();
                json!({ "replaced": fact(&c.replaced), "replacements": replacements })
            })
            .collect(),
    )
}

/// An entity in the reference's shape and key order, plus Cairn's `observationValidity`.
#[derive(Debug, Serialize)]
pub struct OutEntity<'a> {
    name: &'a str,
    #[serde(rename = "entityType")]
    entity_type: &'a str,
    observations: Vec<&'a str>,
    #[serde(rename = "observationValidity", skip_serializing_if = "Vec::is_empty")]
    observation_validity: Vec<Value>,
}

/// A relation in the reference's shape and key order, plus when it holds and what it replaced.
#[derive(Debug, Serialize)]
pub struct OutRelation<'a> {
    from: &'a str,
    to: &'a str,
    #[serde(rename = "relationType")]
    relation_type: &'a str,
    #[serde(rename = "validFrom", skip_serializing_if = "Option::is_none")]
    valid_from: Option<String>,
    #[serde(rename = "validTo", skip_serializing_if = "Option::is_none")]
    valid_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaces: Option<Value>,
}

/// A graph in the reference's shape (its key order too: the text is compared as the reference
/// prints it), plus (Cairn) what the read left out and supersede conflicts.
#[derive(Debug, Serialize)]
pub struct OutGraph<'a> {
    entities: Vec<OutEntity<'a>>,
    relations: Vec<OutRelation<'a>>,
    #[serde(rename = "leftOut", skip_serializing_if = "Option::is_none")]
    left_out: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conflicts: Option<Value>,
}

/// A graph as the read tools answer it: each addition only where there is something to say, so
/// a graph without validity reads exactly as the reference's.
pub fn graph(g: &cairn::Graph) -> OutGraph<'_> {
    let entities = g
        .entities
        .iter()
        .map(|e| OutEntity {
            name: &e.name,
            entity_type: &e.entity_type,
            observations: e.observations.iter().map(|o| o.text.as_str()).collect(),
            observation_validity: e
                .observations
                .iter()
                .filter(|o| o.validity != cairn::Validity::default() || o.replaces.is_some())
                .map(|o| {
                    let mut v = json!({ "content": o.text });
                    put_validity(&mut v, &o.validity);
                    if let Some(old) = &o.replaces {
                        v["replaces"] = json!(old);
                    }
                    v
                })
                .collect(),
        })
        .collect();
    let relations = g
        .relations
        .iter()
        .map(|r| OutRelation {
            from: &r.relation.from,
            to: &r.relation.to,
            relation_type: &r.relation.relation_type,
            valid_from: r.validity.valid_from.map(when::iso),
            valid_to: r.validity.valid_to.map(when::iso),
            replaces: r.replaces.as_ref().map(relation_json),
        })
        .collect();
    let left_out = (!g.left_out.is_empty()).then(|| {
        json!({
            "superseded": g.left_out.superseded,
            "expired": g.left_out.expired,
            "notYetValid": g.left_out.not_yet_valid,
        })
    });
    let conflicts = (!g.conflicts.is_empty()).then(|| conflicts(&g.conflicts));
    OutGraph { entities, relations, left_out, conflicts }
}

/// The line a model should not miss when a read holds supersede conflicts.
pub fn conflict_notice(all: &[cairn::SupersedeConflict]) -> Option<String> {
    if all.is_empty() {
        return None;
    }
    let lines: Vec<String> = all
        .iter()
        .map(|c| {
            let name = |f: &cairn::FactRef| match f {
                cairn::FactRef::Observation { entity, text } => format!("{text:?} on {entity:?}"),
                cairn::FactRef::Relation { relation: r } => {
                    format!("({:?} {:?} {:?})", r.from, r.relation_type, r.to)
                }
            };
            let by: Vec<String> = c.replacements.iter().map(|r| format!("{} (by {})", name(&r.fact), r.by)).collect();
            format!("{} was superseded by {}", name(&c.replaced), by.join(" and "))
        })
        .collect();
    Some(format!("[cairn] CONFLICT: {}. Supersede all but one of the replacements to resolve.", lines.join("; ")))
}

/// A supersede tool's answer: what it superseded under `key`, and (structured as `notFound`,
/// and in a second text block) the items whose old fact was not there, which wrote nothing.
pub fn superseded(key: &str, items: impl IntoIterator<Item = Value>, outcomes: &[cairn::Outcome], what: &str) -> Reply {
    let (mut done, mut missing) = (Vec::new(), Vec::new());
    for (item, outcome) in items.into_iter().zip(outcomes) {
        if *outcome == cairn::Outcome::Applied { done.push(item) } else { missing.push(item) }
    }
    let mut r = success(&done, Some(key), None);
    if !missing.is_empty() {
        let listed: Vec<String> = missing.iter().map(Value::to_string).collect();
        r.texts.push(format!(
            "Not found, nothing written for {}: the {what} to replace is not there: {}",
            if missing.len() == 1 { "this one".to_owned() } else { format!("these {}", missing.len()) },
            listed.join(", ")
        ));
    }
    if let Value::Object(structured) = &mut r.structured {
        structured.insert("notFound".into(), Value::Array(missing));
    }
    r
}
