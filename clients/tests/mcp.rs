//! The real `cairn mcp` binary driven by a real MCP client (rmcp's), over stdio.

use std::path::Path;
use std::process::Stdio;

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ClientConfig>;

async fn spawn(db: &Path, client_name: &str, env: &[(&str, &str)]) -> Client {
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
        c.arg("mcp").env_remove("CAIRN_AGENT").env_remove("CAIRN_RELAY").env_remove("MEMORY_FILE_PATH");
        if !db.as_os_str().is_empty() {
            c.args(["--db", db.to_str().unwrap()]);
        }
        for (k, v) in env {
            c.env(k, v);
        }
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

/// The first content block parsed as JSON (the reference server's pretty JSON text).
fn body(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "tool failed: {}", text(r));
    serde_json::from_str(&r.content[0].as_text().unwrap().text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_answers_in_the_reference_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let c = spawn(&dir.path().join("m.db"), "test-host", &[]).await;
    let info = c.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "cairn");
    let tools: Vec<String> = c.list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
    assert_eq!(
        &tools[..9],
        [
            "create_entities",
            "create_relations",
            "add_observations",
            "delete_entities",
            "delete_observations",
            "delete_relations",
            "read_graph",
            "search_nodes",
            "open_nodes"
        ]
    );
    assert!(tools.contains(&"memory_status".to_string()));

    let r = call(
        &c,
        "create_entities",
        json!({"entities": [
            {"name": "Alice", "entityType": "person", "observations": ["likes tea"]},
            {"name": "ACME", "entityType": "company", "observations": []}
        ]}),
    )
    .await;
    assert_eq!(body(&r).as_array().unwrap().len(), 2);
    assert_eq!(r.structured_content.as_ref().unwrap()["entities"][0]["name"], "Alice");
    // Text is pretty JSON with the reference's key order.
    assert!(text(&r).starts_with("[\n  {\n    \"name\": \"Alice\",\n    \"entityType\": \"person\""), "{}", text(&r));
    assert!(r.is_error.is_none());
    // Existing entities are skipped, as the reference does.
    let r =
        call(&c, "create_entities", json!({"entities": [{"name": "Alice", "entityType": "x", "observations": []}]}))
            .await;
    assert_eq!(body(&r), json!([]));

    let r = call(
        &c,
        "create_relations",
        json!({"relations": [{"from": "Alice", "to": "ACME", "relationType": "works_at"}]}),
    )
    .await;
    assert_eq!(body(&r), json!([{"from": "Alice", "to": "ACME", "relationType": "works_at"}]));
    let r = call(
        &c,
        "create_relations",
        json!({"relations": [{"from": "Alice", "to": "ACME", "relationType": "works_at"}]}),
    )
    .await;
    assert_eq!(body(&r), json!([]), "duplicates are skipped");
    // Unlike the reference, duplicates within one call are created once (docs/mcp.md).
    let bob = json!({"name": "Bob", "entityType": "person", "observations": []});
    let r = call(&c, "create_entities", json!({"entities": [bob, bob]})).await;
    assert_eq!(body(&r), json!([bob]));
    // And a call that fails part-way writes nothing: Bob's observation is not added.
    let r = call(
        &c,
        "add_observations",
        json!({"observations": [
            {"entityName": "Bob", "contents": ["plays chess"]},
            {"entityName": "Nobody", "contents": ["x"]}
        ]}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    let o = body(&call(&c, "open_nodes", json!({"names": ["Bob"]})).await);
    assert_eq!(o["entities"], json!([bob]));
    call(&c, "delete_entities", json!({"entityNames": ["Bob"]})).await;

    let r = call(
        &c,
        "add_observations",
        json!({"observations": [{"entityName": "Alice", "contents": ["likes tea", "bikes to work"]}]}),
    )
    .await;
    assert_eq!(body(&r), json!([{"entityName": "Alice", "addedObservations": ["bikes to work"]}]));
    assert_eq!(r.structured_content.as_ref().unwrap()["results"][0]["entityName"], "Alice");

    let g = body(&call(&c, "read_graph", json!({})).await);
    assert_eq!(g["entities"][0], json!({"name": "ACME", "entityType": "company", "observations": []}));
    assert_eq!(g["entities"][1]["observations"], json!(["likes tea", "bikes to work"]));
    let s = body(&call(&c, "search_nodes", json!({"query": "BIKES"})).await);
    assert_eq!(s["entities"][0]["name"], "Alice");
    assert_eq!(s["relations"].as_array().unwrap().len(), 1, "relations touching a match come along");
    let o = body(&call(&c, "open_nodes", json!({"names": ["ACME", "Unknown"]})).await);
    assert_eq!(o["entities"].as_array().unwrap().len(), 1);

    let status = body(&call(&c, "memory_status", json!({})).await);
    assert_eq!(status["freshness"]["state"], "local");
    let version = status["version"].as_str().unwrap().to_owned();

    let r = call(
        &c,
        "delete_observations",
        json!({"deletions": [{"entityName": "Alice", "observations": ["likes tea", "never said"]}]}),
    )
    .await;
    assert_eq!(text(&r), "Observations deleted successfully");
    assert_eq!(r.structured_content, Some(json!({"success": true, "message": "Observations deleted successfully"})));
    let r = call(
        &c,
        "delete_relations",
        json!({"relations": [{"from": "Alice", "to": "ACME", "relationType": "works_at"}]}),
    )
    .await;
    assert_eq!(text(&r), "Relations deleted successfully");
    let r = call(&c, "delete_entities", json!({"entityNames": ["ACME", "Ghost"]})).await;
    assert_eq!(text(&r), "Entities deleted successfully");

    let changes = body(&call(&c, "memory_changes_since", json!({"since": version})).await);
    let kinds: Vec<&str> = changes["changes"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"observation_deleted") && kinds.contains(&"entity_deleted"), "{kinds:?}");
    let history = body(&call(&c, "memory_history", json!({"name": "ACME"})).await);
    let first = &history["changes"][0];
    assert_eq!(first["kind"], "entity_set");
    // The agent defaults to the MCP client's name and the host.
    assert!(first["agent"].as_str().unwrap().starts_with("test-host@"), "{first}");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_back_as_tool_errors_with_the_reference_wording() {
    let dir = tempfile::tempdir().unwrap();
    let c = spawn(&dir.path().join("m.db"), "test-host", &[]).await;
    let cases = [
        (
            "add_observations",
            json!({"observations": [{"entityName": "Nobody", "contents": ["x"]}]}),
            "Entity with name Nobody not found",
        ),
        (
            "create_relations",
            json!({"relations": [{"from": "A", "to": "B", "relationType": "r"}]}),
            "Entity with name A not found",
        ),
        (
            "create_entities",
            json!({"entities": [{"name": "X"}]}),
            "Input validation error: Invalid arguments for tool create_entities",
        ),
        ("search_nodes", json!({"query": 5}), "Invalid input: expected string, received number at query"),
        (
            "create_entities",
            json!({"entities": [{"name": "a\u{1f}b", "entityType": "t", "observations": []}]}),
            "entity name contains U+001F",
        ),
        ("memory_changes_since", json!({"since": "yesterday"}), "not a Cairn version"),
        ("no_such_tool", json!({}), "MCP error -32602: Tool no_such_tool not found"),
        ("create_entities", json!({"entities": [], "expect": "garbage"}), "invalid expect"),
    ];
    for (tool, args, needle) in cases {
        let r = call(&c, tool, args).await;
        assert_eq!(r.is_error, Some(true), "{tool}: {}", text(&r));
        assert!(text(&r).contains(needle), "{tool}: {:?} should contain {needle:?}", text(&r));
    }
    // Nothing was written by any of them, and the server still works.
    let g = body(&call(&c, "read_graph", json!({})).await);
    assert_eq!(g, json!({"entities": [], "relations": []}));
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_on_stdin_is_ignored_and_the_session_goes_on() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["mcp", "--db", dir.path().join("m.db").to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let send = |s: &str| format!("{s}\n");
    stdin.write_all(send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#).as_bytes()).await.unwrap();
    let init: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(init["id"], 1);
    stdin.write_all(send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).as_bytes()).await.unwrap();
    stdin.write_all(b"{this is not json\n").await.unwrap();
    stdin
        .write_all(
            send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_graph","arguments":{}}}"#)
                .as_bytes(),
        )
        .await
        .unwrap();
    let reply: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(reply["id"], 2, "the valid request after the garbage is answered: {reply}");
    assert!(reply["result"]["structuredContent"]["entities"].is_array());
    drop(stdin);
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_servers_on_one_database_lose_nothing() {
    const SERVERS: usize = 4;
    const WRITES: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let setup = spawn(&db, "setup", &[]).await;
    call(
        &setup,
        "create_entities",
        json!({"entities": [{"name": "Hub", "entityType": "counter", "observations": []}]}),
    )
    .await;
    let mut tasks = Vec::new();
    for s in 0..SERVERS {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let c = spawn(&db, &format!("session{s}"), &[]).await;
            for i in 0..WRITES {
                let name = format!("s{s}-{i}");
                let r = call(
                    &c,
                    "create_entities",
                    json!({"entities": [{"name": name, "entityType": "item", "observations": ["made"]}]}),
                )
                .await;
                assert_eq!(body(&r).as_array().unwrap().len(), 1);
                let r =
                    call(&c, "add_observations", json!({"observations": [{"entityName": "Hub", "contents": [name]}]}))
                        .await;
                assert_eq!(body(&r)[0]["addedObservations"].as_array().unwrap().len(), 1);
            }
            c.cancel().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let g = body(&call(&setup, "read_graph", json!({})).await);
    assert_eq!(g["entities"].as_array().unwrap().len(), 1 + SERVERS * WRITES);
    let hub = g["entities"].as_array().unwrap().iter().find(|e| e["name"] == "Hub").unwrap().clone();
    assert_eq!(hub["observations"].as_array().unwrap().len(), SERVERS * WRITES);
    // The sessions' writes show up as other agents' changes to this one.
    let notice = text(&call(&setup, "read_graph", json!({})).await);
    assert!(!notice.contains("[cairn]"), "nothing new since the previous read");
    setup.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_say_when_other_agents_changed_things_and_expect_refuses_stale_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let a = spawn(&db, "agent-a", &[]).await;
    let b = spawn(&db, "agent-b", &[]).await;
    call(
        &a,
        "create_entities",
        json!({"entities": [{"name": "Plan", "entityType": "doc", "observations": ["step 1"]}]}),
    )
    .await;
    let first = call(&b, "read_graph", json!({})).await;
    assert_eq!(first.content.len(), 1, "a first read has nothing to flag");
    let version = body(&call(&b, "memory_status", json!({})).await)["version"].as_str().unwrap().to_owned();
    call(&a, "add_observations", json!({"observations": [{"entityName": "Plan", "contents": ["step 2"]}]})).await;
    // B's next read carries one short line naming the other agent and the entity.
    let r = call(&b, "read_graph", json!({})).await;
    let notice = r.content[1].as_text().unwrap().text.clone();
    assert!(notice.starts_with("[cairn]") && notice.contains("agent-a@") && notice.contains("Plan"), "{notice}");
    // A write conditioned on the stale version is refused, listing A's change, and writes nothing.
    let r = call(
        &b,
        "add_observations",
        json!({"observations": [{"entityName": "Plan", "contents": ["b's step"]}], "expect": version}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("Conflict") && text(&r).contains("step 2"), "{}", text(&r));
    let g = body(&call(&b, "open_nodes", json!({"names": ["Plan"]})).await);
    assert_eq!(g["entities"][0]["observations"], json!(["step 1", "step 2"]));
    // With a fresh version it goes through.
    let version = body(&call(&b, "memory_status", json!({})).await)["version"].as_str().unwrap().to_owned();
    let r = call(
        &b,
        "add_observations",
        json!({"observations": [{"entityName": "Plan", "contents": ["b's step"]}], "expect": version}),
    )
    .await;
    assert_eq!(body(&r)[0]["addedObservations"], json!(["b's step"]));
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_file_path_is_imported_once_beside_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("memory.jsonl");
    let content = concat!(
        r#"{"type":"entity","name":"Alice","entityType":"person","observations":["likes tea",""]}"#,
        "\n",
        r#"{"type":"entity","name":"ACME\nInc","entityType":"","observations":[]}"#,
        "\n",
        r#"{"type":"relation","from":"Alice","to":"ACME\nInc","relationType":"works_at"}"#,
        "\n",
    );
    std::fs::write(&file, content).unwrap();
    let c = spawn(Path::new(""), "host", &[("MEMORY_FILE_PATH", file.to_str().unwrap())]).await;
    let g = body(&call(&c, "read_graph", json!({})).await);
    assert_eq!(g["entities"].as_array().unwrap().len(), 2, "{g}");
    assert_eq!(g["entities"][0]["name"], "ACME\nInc");
    assert_eq!(g["entities"][1]["observations"], json!(["likes tea", ""]));
    assert_eq!(g["relations"].as_array().unwrap().len(), 1);
    call(&c, "add_observations", json!({"observations": [{"entityName": "Alice", "contents": ["new"]}]})).await;
    c.cancel().await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), content, "the original is never modified");
    assert!(dir.path().join("memory.cairn.db").is_file());
    // A second session does not import again (nothing duplicated, the new observation kept).
    let c = spawn(Path::new(""), "host", &[("MEMORY_FILE_PATH", file.to_str().unwrap())]).await;
    let g = body(&call(&c, "open_nodes", json!({"names": ["Alice"]})).await);
    assert_eq!(g["entities"][0]["observations"], json!(["likes tea", "", "new"]));
    c.cancel().await.unwrap();
}

#[test]
fn a_memory_file_that_cannot_be_imported_stops_the_server_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("memory.jsonl");
    let content = concat!(
        r#"{"type":"entity","name":"Alice","entityType":"person","observations":["likes tea"]}"#,
        "\n",
        r#"{"type":"entity","name":"Bob","entityType":"pers"#
    );
    std::fs::write(&file, content).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("mcp")
        .env("MEMORY_FILE_PATH", &file)
        .env_remove("CAIRN_DB")
        .env_remove("CAIRN_RELAY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2 cannot be imported: not valid JSON"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "the error names the file: {err}");
    // Nothing was written: the database holds no entity.
    let db = dir.path().join("memory.cairn.db");
    if db.exists() {
        let g = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["graph", "--json", "--db", db.to_str().unwrap()])
            .output()
            .unwrap();
        let g: Value = serde_json::from_slice(&g.stdout).unwrap();
        assert_eq!(g["entities"], json!([]));
    }
}
