//! Facts that change over time through the real `cairn` binary: `cairn mcp` driven by a real MCP
//! client (rmcp's) over stdio, and the command line (docs/temporal.md, docs/mcp.md).

use std::path::Path;
use std::process::{Command, Stdio};

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ClientConfig>;

async fn spawn(db: &Path, client_name: &str) -> Client {
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
        c.arg("mcp").env_remove("CAIRN_AGENT").env_remove("CAIRN_RELAY").env_remove("MEMORY_FILE_PATH");
        c.args(["--db", db.to_str().unwrap()]).env("CAIRN_IMPORT_REFERENCE", "off");
    });
    let (transport, _stderr) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().unwrap();
    ClientConfig::new(ClientCapabilities::default(), Implementation::new(client_name, "1.0"))
        .serve(transport)
        .await
        .unwrap()
}

async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else { panic!("arguments must be an object") };
    client.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await.unwrap()
}

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.clone()).collect::<Vec<_>>().join("\n")
}

/// The first content block parsed as JSON, after checking the call succeeded.
fn body(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "tool failed: {}", text(r));
    serde_json::from_str(&r.content[0].as_text().unwrap().text).unwrap()
}

fn failure(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected a failure, got: {}", text(r));
    text(r)
}

/// The observations of `name` in a graph result.
fn observations(graph: &Value, name: &str) -> Vec<String> {
    graph["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["observations"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn targets(graph: &Value) -> Vec<String> {
    graph["relations"].as_array().unwrap().iter().map(|r| r["to"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supersede_then_read_now_then_and_as_known_then_over_mcp() {
    let dir = tempfile::tempdir().unwrap();
    let c = spawn(&dir.path().join("m.db"), "hr").await;
    let entities = json!({"entities": [
        {"name": "Alice", "entityType": "person", "observations": ["likes tea"]},
        {"name": "Acme", "entityType": "company", "observations": []},
        {"name": "Initech", "entityType": "company", "observations": []}
    ]});
    body(&call(&c, "create_entities", entities).await);
    // Step 1: facts with a validity, in both forms a time may take.
    let added = body(
        &call(
            &c,
            "add_observations",
            json!({"observations": [{"entityName": "Alice", "contents": [
                {"content": "works at Acme", "validFrom": "2020-01-01"}, "plain, as the reference writes it"
            ]}]}),
        )
        .await,
    );
    assert_eq!(
        added,
        json!([{"entityName": "Alice", "addedObservations": ["works at Acme", "plain, as the reference writes it"]}])
    );
    let relations = json!({"relations": [{"from": "Alice", "relationType": "works_at", "to": "Acme", "validFrom": 1577836800000_i64}]});
    body(&call(&c, "create_relations", relations).await);
    let before = body(&call(&c, "memory_status", json!({})).await)["version"].as_str().unwrap().to_owned();

    // Step 2: Alice changes employer at the start of 2022.
    let done = call(
        &c,
        "supersede_observations",
        json!({"observations": [
            {"entityName": "Alice", "replaces": "works at Acme", "content": "works at Initech", "validFrom": "2022-01-01T00:00:00Z"},
            {"entityName": "Alice", "replaces": "not there", "content": "whatever"}
        ]}),
    )
    .await;
    assert_eq!(
        body(&done),
        json!([{"entityName": "Alice", "replaces": "works at Acme", "content": "works at Initech"}])
    );
    assert_eq!(done.structured_content.as_ref().unwrap()["notFound"][0]["replaces"], "not there");
    assert!(text(&done).contains("Not found"), "{}", text(&done));
    let moved = json!({"relations": [{"from": "Alice", "relationType": "works_at", "to": "Initech",
        "replaces": {"from": "Alice", "relationType": "works_at", "to": "Acme"}, "validFrom": "2022-01-01"}]});
    body(&call(&c, "supersede_relations", moved).await);

    // Now: the current facts, with their validity and what was left out.
    let now = body(&call(&c, "read_graph", json!({})).await);
    assert_eq!(observations(&now, "Alice"), ["likes tea", "plain, as the reference writes it", "works at Initech"]);
    assert_eq!(targets(&now), ["Initech"]);
    assert_eq!(now["leftOut"], json!({"superseded": 2, "expired": 0, "notYetValid": 0}));
    let alice = now["entities"].as_array().unwrap().iter().find(|e| e["name"] == "Alice").unwrap();
    assert_eq!(
        alice["observationValidity"],
        json!([{"content": "works at Initech", "validFrom": "2022-01-01T00:00:00Z", "replaces": "works at Acme"}])
    );
    assert_eq!(now["relations"][0]["replaces"], json!({"from": "Alice", "relationType": "works_at", "to": "Acme"}));
    // An entity without validity reads exactly as the reference's shape.
    let acme = now["entities"].as_array().unwrap().iter().find(|e| e["name"] == "Acme").unwrap();
    assert_eq!(acme, &json!({"name": "Acme", "entityType": "company", "observations": []}));

    // World time: as of mid-2021, Acme; in milliseconds too.
    let then = body(&call(&c, "open_nodes", json!({"names": ["Alice"], "asOf": "2021-06-01"})).await);
    assert_eq!(observations(&then, "Alice"), ["likes tea", "works at Acme", "plain, as the reference writes it"]);
    assert_eq!(targets(&then), ["Acme"]);
    let then = body(&call(&c, "search_nodes", json!({"query": "works", "asOf": 1622505600000_i64})).await);
    assert_eq!(observations(&then, "Alice"), ["likes tea", "works at Acme", "plain, as the reference writes it"]);
    // Version: what this memory held before the supersede.
    let knew = body(&call(&c, "read_graph", json!({"atVersion": before})).await);
    assert_eq!(observations(&knew, "Alice"), ["likes tea", "works at Acme", "plain, as the reference writes it"]);
    // Everything.
    let all = body(&call(&c, "read_graph", json!({"includeSuperseded": true})).await);
    assert_eq!(
        observations(&all, "Alice"),
        ["likes tea", "works at Acme", "plain, as the reference writes it", "works at Initech"]
    );
    assert_eq!(targets(&all), ["Acme", "Initech"]);
    assert!(all.get("leftOut").is_none());

    // History lists the supersede with its link.
    let history = body(&call(&c, "memory_history", json!({"name": "Alice"})).await);
    let links: Vec<&Value> =
        history["changes"].as_array().unwrap().iter().filter(|ch| ch["replaces"] == "works at Acme").collect();
    assert_eq!(links.len(), 1, "{history}");
    assert_eq!(links[0]["text"], "works at Initech");
    assert!(links[0]["agent"].as_str().unwrap().starts_with("hr@"));

    // Refusals say what was wrong and write nothing.
    let bad_time = call(&c, "read_graph", json!({"asOf": "soon"})).await;
    assert!(failure(&bad_time).contains("is not a time"), "{}", text(&bad_time));
    let bad_content =
        call(&c, "add_observations", json!({"observations": [{"entityName": "Alice", "contents": [7]}]})).await;
    assert!(failure(&bad_content).contains("expected string or object, received number"), "{}", text(&bad_content));
    let unknown = call(
        &c,
        "supersede_observations",
        json!({"observations": [{"entityName": "Nobody", "replaces": "a", "content": "b"}]}),
    )
    .await;
    assert_eq!(failure(&unknown), "Entity with name Nobody not found");
    let twice = call(
        &c,
        "supersede_observations",
        json!({"observations": [{"entityName": "Alice", "replaces": "works at Acme", "content": "works at Hooli"}]}),
    )
    .await;
    assert!(failure(&twice).contains("already superseded"), "{}", text(&twice));
    let foreign = call(&c, "read_graph", json!({"atVersion": "v1.00000000"})).await;
    assert!(failure(&foreign).contains("another replica"), "{}", text(&foreign));
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_from_two_agents_apart_shows_in_reads_and_status_until_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    // Two agents write apart (two files), then their changes meet in this one, as after a sync.
    {
        use cairn::{Op, Replica};
        let a = Replica::open(&path, "alice-agent").unwrap();
        let b = Replica::open(dir.path().join("b.db"), "bob-agent").unwrap();
        a.write(&[Op::create_entity("Alice", "person", &["works at Acme"])]).unwrap();
        b.import(&a.export_since(&b.heads().unwrap()).unwrap()).unwrap();
        a.write(&[Op::supersede_observation("Alice", "works at Acme", "works at Initech", None)]).unwrap();
        b.write(&[Op::supersede_observation("Alice", "works at Acme", "works at Globex", None)]).unwrap();
        a.import(&b.export_since(&a.heads().unwrap()).unwrap()).unwrap();
    }
    let c = spawn(&path, "reader").await;
    let status = call(&c, "memory_status", json!({})).await;
    let conflicts = body(&status)["conflicts"].clone();
    assert_eq!(conflicts.as_array().unwrap().len(), 1, "{conflicts}");
    assert_eq!(conflicts[0]["replaced"], json!({"entityName": "Alice", "content": "works at Acme"}));
    let by: Vec<&str> =
        conflicts[0]["replacements"].as_array().unwrap().iter().map(|r| r["by"].as_str().unwrap()).collect();
    assert!(by.contains(&"alice-agent") && by.contains(&"bob-agent"), "{by:?}");
    assert!(text(&status).contains("[cairn] CONFLICT"), "{}", text(&status));
    let read = call(&c, "open_nodes", json!({"names": ["Alice"]})).await;
    let mut both = observations(&body(&read), "Alice");
    both.sort();
    assert_eq!(both, ["works at Globex", "works at Initech"], "both replacements are kept");
    assert_eq!(body(&read)["conflicts"], conflicts);
    assert!(text(&read).contains("Supersede all but one"), "{}", text(&read));

    // Resolved by superseding one replacement by the other.
    let resolve = json!({"observations": [{"entityName": "Alice", "replaces": "works at Globex", "content": "works at Initech"}]});
    body(&call(&c, "supersede_observations", resolve).await);
    let status = body(&call(&c, "memory_status", json!({})).await);
    assert_eq!(status["conflicts"], json!([]));
    let read = body(&call(&c, "open_nodes", json!({"names": ["Alice"]})).await);
    assert_eq!(observations(&read, "Alice"), ["works at Initech"]);
    assert!(read.get("conflicts").is_none());
    c.cancel().await.unwrap();
}

/// `cairn` on `db`, isolated from the user's environment (as `clients/tests/cli.rs` runs it).
fn command(db: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.env_clear()
        .env("HOME", db.parent().unwrap())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CAIRN_DB", db)
        .env("CAIRN_AGENT", "cli@test");
    c
}

fn cairn(db: &Path, args: &[&str]) -> String {
    let out = command(db).args(args).output().unwrap();
    assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_command_line_supersedes_and_reads_on_both_clocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    cairn(&db, &["add", "entity", "Alice", "--type", "person"]);
    cairn(&db, &["add", "entity", "Acme", "--type", "company"]);
    cairn(&db, &["add", "entity", "Initech", "--type", "company"]);
    cairn(&db, &["add", "observation", "Alice", "works at Acme", "--valid-from", "2020-01-01"]);
    cairn(&db, &["add", "relation", "Alice", "works_at", "Acme", "--valid-from", "2020-01-01"]);
    let before: Value = serde_json::from_str(&cairn(&db, &["show", "Alice", "--json"])).unwrap();
    let before = before["version"].as_str().unwrap().to_owned();

    let out =
        cairn(&db, &["supersede", "observation", "Alice", "works at Acme", "works at Initech", "--at", "2022-01-01"]);
    assert!(out.contains("superseded by \"works at Initech\""), "{out}");
    let out = cairn(&db, &["supersede", "relation", "Alice", "works_at", "Acme", "Initech", "--at", "2022-01-01"]);
    assert!(out.contains("superseded by Alice --works_at--> Initech"), "{out}");

    let now = cairn(&db, &["show", "Alice"]);
    assert!(now.contains("works at Initech (valid from 2022-01-01 00:00:00 UTC)"), "{now}");
    assert!(!now.contains("works at Acme"), "{now}");
    assert!(now.contains("left out: 2 superseded"), "{now}");
    let then = cairn(&db, &["show", "Alice", "--as-of", "2021-06-01"]);
    assert!(then.contains("works at Acme") && then.contains("--works_at--> Acme"), "{then}");
    let knew = cairn(&db, &["graph", "--at-version", &before]);
    assert!(knew.contains("works at Acme") && !knew.contains("works at Initech"), "{knew}");
    let all = cairn(&db, &["graph", "--all"]);
    assert!(all.contains("works at Acme (valid from 2020-01-01 00:00:00 UTC until 2022-01-01 00:00:00 UTC)"), "{all}");
    let found = cairn(&db, &["search", "Acme", "--as-of", "1622505600000"]);
    assert!(found.contains("works at Acme"), "{found}");
    let history = cairn(&db, &["history", "Alice"]);
    assert!(history.contains("superseded \"works at Acme\" on Alice by \"works at Initech\""), "{history}");

    let bad = command(&db).args(["show", "Alice", "--as-of", "soon"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a time"));
}
