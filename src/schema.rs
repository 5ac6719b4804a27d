//! The document schema (version 1): how a graph is laid out in Automerge documents.
//!
//! `docs/schema.md` is the language-neutral statement of this module; keep them in step.
//!
//! A graph is one root document and [`SHARD_COUNT`] shard documents. Every document id derives
//! from the graph name, and every document starts from a *genesis* change that every replica
//! produces byte for byte (a fixed actor, time 0, the same operations), so replicas that start a
//! graph offline hold the same objects and merge instead of hiding one side's maps in a conflict.
//! After genesis no writer ever creates an object that another writer might create concurrently
//! and then mutate: entity, observation and relation records are immutable maps, replaced whole.

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use sha2::{Digest, Sha256};

use crate::ids::DocId;
use crate::names::GraphName;

/// The schema version written into every document.
pub const SCHEMA_VERSION: u64 = 1;

/// How many shard documents a graph has. Fixed for schema version 1: every replica must agree
/// on it without talking to anyone, because document ids derive from it.
pub const SHARD_COUNT: u32 = 32;

/// Separates the parts of an observation or relation key. Names never contain control
/// characters, so the first separator in a key always ends the entity name.
pub(crate) const SEP: char = '\u{1f}';

/// Which document of a graph a document id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// The root document: schema version, shard count, shard ids.
    Root,
    /// Shard `n` of [`SHARD_COUNT`].
    Shard(u32),
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The first 16 bytes of SHA-256 of the label, with the UUID version (4) and variant (RFC 4122)
/// bits set: automerge-repo document ids are UUIDs, and some implementations (automerge-repo
/// 1.x, which the stock sync server runs) refuse ids that are not well-formed ones.
fn derive_doc_id(label: &str) -> DocId {
    let digest = sha256(&[label.as_bytes()]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    DocId(id)
}

/// The shard an entity lives in: the first 8 bytes of SHA-256 of its UTF-8 name, read as a
/// big-endian unsigned integer, modulo [`SHARD_COUNT`].
pub fn shard_of(entity: &str) -> u32 {
    let digest = sha256(&[entity.as_bytes()]);
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(head) % u64::from(SHARD_COUNT)) as u32
}

/// Who wrote a change and when (milliseconds), as Cairn reads them: the `agent` of the change's
/// message, and its time (automerge-js writes seconds; see `docs/schema.md`).
pub fn change_author(change: &automerge::Change) -> (String, crate::model::Millis) {
    (crate::decode::change_agent(change), crate::decode::change_time(change))
}

/// The document ids of one graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphDocs {
    /// The root document.
    pub root: DocId,
    /// The shard documents, indexed by shard number.
    pub shards: Vec<DocId>,
}

impl GraphDocs {
    /// Derives the ids from `cairn/v1/<graph>/root` and `cairn/v1/<graph>/shard/<n>` (see
    /// `docs/schema.md`).
    pub fn of(graph: &GraphName) -> Self {
        GraphDocs {
            root: derive_doc_id(&format!("cairn/v1/{graph}/root")),
            shards: (0..SHARD_COUNT).map(|n| derive_doc_id(&format!("cairn/v1/{graph}/shard/{n}"))).collect(),
        }
    }

    /// Every document of the graph, root first.
    pub fn all(&self) -> impl Iterator<Item = (DocId, DocKind)> + '_ {
        std::iter::once((self.root, DocKind::Root))
            .chain(self.shards.iter().enumerate().map(|(n, id)| (*id, DocKind::Shard(n as u32))))
    }

    /// What a document id is within this graph, if it belongs to it.
    pub fn kind_of(&self, doc: &DocId) -> Option<DocKind> {
        self.all().find(|(id, _)| id == doc).map(|(_, kind)| kind)
    }

    /// The shard document holding an entity.
    pub fn shard_for(&self, entity: &str) -> DocId {
        self.shards[shard_of(entity) as usize]
    }
}

/// Builds a document's genesis: the same bytes on every replica. The actor is derived from the
/// document id and is used for this one change only; a replica then writes under its own fresh
/// actor (see `Replica::open`).
pub(crate) fn genesis(graph: &GraphName, doc: DocId, kind: DocKind) -> Automerge {
    let actor = ActorId::from(&sha256(&[b"cairn/v1/genesis/", doc.as_bytes()])[..16]);
    let mut am = Automerge::new().with_actor(actor);
    let mut tx = am.transaction();
    // Genesis cannot fail: it writes fixed keys into the fresh root map of an empty document.
    let put = |tx: &mut automerge::transaction::Transaction<'_>, k: &str, v: ScalarValue| {
        tx.put(ROOT, k, v).expect("genesis writes to an empty document");
    };
    put(&mut tx, "schema", ScalarValue::Int(SCHEMA_VERSION as i64));
    put(&mut tx, "graph", ScalarValue::Str(graph.as_str().into()));
    match kind {
        DocKind::Root => {
            put(&mut tx, "cairn", ScalarValue::Str("root".into()));
            put(&mut tx, "shard_count", ScalarValue::Int(i64::from(SHARD_COUNT)));
            let list = tx.put_object(ROOT, "shards", ObjType::List).expect("genesis list");
            for (n, id) in GraphDocs::of(graph).shards.iter().enumerate() {
                tx.insert(&list, n, ScalarValue::Str(id.url().into())).expect("genesis list insert");
            }
        }
        DocKind::Shard(n) => {
            put(&mut tx, "cairn", ScalarValue::Str("shard".into()));
            put(&mut tx, "shard", ScalarValue::Int(i64::from(n)));
            for map in [ENTITIES, OBSERVATIONS, RELATIONS] {
                tx.put_object(ROOT, map, ObjType::Map).expect("genesis map");
            }
        }
    }
    tx.commit_with(automerge::transaction::CommitOptions::default().with_time(0));
    am
}

/// The map of entities in a shard: name → entity record.
pub(crate) const ENTITIES: &str = "entities";
/// The map of observations in a shard: `<entity>␟<text>` → fact record.
pub(crate) const OBSERVATIONS: &str = "observations";
/// The map of relations in a shard: `<from>␟<relation type>␟<to>` → fact record.
pub(crate) const RELATIONS: &str = "relations";

/// Which of a shard's three maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum MapKind {
    Entities,
    Observations,
    Relations,
}

/// The object ids of a shard's three maps, read from the document (not assumed), together with
/// their textual form for matching operations in decoded changes.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) entities: automerge::ObjId,
    pub(crate) observations: automerge::ObjId,
    pub(crate) relations: automerge::ObjId,
    names: [String; 3],
}

/// A shard document that does not have the schema's structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document is not a Cairn shard: {0}")]
pub struct LayoutError(pub(crate) String);

impl Layout {
    pub(crate) fn of(doc: &Automerge) -> Result<Layout, LayoutError> {
        let find = |key: &str| -> Result<automerge::ObjId, LayoutError> {
            let all = doc.get_all(ROOT, key).map_err(|e| LayoutError(e.to_string()))?;
            if all.len() > 1 {
                return Err(LayoutError(format!("the {key:?} map was created twice concurrently")));
            }
            match doc.get(ROOT, key).map_err(|e| LayoutError(e.to_string()))? {
                Some((Value::Object(ObjType::Map), id)) => Ok(id),
                _ => Err(LayoutError(format!("no {key:?} map at the root"))),
            }
        };
        let (entities, observations, relations) = (find(ENTITIES)?, find(OBSERVATIONS)?, find(RELATIONS)?);
        let names = [entities.to_string(), observations.to_string(), relations.to_string()];
        Ok(Layout { entities, observations, relations, names })
    }

    pub(crate) fn map(&self, kind: MapKind) -> &automerge::ObjId {
        match kind {
            MapKind::Entities => &self.entities,
            MapKind::Observations => &self.observations,
            MapKind::Relations => &self.relations,
        }
    }

    /// Which map an object id (as `counter@actor`) names, if any.
    pub(crate) fn kind_of(&self, obj: &str) -> Option<MapKind> {
        let kinds = [MapKind::Entities, MapKind::Observations, MapKind::Relations];
        self.names.iter().position(|n| n == obj).map(|i| kinds[i])
    }
}

pub(crate) fn observation_key(entity: &str, text: &str) -> String {
    format!("{entity}{SEP}{text}")
}

pub(crate) fn relation_key(from: &str, relation_type: &str, to: &str) -> String {
    format!("{from}{SEP}{relation_type}{SEP}{to}")
}

/// Splits `<entity>␟<text>`.
pub(crate) fn split_observation_key(key: &str) -> Option<(&str, &str)> {
    key.split_once(SEP)
}

/// Splits `<from>␟<relation type>␟<to>`.
pub(crate) fn split_relation_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.splitn(3, SEP);
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// An entity record, stored as a JSON string: `{"type":"person","by":"planner@laptop","at":1735689600000}`.
/// Immutable: a new type is written as a new record at the same key.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct EntityRecord {
    #[serde(rename = "type")]
    pub(crate) entity_type: String,
    #[serde(default)]
    pub(crate) by: String,
    #[serde(default)]
    pub(crate) at: i64,
    /// Who wrote this value (from its change), filled in only where it matters: for the values
    /// of an unresolved conflict. Not part of the stored record.
    #[serde(skip)]
    pub(crate) written_by: String,
}

/// An observation or relation record, stored as a JSON string:
/// `{"by":"planner@laptop","at":1735689600000,"valid_from":...,"valid_to":...}` (validity optional).
/// Immutable: ending a fact's validity writes a new record at the same key.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct FactRecord {
    #[serde(default)]
    pub(crate) by: String,
    #[serde(default)]
    pub(crate) at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) valid_from: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) valid_to: Option<i64>,
    /// Position among the facts one write recorded at the same `at`, so that reads keep the
    /// order they were written in (omitted when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) n: u32,
    /// The fact this one was written to replace (a supersede), if any: for an observation the
    /// old text of the same entity, for a relation the old `[from, type, to]`. Optional, so
    /// readers that do not know it ignore it; read leniently (a malformed link reads as none:
    /// the schema check refuses those at the door).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_link")]
    pub(crate) replaces: Option<Link>,
}

/// What a fact record's `replaces` names (`docs/schema.md`, "The supersede link").
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Link {
    /// An observation's link: the text of the observation of the same entity it replaces.
    Text(String),
    /// A relation's link: the `[from, relation type, to]` it replaces.
    Relation([String; 3]),
}

impl Link {
    /// The link of an observation record, if this is one.
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Link::Text(t) => Some(t),
            Link::Relation(_) => None,
        }
    }

    /// The link of a relation record, if this is one.
    pub(crate) fn relation(&self) -> Option<crate::model::Relation> {
        match self {
            Link::Relation([f, t, d]) => Some(crate::model::Relation::new(f.clone(), t.clone(), d.clone())),
            Link::Text(_) => None,
        }
    }

    /// A relation's link as it is kept in the index: the JSON array, exactly as serde writes it.
    pub(crate) fn relation_json(rel: &crate::model::Relation) -> String {
        // Serialising three strings cannot fail.
        serde_json::to_string(&[&rel.from, &rel.relation_type, &rel.to]).unwrap_or_default()
    }
}

/// Reads `replaces` without failing the whole record when it has another shape.
fn lenient_link<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Link>, D::Error> {
    let value = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

// Records are one scalar each, not nested maps: a write is then one Automerge operation per
// fact instead of four or five, which is what keeps batch writes fast (see BENCHMARKS.md).
// Serialising these plain structs to JSON cannot fail.

impl EntityRecord {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a string found at `entities[name]`: a JSON record, or (tolerated for hand-written
    /// documents) a bare type name.
    pub(crate) fn parse(s: &str) -> EntityRecord {
        serde_json::from_str(s)
            .unwrap_or_else(|_| EntityRecord { entity_type: s.to_owned(), ..EntityRecord::default() })
    }
}

impl FactRecord {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a string found at an observation or relation key; anything unreadable still marks
    /// the fact as present, with no metadata.
    pub(crate) fn parse(s: &str) -> FactRecord {
        serde_json::from_str(s).unwrap_or_default()
    }
}

fn scalar_time(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Timestamp(t) | ScalarValue::Int(t) => Some(*t),
        ScalarValue::Uint(t) => i64::try_from(*t).ok(),
        ScalarValue::F64(t) if t.is_finite() => Some(*t as i64),
        _ => None,
    }
}

fn scalar_str(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Reads one field of a hand-written record map; a missing or mistyped field reads as `None`.
fn field<T>(doc: &Automerge, obj: &automerge::ObjId, key: &str, f: impl Fn(&ScalarValue) -> Option<T>) -> Option<T> {
    match doc.get(obj, key).ok().flatten() {
        Some((Value::Scalar(v), _)) => f(&v),
        _ => None,
    }
}

pub(crate) fn read_entity(doc: &Automerge, value: Value<'_>, id: &automerge::ObjId) -> EntityRecord {
    match value {
        Value::Scalar(v) => match v.as_ref() {
            ScalarValue::Str(s) => EntityRecord::parse(s),
            _ => EntityRecord::default(),
        },
        // A JavaScript writer that assigned a plain string made a text object: read its text.
        Value::Object(ObjType::Text) => EntityRecord::parse(&doc.text(id).unwrap_or_default()),
        // Tolerated for documents written by hand with nested maps.
        Value::Object(ObjType::Map) => EntityRecord {
            entity_type: field(doc, id, "type", scalar_str).unwrap_or_default(),
            by: field(doc, id, "by", scalar_str).unwrap_or_default(),
            at: field(doc, id, "at", scalar_time).unwrap_or_default(),
            written_by: String::new(),
        },
        Value::Object(_) => EntityRecord::default(),
    }
}

/// Every value at `entities[name]`, winner first. More than one means a concurrent write that
/// nobody has resolved yet.
pub(crate) fn entity_records(doc: &Automerge, layout: &Layout, name: &str) -> Vec<EntityRecord> {
    entity_records_at(doc, layout, name, None)
}

/// [`entity_records`] as of `heads` (the document now if `None`): what an `at_version` read sees.
pub(crate) fn entity_records_at(
    doc: &Automerge,
    layout: &Layout,
    name: &str,
    heads: Option<&[automerge::ChangeHash]>,
) -> Vec<EntityRecord> {
    let (winner, all) = match heads {
        None => (doc.get(&layout.entities, name), doc.get_all(&layout.entities, name)),
        Some(h) => (doc.get_at(&layout.entities, name, h), doc.get_all_at(&layout.entities, name, h)),
    };
    let Ok(Some((_, winner))) = winner else { return Vec::new() };
    let all = all.unwrap_or_default();
    let conflicted = all.len() > 1;
    let mut out = Vec::new();
    for (value, id) in all {
        let mut record = read_entity(doc, value, &id);
        if conflicted {
            // The record says who created the entity; a conflict wants who wrote each value.
            let change = doc.hash_for_opid(&id).and_then(|h| doc.get_change_meta_by_hash(&h));
            record.written_by = change
                .map(|m| crate::decode::agent_of(m.message.as_deref(), &m.actor))
                .unwrap_or_else(|| record.by.clone());
        }
        if id == winner { out.insert(0, record) } else { out.push(record) }
    }
    out
}

/// The winning record at `map[key]`, if the key is present.
pub(crate) fn fact_record(doc: &Automerge, map: &automerge::ObjId, key: &str) -> Option<FactRecord> {
    Some(match doc.get(map, key).ok().flatten()? {
        (Value::Scalar(v), _) => match v.as_ref() {
            ScalarValue::Str(s) => FactRecord::parse(s),
            _ => FactRecord::default(),
        },
        (Value::Object(ObjType::Text), id) => FactRecord::parse(&doc.text(&id).unwrap_or_default()),
        (Value::Object(ObjType::Map), id) => FactRecord {
            by: field(doc, &id, "by", scalar_str).unwrap_or_default(),
            at: field(doc, &id, "at", scalar_time).unwrap_or_default(),
            valid_from: field(doc, &id, "valid_from", scalar_time),
            valid_to: field(doc, &id, "valid_to", scalar_time),
            n: 0,
            replaces: None,
        },
        _ => FactRecord::default(),
    })
}

/// Puts a record at `map[key]`, replacing every value this replica sees there.
///
/// Automerge 0.12 does not write a value equal to the key's current winner: it records only a
/// delete of the other values (or nothing at all), so the "write" is really the older value, and
/// a concurrent delete of that older value would remove it. Deleting first and then putting
/// makes every write a new value, which is what the merge semantics promise.
fn put_record(
    tx: &mut impl Transactable,
    map: &automerge::ObjId,
    key: &str,
    value: String,
) -> Result<(), automerge::AutomergeError> {
    let same = matches!(tx.get(map, key)?, Some((Value::Scalar(v), _)) if v.as_str() == Some(value.as_str()));
    if same {
        tx.delete(map, key)?;
    }
    tx.put(map, key, value)
}

/// Writes an entity record at `entities[name]`, replacing whatever this replica has seen there.
pub(crate) fn put_entity(
    tx: &mut impl Transactable,
    layout: &Layout,
    name: &str,
    record: &EntityRecord,
) -> Result<(), automerge::AutomergeError> {
    put_record(tx, &layout.entities, name, record.to_json())
}

/// Writes a fact record at `map[key]`, replacing whatever this replica has seen there.
pub(crate) fn put_fact(
    tx: &mut impl Transactable,
    map: &automerge::ObjId,
    key: &str,
    record: &FactRecord,
) -> Result<(), automerge::AutomergeError> {
    put_record(tx, map, key, record.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_identical_on_every_replica() {
        let graph: GraphName = "team".parse().unwrap();
        let docs = GraphDocs::of(&graph);
        for (id, kind) in docs.all() {
            let a = genesis(&graph, id, kind);
            let b = genesis(&graph, id, kind);
            assert_eq!(a.get_heads(), b.get_heads(), "{kind:?}");
        }
        // And different graphs get different documents.
        assert_ne!(GraphDocs::of(&"other".parse().unwrap()).root, docs.root);
    }

    #[test]
    fn concurrent_genesis_merges_into_one_structure() {
        let graph: GraphName = "team".parse().unwrap();
        let id = GraphDocs::of(&graph).shards[3];
        let mut a = genesis(&graph, id, DocKind::Shard(3));
        let mut b = genesis(&graph, id, DocKind::Shard(3));
        a.set_actor(ActorId::random());
        b.set_actor(ActorId::random());
        let la = Layout::of(&a).unwrap();
        let lb = Layout::of(&b).unwrap();
        let rec = |t: &str| EntityRecord { entity_type: t.into(), by: "x".into(), at: 1, ..EntityRecord::default() };
        let mut tx = a.transaction();
        put_entity(&mut tx, &la, "Alice", &rec("person")).unwrap();
        tx.commit();
        let mut tx = b.transaction();
        put_entity(&mut tx, &lb, "Bob", &rec("person")).unwrap();
        tx.commit();
        a.merge(&mut b).unwrap();
        let layout = Layout::of(&a).expect("still exactly one entities map");
        assert_eq!(a.keys(&layout.entities).collect::<Vec<_>>(), ["Alice", "Bob"]);
    }

    #[test]
    fn published_vectors() {
        // The test vectors in docs/schema.md.
        assert_eq!(DocId([0; 16]).to_string(), "11111111111111114Ki9Gx");
        let team = GraphDocs::of(&"team".parse().unwrap());
        assert_eq!(team.root.to_string(), "aTrAzZbg393rX9sZ9r2CdbWave8");
        assert_eq!(team.shards[0].to_string(), "4ro4XktmyCfDh54S9VicZA4sBPR");
        assert_eq!(team.shards[31].to_string(), "3Nt2NcP4DcZ5PdT1QhfGospcMKt8");
        let shards: Vec<u32> = ["Alice", "Bob", "ACME", "東京"].iter().map(|n| shard_of(n)).collect();
        assert_eq!(shards, [13, 4, 16, 5]);
    }

    #[test]
    fn shard_hash_is_stable() {
        // Written in docs/schema.md; other languages check against the same values.
        assert_eq!(shard_of("Alice"), shard_of("Alice"));
        let spread: std::collections::HashSet<u32> = (0..1000).map(|i| shard_of(&format!("e{i}"))).collect();
        assert_eq!(spread.len(), SHARD_COUNT as usize);
    }

    #[test]
    fn keys_split_back() {
        let k = observation_key("Alice", "likes \u{1f} tea");
        assert_eq!(split_observation_key(&k), Some(("Alice", "likes \u{1f} tea")));
        let k = relation_key("Alice", "knows", "Bob");
        assert_eq!(split_relation_key(&k), Some(("Alice", "knows", "Bob")));
    }
}
