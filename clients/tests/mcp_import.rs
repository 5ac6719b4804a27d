//! Moving from the reference memory server loses nothing: the reference itself writes a
//! `memory.jsonl` holding every edge case it accepts (driven by the official MCP SDK under
//! Node.js), then `cairn mcp` imports it through `MEMORY_FILE_PATH`, and every entity,
//! observation and relation the reference reads back, Cairn reads back too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn js_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/server-memory").is_dir(),
        "the reference memory server is not installed: run `npm install --prefix clients/js` (the README's test command does)"
    );
    dir
}

/// Runs the reference server over `calls`; returns its read_graph at the end.
fn reference_writes(file: &Path, calls: &Value) -> Value {
    let calls_file = file.with_extension("calls.json");
    std::fs::write(&calls_file, calls.to_string()).unwrap();
    let out = Command::new("node")
        .current_dir(js_dir())
        .arg("reference-write.mjs")
        .args([file, &calls_file])
        .stderr(Stdio::inherit())
        .output()
        .expect("node runs (Node.js is needed for the interop tests: see README)");
    assert!(out.status.success(), "the reference run failed");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().expect("the reference printed its graph");
    serde_json::from_str::<Value>(last).unwrap()["graph"].clone()
}

/// `cairn mcp` with `MEMORY_FILE_PATH`, asked for read_graph over stdio (raw JSON-RPC lines).
fn cairn_reads_after_import(file: &Path) -> Value {
    use std::io::{BufRead, BufReader, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("mcp")
        .env("MEMORY_FILE_PATH", file)
        .env_remove("CAIRN_DB")
        .env_remove("CAIRN_RELAY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "import-test", "version": "1"}}});
    writeln!(stdin, "{init}").unwrap();
    lines.next().expect("initialize answered").unwrap();
    writeln!(stdin, "{}", json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).unwrap();
    let read =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "read_graph", "arguments": {}}});
    writeln!(stdin, "{read}").unwrap();
    let answer: Value = serde_json::from_str(&lines.next().expect("read_graph answered").unwrap()).unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    answer["result"]["structuredContent"].clone()
}

/// Entities by name, each with its type and its set of observations; relations as a set.
type Shape = (BTreeMap<String, (String, BTreeSet<String>)>, BTreeSet<(String, String, String)>);

fn shape(graph: &Value) -> Shape {
    let mut entities = BTreeMap::new();
    for e in graph["entities"].as_array().unwrap() {
        let observations = e["observations"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_owned());
        let entry = entities
            .entry(e["name"].as_str().unwrap().to_owned())
            .or_insert_with(|| (e["entityType"].as_str().unwrap().to_owned(), BTreeSet::new()));
        entry.1.extend(observations);
    }
    let relations = graph["relations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("from"), s("relationType"), s("to"))
        })
        .collect();
    (entities, relations)
}

#[test]
fn a_file_the_reference_wrote_with_every_edge_case_imports_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("memory.jsonl");
    let long_observation = "long ".repeat(14 * 1024); // 70 KiB
    let long_name = "長".repeat(100); // 300 bytes
    let entity = |name: &str, t: &str, obs: &[&str]| json!({"name": name, "entityType": t, "observations": obs});
    let calls = json!([
        ["create_entities", {"entities": [
            entity("", "", &[""]),
            entity("Émile", "", &["", "line one\nline two"]),
            entity("name\nwith newline", "type\twith tab", &[&long_observation]),
            entity(&long_name, "person", &["名前"]),
            entity("Dup", "first", &["same", "same"]),
            entity("Dup", "second", &["other"]),
            entity("Москва", "city", &["Ω and ω"]),
        ]}],
        ["add_observations", {"observations": [{"entityName": "Émile", "contents": ["", "again", "again"]}]}],
        ["create_relations", {"relations": [
            {"from": "", "to": "Émile", "relationType": ""},
            {"from": "Émile", "to": "Nobody", "relationType": "knows"},
            {"from": long_name, "to": "name\nwith newline", "relationType": "type\nwith newline"},
        ]}],
    ]);
    let reference = reference_writes(&file, &calls);
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.lines().count() >= 10, "the reference wrote its file: {written:.200}");

    let cairn = cairn_reads_after_import(&file);
    let (ref_entities, ref_relations) = shape(&reference);
    let (cairn_entities, cairn_relations) = shape(&cairn);
    // Every entity the reference reads back, with its first type and every observation.
    for (name, (entity_type, observations)) in &ref_entities {
        let Some((t, obs)) = cairn_entities.get(name) else { panic!("entity {name:?} was lost") };
        assert_eq!(t, entity_type, "the type of {name:?}");
        assert_eq!(obs, observations, "the observations of {name:?}");
    }
    // Every relation, the one to an entity the reference never had included.
    assert_eq!(cairn_relations, ref_relations);
    // The only entity Cairn has beyond the reference's: that endpoint, untyped (docs/mcp.md).
    let extra: Vec<(&String, &(String, BTreeSet<String>))> =
        cairn_entities.iter().filter(|(n, _)| !ref_entities.contains_key(*n)).collect();
    assert_eq!(extra, [(&"Nobody".to_owned(), &(String::new(), BTreeSet::new()))]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written, "the original is never modified");
}
