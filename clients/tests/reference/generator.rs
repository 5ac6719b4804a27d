//! A seeded sequence of tool calls over a small universe of names, so that calls collide: a fixed
//! prefix of edge cases, then random calls (with the same edge cases mixed in). The random calls
//! look at the reference's current graph to pick existing entities, so the sequence depends on
//! the seed and on the servers' answers (both deterministic).

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::model::Graph;

/// One tool call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) tool: String,
    pub(crate) args: Value,
}

fn call(tool: &str, args: Value) -> Call {
    assert!(args.is_object());
    Call { tool: tool.to_owned(), args }
}

/// splitmix64: small, seeded, good enough to pick from lists.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// 100 CJK characters: 300 bytes of UTF-8, over 256.
pub(crate) fn long_name() -> String {
    "漢".repeat(100)
}

/// 70 KiB, over 64 KiB.
pub(crate) fn huge_observation() -> String {
    let mut s = "lorem ipsum ".repeat(70 * 1024 / 12 + 1);
    s.truncate(70 * 1024);
    s
}

const NAMES: [&str; 14] = [
    "Alice",
    "Bob",
    "ACME",
    "Émile",
    "Москва",
    "Ω",
    "green tea",
    "Teapot",
    "Instead",
    "@alice",
    "x",
    "X",
    "Zoë",
    "entity-42",
];
/// Names Cairn may treat specially; picked less often.
fn odd_names() -> Vec<String> {
    vec!["".into(), "line\nbreak".into(), "tab\tname".into(), long_name()]
}
const TYPES: [&str; 6] = ["person", "company", "city", "Person", "thing", ""];
const OBSERVATIONS: [&str; 15] = [
    "likes tea",
    "bikes to work",
    "Tea time",
    "green tea fan",
    "instead of coffee",
    "émigré from Lyon",
    "МОСКВА river",
    "ωmega point",
    "alice@example.com",
    "@alice on chat",
    "lic",
    "a",
    "",
    "multi\nline",
    "entity-42",
];
const RELATION_TYPES: [&str; 5] = ["works_at", "knows", "lives in", "Knows", ""];
const QUERIES: [&str; 33] = [
    "tea",
    "TEA",
    "Tea time",
    "é",
    "É",
    "émile",
    "ÉMILE",
    "мо",
    "МО",
    "москва",
    "ω",
    "Ω",
    "lic",
    "alice",
    "@alice",
    "green tea",
    "tea green",
    "bikes to",
    "to bikes",
    "",
    "  ",
    "@",
    "\n",
    "x",
    "zzz",
    "entity-42",
    "42",
    "a",
    "work",
    "Zoë",
    "ë",
    "ipsum",
    "漢",
];

fn entity(name: &str, ty: &str, obs: &[&str]) -> Value {
    json!({"name": name, "entityType": ty, "observations": obs})
}

fn relation(from: &str, to: &str, ty: &str) -> Value {
    json!({"from": from, "to": to, "relationType": ty})
}

/// The edge cases, in groups of calls (each group sets up what it needs). All of them run first,
/// in this order; then a random group now and then among the random calls.
pub(crate) fn edge_cases() -> Vec<Vec<Call>> {
    let long = long_name();
    let huge = huge_observation();
    let base = call(
        "create_entities",
        json!({"entities": [entity("Alice", "person", &["likes tea"]), entity("ACME", "company", &[])]}),
    );
    vec![
        // Deletes of things that do not exist, and with empty strings, on an empty graph.
        vec![
            call("delete_entities", json!({"entityNames": ["Ghost"]})),
            call("delete_entities", json!({"entityNames": [""]})),
            call("delete_observations", json!({"deletions": [{"entityName": "Ghost", "observations": ["x"]}]})),
            call("delete_observations", json!({"deletions": [{"entityName": "", "observations": [""]}]})),
            call("delete_relations", json!({"relations": [relation("Ghost", "Nobody", "knows")]})),
            call("delete_relations", json!({"relations": [relation("", "", "")]})),
            call("delete_entities", json!({"entityNames": []})),
        ],
        // Empty name, type, observation, relation type.
        vec![
            base.clone(),
            call("create_entities", json!({"entities": [entity("", "thing", &[])]})),
            call("create_entities", json!({"entities": [entity("EmptyType", "", &[])]})),
            call("create_entities", json!({"entities": [entity("EmptyObs", "thing", &[""])]})),
            call("add_observations", json!({"observations": [{"entityName": "Alice", "contents": [""]}]})),
            call("create_relations", json!({"relations": [relation("Alice", "ACME", "")]})),
            call("search_nodes", json!({"query": ""})),
            call("delete_observations", json!({"deletions": [{"entityName": "Alice", "observations": [""]}]})),
            call("delete_relations", json!({"relations": [relation("Alice", "ACME", "")]})),
            call("delete_entities", json!({"entityNames": ["", "EmptyType", "EmptyObs"]})),
        ],
        // Control characters in names; a name over 256 bytes.
        vec![
            call(
                "create_entities",
                json!({"entities": [entity("line\nbreak", "thing", &[]), entity("tab\tname", "thing", &[])]}),
            ),
            call("search_nodes", json!({"query": "\n"})),
            call("open_nodes", json!({"names": ["line\nbreak", "tab\tname"]})),
            call("create_entities", json!({"entities": [entity(&long, "thing", &["long"])]})),
            call("open_nodes", json!({"names": [long.clone()]})),
            call("search_nodes", json!({"query": "漢"})),
            call("delete_entities", json!({"entityNames": ["line\nbreak", "tab\tname", long.clone()]})),
        ],
        // An observation over 64 KiB.
        vec![
            base.clone(),
            call("add_observations", json!({"observations": [{"entityName": "Alice", "contents": [huge.clone()]}]})),
            call("search_nodes", json!({"query": "ipsum"})),
            call(
                "delete_observations",
                json!({"deletions": [{"entityName": "Alice", "observations": [huge.clone()]}]}),
            ),
            call("create_entities", json!({"entities": [entity("Huge", "thing", &[huge.as_str()])]})),
            call("delete_entities", json!({"entityNames": ["Huge"]})),
        ],
        // Case folding beyond ASCII.
        vec![
            call(
                "create_entities",
                json!({"entities": [entity("Émile", "person", &[]), entity("Москва", "city", &[]), entity("Ω", "letter", &[])]}),
            ),
            call("search_nodes", json!({"query": "é"})),
            call("search_nodes", json!({"query": "É"})),
            call("search_nodes", json!({"query": "ÉMILE"})),
            call("search_nodes", json!({"query": "мо"})),
            call("search_nodes", json!({"query": "МОСК"})),
            call("search_nodes", json!({"query": "ω"})),
            call("search_nodes", json!({"query": "Ω"})),
        ],
        // Duplicates within one call.
        vec![
            call(
                "create_entities",
                json!({"entities": [entity("Dup", "thing", &["same", "same"]), entity("Dup", "thing", &["same", "same"])]}),
            ),
            call("add_observations", json!({"observations": [{"entityName": "Dup", "contents": ["twice", "twice"]}]})),
            call(
                "add_observations",
                json!({"observations": [
                    {"entityName": "Dup", "contents": ["again"]},
                    {"entityName": "Dup", "contents": ["again", "more"]}
                ]}),
            ),
            call(
                "create_relations",
                json!({"relations": [relation("Dup", "Dup", "self"), relation("Dup", "Dup", "self")]}),
            ),
            call("open_nodes", json!({"names": ["Dup", "Dup"]})),
            call(
                "delete_observations",
                json!({"deletions": [{"entityName": "Dup", "observations": ["twice", "twice", "nothing"]}]}),
            ),
            call("delete_entities", json!({"entityNames": ["Dup", "Dup"]})),
        ],
        // Missing entities.
        vec![
            base.clone(),
            call("create_relations", json!({"relations": [relation("Alice", "Nobody", "works_at")]})),
            call("delete_relations", json!({"relations": [relation("Alice", "Nobody", "works_at")]})),
            call(
                "create_relations",
                json!({"relations": [relation("Alice", "ACME", "knows"), relation("Ghost", "Alice", "knows")]}),
            ),
            call(
                "delete_relations",
                json!({"relations": [relation("Alice", "ACME", "knows"), relation("Ghost", "Alice", "knows")]}),
            ),
            call(
                "add_observations",
                json!({"observations": [
                    {"entityName": "Alice", "contents": ["fresh"]},
                    {"entityName": "Nobody", "contents": ["x"]}
                ]}),
            ),
            call("open_nodes", json!({"names": ["Alice", "Nobody", "Alice"]})),
        ],
        // `expect: ""`: the reference's zod objects strip unknown keys.
        vec![
            call("create_entities", json!({"entities": [entity("Exp", "thing", &[])]})),
            call("create_entities", json!({"entities": [entity("Exp2", "thing", &[])], "expect": ""})),
            call("add_observations", json!({"observations": [{"entityName": "Exp", "contents": ["e"]}], "expect": ""})),
            call("create_relations", json!({"relations": [relation("Exp", "Exp", "r")], "expect": ""})),
            call("delete_relations", json!({"relations": [relation("Exp", "Exp", "r")], "expect": ""})),
            call(
                "delete_observations",
                json!({"deletions": [{"entityName": "Exp", "observations": ["e"]}], "expect": ""}),
            ),
            call("delete_entities", json!({"entityNames": ["Exp", "Exp2"], "expect": ""})),
        ],
        // Invalid arguments and an unknown tool.
        vec![
            call("create_entities", json!({"entities": {}})),
            call("create_entities", json!({"entities": [{"name": "X"}]})),
            call("create_entities", json!({})),
            call(
                "create_entities",
                json!({"entities": [{"name": "Y", "entityType": "t", "observations": [], "extra": 1}]}),
            ),
            call("delete_entities", json!({"entityNames": ["Y"]})),
            call("create_relations", json!({"relations": [{"from": "a", "to": "b"}]})),
            call("add_observations", json!({"observations": [{"entityName": "Alice"}]})),
            call("add_observations", json!({"observations": [{"entityName": "Alice", "contents": "x"}]})),
            call("delete_entities", json!({"entityNames": "X"})),
            call("delete_observations", json!({"deletions": {}})),
            call("delete_relations", json!({"relations": [1]})),
            call("search_nodes", json!({"query": 5})),
            call("search_nodes", json!({})),
            call("open_nodes", json!({"names": [1]})),
            call("open_nodes", json!({"names": null})),
            call("read_graph", json!({"extra": 1})),
            call("no_such_tool", json!({})),
        ],
        // Word-aware search.
        vec![
            call(
                "create_entities",
                json!({"entities": [
                    entity("Alice", "person", &["likes tea", "bikes to work", "alice@example.com"]),
                    entity("Instead", "thing", &[]),
                    entity("Teapot", "thing", &[]),
                    entity("green tea", "drink", &[])
                ]}),
            ),
            call("search_nodes", json!({"query": "tea"})),
            call("search_nodes", json!({"query": "lic"})),
            call("search_nodes", json!({"query": "bikes to"})),
            call("search_nodes", json!({"query": "to bikes"})),
            call("search_nodes", json!({"query": "@alice"})),
            call("search_nodes", json!({"query": " "})),
            call("search_nodes", json!({"query": "@"})),
        ],
    ]
}

/// The calls: the edge cases first, then `random` random ones.
#[derive(Debug)]
pub(crate) struct Generator {
    rng: Rng,
    queue: VecDeque<Call>,
    random: usize,
    edges: Vec<Vec<Call>>,
}

impl Generator {
    pub(crate) fn new(seed: u64, random: usize) -> Self {
        let edges = edge_cases();
        let queue = edges.iter().flatten().cloned().collect();
        Generator { rng: Rng(seed), queue, random, edges }
    }

    pub(crate) fn prefix_len(&self) -> usize {
        self.edges.iter().map(Vec::len).sum()
    }

    /// The next call, given the reference's current graph; `None` at the end.
    pub(crate) fn next(&mut self, g: &Graph) -> Option<Call> {
        if let Some(c) = self.queue.pop_front() {
            return Some(c);
        }
        if self.random == 0 {
            return None;
        }
        self.random -= 1;
        Some(self.random_call(g))
    }

    fn name(&mut self, g: &Graph) -> String {
        let r = &mut self.rng;
        if !g.entities.is_empty() && r.chance(45) {
            r.pick(&g.entities).name.clone()
        } else if r.chance(6) {
            r.pick(&odd_names()).clone()
        } else {
            (*r.pick(&NAMES)).to_owned()
        }
    }

    fn observation(&mut self) -> String {
        if self.rng.chance(2) { huge_observation() } else { (*self.rng.pick(&OBSERVATIONS)).to_owned() }
    }

    fn observations(&mut self, max: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..self.rng.below(max + 1)).map(|_| self.observation()).collect();
        if !v.is_empty() && self.rng.chance(12) {
            let d = v[self.rng.below(v.len())].clone();
            v.push(d);
        }
        v
    }

    /// An existing entity's name (or any name when there is none).
    fn existing(&mut self, g: &Graph) -> String {
        if g.entities.is_empty() { self.name(g) } else { self.rng.pick(&g.entities).name.clone() }
    }

    fn random_call(&mut self, g: &Graph) -> Call {
        const KINDS: [(&str, u64); 10] = [
            ("create_entities", 20),
            ("create_relations", 12),
            ("add_observations", 18),
            ("delete_entities", 6),
            ("delete_observations", 8),
            ("delete_relations", 6),
            ("read_graph", 3),
            ("search_nodes", 16),
            ("open_nodes", 6),
            ("edge", 5),
        ];
        let total: u64 = KINDS.iter().map(|k| k.1).sum();
        let mut roll = self.rng.next() % total;
        let kind = KINDS
            .iter()
            .find(|(_, w)| {
                if roll < *w {
                    true
                } else {
                    roll -= w;
                    false
                }
            })
            .unwrap()
            .0;
        match kind {
            "create_entities" => {
                let mut es: Vec<Value> = (0..1 + self.rng.below(3))
                    .map(|_| {
                        let name = self.name(g);
                        let ty = *self.rng.pick(&TYPES);
                        let obs = self.observations(2);
                        json!({"name": name, "entityType": ty, "observations": obs})
                    })
                    .collect();
                if self.rng.chance(10) {
                    let d = es[self.rng.below(es.len())].clone();
                    es.push(d);
                }
                call("create_entities", json!({ "entities": es }))
            }
            "create_relations" if g.entities.is_empty() => self.random_call(g),
            "create_relations" => {
                let mut rs: Vec<Value> = (0..1 + self.rng.below(2))
                    .map(|_| {
                        let (from, to) = (self.existing(g), self.existing(g));
                        let ty = self.rng.pick(&RELATION_TYPES).to_string();
                        relation(&from, &to, &ty)
                    })
                    .collect();
                if self.rng.chance(10) {
                    rs.push(rs[0].clone());
                }
                call("create_relations", json!({ "relations": rs }))
            }
            "add_observations" if g.entities.is_empty() => self.random_call(g),
            "add_observations" => {
                let mut items: Vec<Value> = (0..1 + self.rng.below(2))
                    .map(|_| json!({"entityName": self.existing(g), "contents": self.observations(3)}))
                    .collect();
                if self.rng.chance(8) {
                    items.push(items[0].clone());
                }
                call("add_observations", json!({ "observations": items }))
            }
            "delete_entities" => {
                let names: Vec<String> = (0..1 + self.rng.below(2)).map(|_| self.name(g)).collect();
                call("delete_entities", json!({ "entityNames": names }))
            }
            "delete_observations" => {
                let items: Vec<Value> = (0..1 + self.rng.below(2))
                    .map(|_| {
                        let name = if self.rng.chance(15) { self.name(g) } else { self.existing(g) };
                        let mut obs: Vec<String> = g
                            .entities
                            .iter()
                            .find(|e| e.name == name)
                            .map(|e| e.observations.iter().filter(|_| self.rng.chance(40)).cloned().collect())
                            .unwrap_or_default();
                        if self.rng.chance(30) {
                            obs.push(self.observation());
                        }
                        json!({"entityName": name, "observations": obs})
                    })
                    .collect();
                call("delete_observations", json!({ "deletions": items }))
            }
            "delete_relations" => {
                let rs: Vec<Value> = (0..1 + self.rng.below(2))
                    .map(|_| {
                        if !g.relations.is_empty() && self.rng.chance(70) {
                            serde_json::to_value(self.rng.pick(&g.relations)).unwrap()
                        } else {
                            let (from, to) = (self.name(g), self.name(g));
                            let ty = self.rng.pick(&RELATION_TYPES).to_string();
                            relation(&from, &to, &ty)
                        }
                    })
                    .collect();
                call("delete_relations", json!({ "relations": rs }))
            }
            "read_graph" => call("read_graph", json!({})),
            "search_nodes" => {
                let q = if !g.entities.is_empty() && self.rng.chance(25) {
                    // A piece of an existing name, in some case.
                    let name: Vec<char> = self.rng.pick(&g.entities).name.chars().collect();
                    let start = self.rng.below(name.len().max(1));
                    let len = 1 + self.rng.below(4);
                    let piece: String = name.iter().skip(start).take(len).collect();
                    if self.rng.chance(50) { piece.to_uppercase() } else { piece }
                } else {
                    (*self.rng.pick(&QUERIES)).to_owned()
                };
                call("search_nodes", json!({ "query": q }))
            }
            "open_nodes" => {
                let names: Vec<String> = (0..1 + self.rng.below(3)).map(|_| self.name(g)).collect();
                call("open_nodes", json!({ "names": names }))
            }
            _ => {
                let group = self.rng.below(self.edges.len());
                let mut calls = self.edges[group].clone().into_iter();
                let first = calls.next().unwrap();
                self.queue.extend(calls);
                first
            }
        }
    }
}
