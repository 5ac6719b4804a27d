//! What `cairn mcp` must answer, derived from what the reference server answered, by the rules
//! `docs/mcp.md` documents as deliberate differences ("Differences from the reference server"),
//! and nothing else:
//!
//! * duplicates within one call are merged (entities by name, relations, observations): the
//!   reference keeps every copy, so its answers are merged here (first copy wins: the reference
//!   itself only ever edits the first entity of a name, and copies of an observation go together);
//! * `create_relations` refuses a relation whose endpoint is missing, with the reference's own
//!   error text, writing nothing;
//! * search is word-aware (see [`search`]);
//! * `read_graph` and `open_nodes` list entities sorted by name; relations are sorted by
//!   (from, type, to) everywhere; observations keep the order they were written in (the
//!   reference's order: it appends);
//! * a read may carry a second content block starting with `[cairn]`.

use std::collections::HashSet;
use std::hash::Hash;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entity {
    pub(crate) name: String,
    #[serde(rename = "entityType")]
    pub(crate) entity_type: String,
    pub(crate) observations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Relation {
    pub(crate) from: String,
    pub(crate) to: String,
    #[serde(rename = "relationType")]
    pub(crate) relation_type: String,
}

impl Relation {
    fn key(&self) -> (&str, &str, &str) {
        (&self.from, &self.relation_type, &self.to)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Graph {
    pub(crate) entities: Vec<Entity>,
    pub(crate) relations: Vec<Relation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Added {
    pub(crate) entity_name: String,
    pub(crate) added_observations: Vec<String>,
}

fn dedup_by<T, K: Eq + Hash>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|i| seen.insert(key(i))).collect()
}

/// An entity with duplicate observations merged (first copy kept, in place).
pub(crate) fn merged(mut e: Entity) -> Entity {
    e.observations = dedup_by(e.observations, |o| o.clone());
    e
}

pub(crate) fn merge_entities(entities: Vec<Entity>) -> Vec<Entity> {
    dedup_by(entities, |e| e.name.clone()).into_iter().map(merged).collect()
}

pub(crate) fn merge_relations(relations: Vec<Relation>) -> Vec<Relation> {
    dedup_by(relations, |r| r.clone())
}

pub(crate) fn sort_entities(entities: &mut [Entity]) {
    entities.sort_by(|a, b| a.name.cmp(&b.name));
}

pub(crate) fn sort_relations(relations: &mut [Relation]) {
    relations.sort_by(|a, b| a.key().cmp(&b.key()));
}

/// The reference's graph as Cairn must show it: duplicates merged, sorted, and without the
/// relations the reference accepted to a missing endpoint (`phantom`: Cairn refused them).
pub(crate) fn canonical(g: Graph, phantom: &[Relation]) -> Graph {
    let mut entities = merge_entities(g.entities);
    sort_entities(&mut entities);
    let mut relations = merge_relations(g.relations);
    relations.retain(|r| !phantom.contains(r));
    sort_relations(&mut relations);
    Graph { entities, relations }
}

/// The first endpoint (`from` before `to`, relations in order) of a batch that is not an
/// entity of `g`.
pub(crate) fn missing_endpoint<'a>(g: &Graph, relations: &'a [Relation]) -> Option<&'a str> {
    let exists = |n: &str| g.entities.iter().any(|e| e.name == n);
    relations.iter().flat_map(|r| [r.from.as_str(), r.to.as_str()]).find(|n| !exists(n))
}

/// How [`search`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchMode {
    /// The query is only whitespace (or empty): the reference's substring match of the whole
    /// query.
    NoTerms,
    /// Every term starts a word of the entity.
    WordStarts,
    /// No entity matched by word starts, or no term could: every term anywhere.
    Fallback,
}

/// At most this many entities come back from a search (docs/mcp.md).
pub(crate) const SEARCH_CAP: usize = 200;

fn fields(e: &Entity) -> impl Iterator<Item = &str> {
    [e.name.as_str(), e.entity_type.as_str()].into_iter().chain(e.observations.iter().map(String::as_str))
}

/// Whether a term can take part in the word-start stage (docs/mcp.md): it holds two ASCII letters
/// or digits in a row and no other letter or digit.
fn word_stage_term(term: &str) -> bool {
    let other = term.chars().any(|c| c.is_alphanumeric() && !c.is_ascii());
    let mut run = 0;
    let two = term.chars().any(|c| {
        run = if c.is_ascii_alphanumeric() { run + 1 } else { 0 };
        run >= 2
    });
    two && !other
}

/// Whether `term` starts a word of `text` (both lowercased): it is found at the start of the
/// text or right after a character that is not a letter or digit.
fn starts_a_word(text: &str, term: &str) -> bool {
    text.match_indices(term).any(|(i, _)| text[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric()))
}

/// The documented search over a canonical graph (docs/mcp.md, "Search"): the query's terms are
/// its whitespace-separated parts; entities where every term starts a word of the name, type or
/// an observation come first (a word starts at the text's start or after a character that is not
/// a letter or digit), and only when there are none, or no term holds two ASCII letters or digits
/// in a row and no other letter, entities holding every term anywhere. A query of whitespace
/// only is the reference's substring match; the empty query matches everything.
/// Case-insensitive like the reference (`toLowerCase`, which Rust's `to_lowercase` matches for
/// the texts used here). Relations are the reference's: those touching a found entity. Entities
/// come back sorted by name (Cairn's order, best match first, is not specified precisely enough
/// to check).
pub(crate) fn search(g: &Graph, query: &str) -> (Graph, SearchMode) {
    let q = query.to_lowercase();
    let terms: Vec<&str> = q.split_whitespace().collect();
    let holds = |e: &Entity, m: &dyn Fn(&str) -> bool| fields(e).any(|f| m(&f.to_lowercase()));
    let (found, mode): (Vec<&Entity>, SearchMode) = if terms.is_empty() {
        (g.entities.iter().filter(|e| holds(e, &|f| f.contains(&q))).collect(), SearchMode::NoTerms)
    } else {
        let word_starts: Vec<&Entity> = if terms.iter().any(|t| word_stage_term(t)) {
            g.entities.iter().filter(|e| terms.iter().all(|t| holds(e, &|f| starts_a_word(f, t)))).collect()
        } else {
            Vec::new()
        };
        if !word_starts.is_empty() {
            (word_starts, SearchMode::WordStarts)
        } else {
            (
                g.entities.iter().filter(|e| terms.iter().all(|t| holds(e, &|f| f.contains(t)))).collect(),
                SearchMode::Fallback,
            )
        }
    };
    assert!(found.len() <= SEARCH_CAP, "the test's universe is meant to stay under the search cap");
    let names: HashSet<&str> = found.iter().map(|e| e.name.as_str()).collect();
    let mut entities: Vec<Entity> = found.into_iter().cloned().collect();
    sort_entities(&mut entities);
    let relations = g
        .relations
        .iter()
        .filter(|r| names.contains(r.from.as_str()) || names.contains(r.to.as_str()))
        .cloned()
        .collect();
    (Graph { entities, relations }, mode)
}

/// The reference's substring search, as its source has it, over a canonical graph: to check
/// [`search`]'s case folding against what the reference really returned.
pub(crate) fn reference_search(g: &Graph, query: &str) -> Vec<String> {
    let q = query.to_lowercase();
    g.entities.iter().filter(|e| fields(e).any(|f| f.to_lowercase().contains(&q))).map(|e| e.name.clone()).collect()
}

/// `JSON.stringify(value, null, 2)` for the values these tools return: two-space indentation,
/// keys in the reference's order (serde_json's `Value` forgets the order it parsed).
pub(crate) fn pretty(v: &Value) -> String {
    let mut out = String::new();
    write_pretty(v, 0, &mut out);
    out
}

const KEY_ORDER: [&str; 13] = [
    "name",
    "entityType",
    "observations",
    "from",
    "to",
    "relationType",
    "entityName",
    "addedObservations",
    "entities",
    "relations",
    "results",
    "success",
    "message",
];

fn write_pretty(v: &Value, indent: usize, out: &mut String) {
    let pad = |n: usize| " ".repeat(n);
    match v {
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(m) if m.is_empty() => out.push_str("{}"),
        Value::Array(a) => {
            out.push_str("[\n");
            for (i, item) in a.iter().enumerate() {
                out.push_str(&pad(indent + 2));
                write_pretty(item, indent + 2, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| (KEY_ORDER.iter().position(|o| o == k).unwrap_or(usize::MAX), k.as_str()));
            out.push_str("{\n");
            for (i, k) in keys.iter().enumerate() {
                out.push_str(&pad(indent + 2));
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push_str(": ");
                write_pretty(&m[k.as_str()], indent + 2, out);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            out.push_str(&pad(indent));
            out.push('}');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

/// Long strings shortened, so that a difference prints on a line or two.
pub(crate) fn abbreviate(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > 80 => {
            let head: String = s.chars().take(24).collect();
            Value::String(format!("{head}…({} bytes)", s.len()))
        }
        Value::Array(a) => Value::Array(a.iter().map(abbreviate).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), abbreviate(v))).collect()),
        other => other.clone(),
    }
}

/// A value on one line, long strings shortened, at most `max` characters.
pub(crate) fn short(v: &Value, max: usize) -> String {
    let s = serde_json::to_string(&abbreviate(v)).unwrap();
    if s.chars().count() > max { format!("{}…", s.chars().take(max).collect::<String>()) } else { s }
}

pub(crate) fn short_text(s: &str, max: usize) -> String {
    let quoted = serde_json::to_string(s).unwrap();
    if quoted.chars().count() > max { format!("{}…", quoted.chars().take(max).collect::<String>()) } else { quoted }
}
