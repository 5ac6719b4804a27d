//! The check the schema fuzz target runs on every input, written once: the fuzz target
//! (`fuzz_targets/schema.rs`) and the corpus replay on stable (`tests/schema_corpus.rs`) both
//! include this file with `#[path]`.
//!
//! The input is read as a small program that builds one real Automerge change on a real shard
//! document (its genesis): which actor, which message, and a list of operations on the shard's
//! maps, its root, or objects the change itself creates, with keys and values drawn from pools
//! of valid and invalid ones. The check's verdict is then held against an oracle that looks at
//! the document the change produces, not at the change: **a change the check accepts leaves a
//! valid shard** (the same three maps at the root, the root fields untouched, every key
//! well-formed and in this shard, every value a valid record string). And the other half:
//! **Cairn's own writer is never refused** — the same input also drives a replica's writes,
//! whose every change must pass.

use cairn::automerge::transaction::{CommitOptions, Transactable};
use cairn::automerge::{ActorId, Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use cairn::integrity::DocRules;
use cairn::{GraphDocs, GraphName};

/// What the check said about the change an input built.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The change was accepted (and the oracle agreed the shard stays valid).
    Accepted,
    /// The change was refused.
    Refused,
    /// The input built no change (no operations took).
    Nothing,
}

/// Reads bytes as choices; past the end every choice is 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn pick<'p, T>(&mut self, pool: &'p [T]) -> &'p T {
        &pool[self.byte() as usize % pool.len()]
    }
}

fn graph() -> GraphName {
    "team".parse().unwrap()
}

/// An entity name of shard `shard` (valid), and one of another shard.
fn names(shard: u32) -> (String, String) {
    let find =
        |want: bool| (0..).map(|i| format!("n{i}")).find(|n| (cairn::schema::shard_of(n) == shard) == want).unwrap();
    (find(true), find(false))
}

const SEP: char = '\u{1f}';

fn keys(home: &str, away: &str) -> Vec<String> {
    vec![
        home.to_owned(),
        away.to_owned(),
        String::new(),
        format!("{home}\0"),
        format!("{home}\u{1b}[2J"),
        "x".repeat(300),
        format!("{home}{SEP}likes tea"),
        format!("{home}{SEP}"),
        format!("{home}{SEP}{}", "t".repeat(70_000)),
        format!("{away}{SEP}text"),
        format!("{home}{SEP}knows{SEP}{away}"),
        format!("{away}{SEP}knows{SEP}{home}"),
        format!("{home}{SEP}knows"),
        format!("{home}{SEP}{SEP}{away}"),
        format!("{home}{SEP}kno\u{7}ws{SEP}{away}"),
    ]
}

const RECORDS: &[&str] = &[
    r#"{"type":"person","by":"alice","at":1}"#,
    r#"{"by":"alice","at":1}"#,
    r#"{"by":"alice","at":1,"valid_from":5,"valid_to":9,"n":2}"#,
    r#"{"type":""}"#,
    r#"{"type":7}"#,
    r#"{"valid_from":9,"valid_to":5}"#,
    r#"{"by":"a\u001bb"}"#,
    "person",
    "[]",
    "{}",
    r#"{"type":"person","extra":{"nested":[1,2]}}"#,
];

const MESSAGES: &[Option<&str>] =
    &[Some(r#"{"agent":"fuzz"}"#), Some(r#"{"agent":"fuzz"}"#), None, Some("plain"), Some(r#"{"agent":""}"#)];

/// Builds the change `data` describes on a shard's genesis; `None` if it made no operation.
fn build(data: &[u8]) -> (DocRules, Automerge, Option<cairn::automerge::Change>) {
    let mut input = Input(data);
    let docs = GraphDocs::of(&graph());
    let shard = u32::from(input.byte()) % cairn::schema::SHARD_COUNT;
    let rules = DocRules::new(&graph(), docs.shards[shard as usize]).unwrap();
    let genesis = rules.genesis();
    let genesis_actor = genesis.get_changes(&[])[0].actor_id().clone();
    let actor = if input.byte() % 16 == 0 { genesis_actor } else { ActorId::from(&[input.byte(), 7, 7, 7][..]) };
    let message = *input.pick(MESSAGES);
    let (home, away) = names(shard);
    let keys = keys(&home, &away);
    let mut doc = genesis.fork().with_actor(actor);
    let map = |doc: &Automerge, k: &str| -> ObjId { doc.get(ROOT, k).unwrap().unwrap().1 };
    let (entities, observations, relations) =
        (map(&doc, "entities"), map(&doc, "observations"), map(&doc, "relations"));
    let mut tx = doc.transaction();
    let mut made: Vec<(ObjId, ObjType)> = Vec::new();
    let ops = 1 + input.byte() % 6;
    for _ in 0..ops {
        let target = match input.byte() % 8 {
            0 => ROOT,
            1 | 2 => entities.clone(),
            3 | 4 => observations.clone(),
            5 => relations.clone(),
            _ => made.last().map(|(o, _)| o.clone()).unwrap_or_else(|| entities.clone()),
        };
        let key = input.pick(&keys).clone();
        let key = if target == ROOT { input.pick(&["entities", "graph", "shard", "other"]).to_string() } else { key };
        let is_list = made.last().is_some_and(|(o, t)| *o == target && matches!(t, ObjType::List | ObjType::Text));
        let _ = match input.byte() % 10 {
            0..=3 if !is_list => tx.put(&target, key.as_str(), *input.pick(RECORDS)),
            4 if !is_list => tx.delete(&target, key.as_str()),
            5 if !is_list => tx.put(&target, key.as_str(), 7),
            6 if !is_list => tx.put(&target, key.as_str(), ScalarValue::counter(1)),
            7 | 8 if !is_list => {
                let kind = *input.pick(&[ObjType::Map, ObjType::Text, ObjType::List]);
                tx.put_object(&target, key.as_str(), kind).map(|o| made.push((o, kind)))
            }
            _ if is_list => tx.insert(&target, 0, "x"),
            _ => tx.increment(&target, key.as_str(), 1),
        };
    }
    let mut options = CommitOptions::default().with_time(1_767_225_600_000);
    if let Some(m) = message {
        options = options.with_message(m.to_owned());
    }
    tx.commit_with(options);
    let change = doc.get_changes(&genesis.get_heads()).first().cloned();
    (rules, doc, change)
}

/// The oracle: whether `doc` (a shard's genesis with one change applied) is still a valid shard
/// with its genesis's maps, reading only the document.
fn still_valid(rules: &DocRules, doc: &Automerge) -> Result<(), String> {
    let genesis = rules.genesis();
    for key in genesis.keys(ROOT) {
        let now = doc.get_all(ROOT, key.as_str()).map_err(|e| e.to_string())?;
        let then = genesis.get_all(ROOT, key.as_str()).map_err(|e| e.to_string())?;
        if now.len() != 1 || now[0].1 != then[0].1 {
            return Err(format!("root field {key} changed"));
        }
    }
    if doc.keys(ROOT).count() != genesis.keys(ROOT).count() {
        return Err("a new root field".into());
    }
    let cairn::DocKind::Shard(shard) = rules.kind() else { return Err("not a shard".into()) };
    for (name, parts) in [("entities", 1), ("observations", 2), ("relations", 3)] {
        let (_, map) = doc.get(ROOT, name).unwrap().unwrap();
        for key in doc.keys(&map) {
            let split: Vec<&str> = if parts == 2 { key.splitn(2, SEP).collect() } else { key.split(SEP).collect() };
            if split.len() != parts {
                return Err(format!("{name} key {key:?} has {} parts", split.len()));
            }
            for (i, part) in split.iter().enumerate() {
                let text = parts == 2 && i == 1;
                // docs/schema.md: a text is at most 10 MiB; a name at most 64 KiB, without the
                // separator (the split above already guarantees that); both may be empty.
                let ok = if text { part.len() <= 10 << 20 } else { part.len() <= 64 << 10 };
                if !ok {
                    let start: String = part.chars().take(40).collect();
                    return Err(format!("{name} key part {start:?}… ({} bytes) breaks the limits", part.len()));
                }
            }
            if cairn::schema::shard_of(split[0]) != shard {
                return Err(format!("{name} key {key:?} is in the wrong shard"));
            }
            for (value, _) in doc.get_all(&map, key.as_str()).map_err(|e| e.to_string())? {
                let Value::Scalar(v) = value else { return Err(format!("{name}[{key:?}] holds an object")) };
                let Some(s) = v.as_str() else { return Err(format!("{name}[{key:?}] holds {v:?}")) };
                let json: serde_json::Value = serde_json::from_str(s).map_err(|_| format!("{s:?} is not JSON"))?;
                let fields = json.as_object().ok_or(format!("{s:?} is not an object"))?;
                if name == "entities" {
                    let t = fields.get("type").and_then(|t| t.as_str());
                    if t.is_none_or(|t| t.len() > 64 << 10 || t.contains(SEP)) {
                        return Err(format!("entity record {s:?} has no valid type"));
                    }
                }
                if let Some(by) = fields.get("by")
                    && by.as_str().is_none_or(|b| b.is_empty() || b.chars().any(char::is_control))
                {
                    return Err(format!("record {s:?} has a bad `by`"));
                }
                if let (Some(f), Some(t)) = (fields.get("valid_from"), fields.get("valid_to"))
                    && f.as_i64() >= t.as_i64()
                {
                    return Err(format!("record {s:?} has an empty validity"));
                }
            }
        }
    }
    Ok(())
}

/// Runs one input: the check's verdict on the change it builds, held against the oracle.
pub(crate) fn schema(data: &[u8]) -> Verdict {
    let (rules, doc, change) = build(data);
    let Some(change) = change else { return Verdict::Nothing };
    match rules.check(&change) {
        Ok(()) => {
            if let Err(why) = still_valid(&rules, &doc) {
                panic!("the check accepted a change that breaks the shard: {why}");
            }
            let message_ok = change
                .message()
                .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
                .and_then(|m| m.get("agent").and_then(|a| a.as_str()).map(|a| !a.is_empty()))
                .unwrap_or(false);
            assert!(message_ok, "the check accepted a change without a valid agent");
            Verdict::Accepted
        }
        Err(v) => {
            let text = v.to_string();
            assert!(text.contains(&format!("rule \"{}\"", v.rule)), "a refusal names its rule: {text}");
            Verdict::Refused
        }
    }
}

/// The other half: Cairn's own writer, driven by the same input, is never refused. Writes a few
/// operations to a replica in a temporary file and imports all of it into a second one (the
/// import runs every change through the check).
pub(crate) fn writer(data: &[u8]) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cairn-fuzz-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut input = Input(data);
    let (long_name, long_text) = ("z".repeat(cairn::MAX_NAME_BYTES), "t".repeat(100_000));
    let pool: [&str; 8] = ["Alice", "Émile", "東京", "a b", "x@y", "", "line\nname\0", &long_name];
    let texts: [&str; 6] = ["likes tea", "line\nbreak", "tab\tand \u{1f} sep", "\u{1b}[31mred", "", &long_text];
    let options = cairn::OpenOptions::new("fuzz".parse().unwrap()).graph(graph());
    let a = cairn::Replica::open_with(dir.join("a.db"), options.clone()).unwrap();
    for _ in 0..(1 + input.byte() % 4) {
        let (e, f) = (input.pick(&pool).to_string(), input.pick(&pool).to_string());
        let op = match input.byte() % 6 {
            0 => cairn::Op::create_entity(e, *input.pick(&pool), &[*input.pick(&texts)]),
            1 => cairn::Op::add_observation(e, *input.pick(&texts)),
            2 => cairn::Op::create_relation(e, *input.pick(&pool), f),
            3 => cairn::Op::set_entity_type(e, *input.pick(&pool)),
            4 => cairn::Op::delete_entity(e),
            _ => cairn::Op::delete_observation(e, *input.pick(&texts)),
        };
        // The planner may refuse an operation on an entity that does not exist: that is fine.
        let _ = a.write(&[cairn::Op::create_entity(input.pick(&pool).to_string(), "thing", &[]), op]);
    }
    let b = cairn::Replica::open_with(dir.join("b.db"), options).unwrap();
    let imported = b.import(&a.export_since(&cairn::Heads::default()).unwrap());
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = imported {
        panic!("the check refused Cairn's own writer: {e}");
    }
}
