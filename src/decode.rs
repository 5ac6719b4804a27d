//! From an Automerge change to entity-level events: who touched which entity, how.
//!
//! Every change is decoded exactly once, when it is first logged in a replica (local write,
//! sync or import alike). The operations on a shard's three maps say which keys it touched, and
//! the record fields written in the same change say what it wrote there.

use std::collections::{BTreeSet, HashMap};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Change, ScalarValue};
use serde::{Deserialize, Serialize};

use crate::model::{Millis, Relation, Validity, What};
use crate::schema::{split_observation_key, split_relation_key, Layout, MapKind};

/// The metadata Cairn writes in every change's message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChangeMessage {
    pub(crate) agent: String,
}

/// The agent that wrote a change: the `agent` of its JSON message; for changes written by other
/// tools, the message itself, or the actor id when there is none.
pub(crate) fn change_agent(change: &Change) -> String {
    match change.message() {
        Some(m) => match serde_json::from_str::<ChangeMessage>(m) {
            Ok(msg) => msg.agent,
            Err(_) => m.chars().take(crate::names::MAX_AGENT_BYTES).collect(),
        },
        None => {
            let hex = change.actor_id().to_hex_string();
            format!("actor:{}", &hex[..hex.len().min(8)])
        }
    }
}

/// A change's timestamp in milliseconds. Cairn writes milliseconds; automerge-js writes seconds
/// by default, and any value below 10^11 (the year 1973 in milliseconds, the year 5138 in
/// seconds) is read as seconds.
pub(crate) fn change_time(change: &Change) -> Millis {
    let t = change.timestamp();
    if t.abs() < 100_000_000_000 { t.saturating_mul(1000) } else { t }
}

/// The keys a batch of changes touched in one shard, to refresh the derived index from.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub(crate) entities: BTreeSet<String>,
    pub(crate) observations: BTreeSet<String>,
    pub(crate) relations: BTreeSet<String>,
}

impl Touched {
    pub(crate) fn is_empty(&self) -> bool {
        self.entities.is_empty() && self.observations.is_empty() && self.relations.is_empty()
    }
}

fn opid_text(counter: u64, actor: &automerge::ActorId) -> String {
    format!("{counter}@{actor}")
}

fn as_time(v: &ScalarValue) -> Option<Millis> {
    match v {
        ScalarValue::Timestamp(t) | ScalarValue::Int(t) => Some(*t),
        ScalarValue::Uint(t) => i64::try_from(*t).ok(),
        _ => None,
    }
}

/// Decodes one change of a shard into `(entity, what)` events, and adds the keys it touched to
/// `touched`. A relation yields an event for both of its ends.
pub(crate) fn decode(change: &Change, layout: &Layout, touched: &mut Touched) -> Vec<(String, What)> {
    let expanded = change.decode();
    let start = expanded.start_op.get();
    let actor = &expanded.actor_id;

    // Scalar fields written inside objects this change created, by object id.
    let mut fields: HashMap<String, HashMap<&str, &ScalarValue>> = HashMap::new();
    for op in &expanded.operations {
        if let (OpType::Put(v), Key::Map(k), ObjectId::Id(obj)) = (&op.action, &op.key, &op.obj) {
            fields.entry(opid_text(obj.0, &obj.1)).or_default().insert(k.as_str(), v);
        }
    }
    let validity_of = |id: &str| {
        let f = fields.get(id);
        let get = |k: &str| f.and_then(|f| f.get(k)).and_then(|v| as_time(v));
        Validity { valid_from: get("valid_from"), valid_to: get("valid_to") }
    };

    let mut events = Vec::new();
    for (i, op) in expanded.operations.iter().enumerate() {
        let (ObjectId::Id(obj), Key::Map(key)) = (&op.obj, &op.key) else { continue };
        let Some(kind) = layout.kind_of(&opid_text(obj.0, &obj.1)) else { continue };
        let created = opid_text(start + i as u64, actor);
        let deleted = matches!(op.action, OpType::Delete);
        match kind {
            MapKind::Entities => {
                touched.entities.insert(key.to_string());
                let what = if deleted {
                    What::EntityDeleted
                } else {
                    let entity_type = match &op.action {
                        OpType::Put(ScalarValue::Str(s)) => s.to_string(),
                        _ => fields
                            .get(&created)
                            .and_then(|f| f.get("type"))
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                    };
                    What::EntitySet { entity_type }
                };
                events.push((key.to_string(), what));
            }
            MapKind::Observations => {
                let Some((entity, text)) = split_observation_key(key) else { continue };
                touched.observations.insert(key.to_string());
                touched.entities.insert(entity.to_owned());
                let text = text.to_owned();
                let what = if deleted {
                    What::ObservationDeleted { text }
                } else {
                    What::ObservationSet { text, validity: validity_of(&created) }
                };
                events.push((entity.to_owned(), what));
            }
            MapKind::Relations => {
                let Some((from, relation_type, to)) = split_relation_key(key) else { continue };
                touched.relations.insert(key.to_string());
                touched.entities.insert(from.to_owned());
                let relation = Relation { from: from.into(), relation_type: relation_type.into(), to: to.into() };
                let what = if deleted {
                    What::RelationDeleted { relation }
                } else {
                    What::RelationSet { relation, validity: validity_of(&created) }
                };
                if from != to {
                    events.push((to.to_owned(), what.clone()));
                }
                events.push((from.to_owned(), what));
            }
        }
    }
    events
}
