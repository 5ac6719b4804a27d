//! From an Automerge change to entity-level events: who touched which entity, how.
//!
//! Every change is decoded exactly once, when it is first logged in a replica (local write,
//! sync or import alike). The operations on a shard's three maps say which keys it touched, and
//! the record fields written in the same change say what it wrote there.

use std::collections::{BTreeSet, HashMap};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Automerge, Change, ReadDoc, ScalarValue, Value};
use serde::{Deserialize, Serialize};

use crate::model::{Millis, Relation, Validity, What};
use crate::schema::{EntityRecord, FactRecord, Layout, Link, MapKind, split_observation_key, split_relation_key};

/// The metadata Cairn writes in every change's message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChangeMessage {
    pub(crate) agent: String,
}

/// The agent that wrote a change: the `agent` of its JSON message; for changes written by other
/// tools, the message itself, or the actor id when there is none.
pub(crate) fn change_agent(change: &Change) -> String {
    agent_of(change.message(), change.actor_id())
}

/// The agent, from a change's message and actor (see [`change_agent`]).
pub(crate) fn agent_of(message: Option<&str>, actor: &automerge::ActorId) -> String {
    match message {
        Some(m) => match serde_json::from_str::<ChangeMessage>(m) {
            Ok(msg) => msg.agent,
            Err(_) => m.chars().take(crate::names::MAX_AGENT_BYTES).collect(),
        },
        None => {
            let hex = actor.to_hex_string();
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
    /// For changes this replica just wrote: the value each key now holds (`None`: deleted).
    /// A local change was made after seeing everything at its keys, so its last write to a key
    /// is that key's whole state; the index can take it from here instead of reading the
    /// document again. Empty for changes from peers, which may be concurrent with others.
    pub(crate) written: HashMap<(MapKind, String), Option<String>>,
}

impl Touched {
    pub(crate) fn is_empty(&self) -> bool {
        self.entities.is_empty() && self.observations.is_empty() && self.relations.is_empty()
    }

    /// Every key of a shard, as if every one had just been touched (to rebuild its index).
    pub(crate) fn everything(doc: &Automerge, layout: &Layout) -> Touched {
        let mut touched = Touched::default();
        touched.entities.extend(doc.keys(&layout.entities));
        for key in doc.keys(&layout.observations) {
            if let Some((entity, _)) = split_observation_key(&key) {
                touched.entities.insert(entity.to_owned());
            }
            touched.observations.insert(key);
        }
        for key in doc.keys(&layout.relations) {
            if let Some((from, _, _)) = split_relation_key(&key) {
                touched.entities.insert(from.to_owned());
            }
            touched.relations.insert(key);
        }
        touched
    }
}

fn opid_text(counter: u64, actor: &automerge::ActorId) -> String {
    format!("{counter}@{actor}")
}

/// What a change did at one key: wrote a record there, or removed everything there.
enum Effect {
    Set(Option<String>),
    Removed,
}

/// Decodes one change of a shard, already applied to `doc`, into `(entity, what)` events, and
/// adds the keys it touched to `touched`. A relation yields an event for both of its ends.
///
/// A delete operation does not always remove a key: Automerge writes a value equal to the
/// current winner of a conflict as a delete of the losing values. So a delete is read against
/// the document as of the change itself, and reported as a removal only if nothing is left.
pub(crate) fn decode(
    change: &Change,
    doc: &Automerge,
    layout: &Layout,
    local: bool,
    touched: &mut Touched,
) -> Vec<(String, What)> {
    let expanded = change.decode();
    let hash = [change.hash()];
    let mut events = Vec::new();
    let ops = &expanded.operations;
    for (i, op) in ops.iter().enumerate() {
        let (ObjectId::Id(obj), Key::Map(key)) = (&op.obj, &op.key) else { continue };
        let Some(kind) = layout.kind_of(&opid_text(obj.0, &obj.1)) else { continue };
        // A delete immediately followed by a put at the same key is one write (see
        // `schema::put_record`), not an event of its own.
        let rewrite = ops
            .get(i + 1)
            .is_some_and(|next| next.obj == op.obj && next.key == op.key && matches!(next.action, OpType::Put(_)));
        if matches!(op.action, OpType::Delete) && rewrite {
            continue;
        }
        let effect = match &op.action {
            OpType::Put(ScalarValue::Str(s)) => Effect::Set(Some(s.to_string())),
            OpType::Delete => match doc.get_at(layout.map(kind), key.as_str(), &hash).ok().flatten() {
                None => Effect::Removed,
                Some((Value::Scalar(v), _)) => Effect::Set(v.as_str().map(str::to_owned)),
                Some(_) => Effect::Set(None),
            },
            // Not how Cairn writes (a hand-made record object, say): present, details unknown.
            _ => Effect::Set(None),
        };
        if local {
            // A local change was made after seeing everything at its keys, so its last plain
            // write to a key is that key's whole state. Anything else: read the document.
            match (&effect, &op.action) {
                (Effect::Set(Some(v)), OpType::Put(_)) => {
                    touched.written.insert((kind, key.to_string()), Some(v.clone()))
                }
                (Effect::Removed, _) => touched.written.insert((kind, key.to_string()), None),
                _ => touched.written.remove(&(kind, key.to_string())),
            };
        }
        let fact = |v: &Option<String>| {
            let r = v.as_deref().map(FactRecord::parse).unwrap_or_default();
            (Validity { valid_from: r.valid_from, valid_to: r.valid_to }, r.replaces)
        };
        match kind {
            MapKind::Entities => {
                touched.entities.insert(key.to_string());
                let what = match &effect {
                    Effect::Removed => What::EntityDeleted,
                    Effect::Set(v) => What::EntitySet {
                        entity_type: v.as_deref().map(EntityRecord::parse).unwrap_or_default().entity_type,
                    },
                };
                events.push((key.to_string(), what));
            }
            MapKind::Observations => {
                let Some((entity, text)) = split_observation_key(key) else { continue };
                touched.observations.insert(key.to_string());
                touched.entities.insert(entity.to_owned());
                let text = text.to_owned();
                let what = match &effect {
                    Effect::Removed => What::ObservationDeleted { text },
                    Effect::Set(v) => {
                        let (validity, link) = fact(v);
                        let replaces = link.as_ref().and_then(Link::text).map(str::to_owned);
                        What::ObservationSet { text, validity, replaces }
                    }
                };
                events.push((entity.to_owned(), what));
            }
            MapKind::Relations => {
                let Some((from, relation_type, to)) = split_relation_key(key) else { continue };
                touched.relations.insert(key.to_string());
                touched.entities.insert(from.to_owned());
                let relation = Relation { from: from.into(), relation_type: relation_type.into(), to: to.into() };
                let what = match &effect {
                    Effect::Removed => What::RelationDeleted { relation },
                    Effect::Set(v) => {
                        let (validity, link) = fact(v);
                        What::RelationSet { relation, validity, replaces: link.as_ref().and_then(Link::relation) }
                    }
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
