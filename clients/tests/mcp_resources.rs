//! `memory://knowledge-graph` as a live resource: the real `cairn mcp` binary, a real rmcp client
//! that records `notifications/resources/updated`, and for sync a real `cairn relay` on loopback.
//! Every wait is bounded ([`WAIT`]) and fails with what it was waiting for; nothing measures time.
#![expect(deprecated, reason = "resources/subscribe is what hosts on protocol 2025-11-25 use")]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rmcp::handler::client::ClientHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ErrorCode, Implementation,
    NotificationMetaObject, ReadResourceRequestParams, ResourceContents, ResourceUpdatedNotificationParam,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RunningService, ServiceError};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

const GRAPH: &str = "memory://knowledge-graph";
const WAIT: Duration = Duration::from_secs(20);

/// A client that keeps every `notifications/resources/updated` it receives.
struct Recorder {
    info: ClientConfig,
    updates: mpsc::UnboundedSender<ResourceUpdatedNotificationParam>,
}

impl ClientHandler for Recorder {
    async fn on_resource_updated(
        &self,
        mut params: ResourceUpdatedNotificationParam,
        context: NotificationContext<RoleClient>,
    ) {
        // rmcp 3.11's client moves the params' `_meta` into `context.extensions` (it takes the
        // extensions before the metadata), not `context.meta`.
        params.meta = context.extensions.get::<NotificationMetaObject>().cloned().or(Some(context.meta));
        let _ = self.updates.send(params);
    }

    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}

struct Client {
    service: RunningService<RoleClient, Recorder>,
    updates: Mutex<mpsc::UnboundedReceiver<ResourceUpdatedNotificationParam>>,
}

async fn spawn(db: &Path, name: &str, relay: Option<&str>) -> Client {
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
        c.arg("mcp").args(["--db", db.to_str().unwrap()]);
        c.env_remove("CAIRN_AGENT").env_remove("CAIRN_RELAY").env_remove("CAIRN_TOKEN").env_remove("MEMORY_FILE_PATH");
        if let Some(url) = relay {
            c.env("CAIRN_RELAY", url);
        }
    });
    let (transport, _stderr) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new(name, "1.0"));
    let service = Recorder { info, updates: tx }.serve(transport).await.unwrap();
    Client { service, updates: Mutex::new(rx) }
}

impl Client {
    async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        let Value::Object(args) = args else { panic!("arguments must be an object") };
        let r = self.service.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await.unwrap();
        assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
        r
    }

    async fn subscribe(&self) {
        self.service.subscribe(SubscribeRequestParams::new(GRAPH)).await.unwrap();
    }

    async fn read(&self, uri: &str) -> Result<String, ServiceError> {
        let r = self.service.read_resource(ReadResourceRequestParams::new(uri)).await?;
        assert_eq!(r.contents.len(), 1);
        let ResourceContents::TextResourceContents { uri: got, mime_type, text, .. } = &r.contents[0] else {
            panic!("not text: {:?}", r.contents)
        };
        assert_eq!((got.as_str(), mime_type.as_deref()), (uri, Some("application/json")));
        Ok(text.clone())
    }

    /// The log position (the `seq` of `v{seq}.{replica}`) of the current version.
    async fn version(&self) -> i64 {
        let r = self.call("memory_status", json!({})).await;
        let status: Value = serde_json::from_str(&r.content[0].as_text().unwrap().text).unwrap();
        seq(status["version"].as_str().unwrap())
    }

    /// The next notification, within [`WAIT`]; returns the log position it says it reflects.
    async fn next_update(&self, waiting_for: &str) -> i64 {
        let update = tokio::time::timeout(WAIT, self.updates.lock().await.recv())
            .await
            .unwrap_or_else(|_| panic!("no notifications/resources/updated within {WAIT:?}: {waiting_for}"))
            .expect("the session ended");
        assert_eq!(update.uri, GRAPH);
        let meta = update.meta.as_ref().expect("the notification names its version in _meta");
        seq(meta.get("cairn/version").and_then(Value::as_str).expect("a cairn/version string"))
    }

    /// Waits (bounded) until a notification arrives after which the graph holds `entity`.
    async fn until_notified_of(&self, entity: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let update = tokio::time::timeout(left, self.updates.lock().await.recv())
                .await
                .unwrap_or_else(|_| panic!("no notification showing {entity} within {WAIT:?}: {what}"));
            assert!(update.is_some(), "the session ended");
            let graph: Value = serde_json::from_str(&self.read(GRAPH).await.unwrap()).unwrap();
            if graph["entities"].as_array().unwrap().iter().any(|e| e["name"] == entity) {
                return;
            }
        }
    }
}

fn seq(version: &str) -> i64 {
    version.strip_prefix('v').and_then(|v| v.split_once('.')).and_then(|(s, _)| s.parse().ok()).expect(version)
}

fn entity(name: &str) -> Value {
    json!({"entities": [{"name": name, "entityType": "note", "observations": ["hello"]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_resource_matches_the_reference_and_read_graph_and_notifies_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = spawn(&dir.path().join("m.db"), "host", None).await;
    let caps = c.service.peer_info().unwrap().capabilities.resources.clone().expect("resources capability");
    assert_eq!((caps.subscribe, caps.list_changed), (Some(true), Some(true)), "as the reference SDK declares");

    let list = c.service.list_all_resources().await.unwrap();
    assert_eq!(
        serde_json::to_value(&list).unwrap(),
        json!([{
            "uri": GRAPH,
            "name": "knowledge-graph",
            "title": "Knowledge Graph",
            "description": "The full knowledge graph with all entities and relations",
            "mimeType": "application/json"
        }])
    );
    assert!(c.service.list_all_resource_templates().await.unwrap().is_empty(), "no templates, as the reference");
    let Err(ServiceError::McpError(e)) = c.read("memory://nope").await else { panic!("an unknown URI must fail") };
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS);
    assert_eq!(e.message, "MCP error -32602: Resource memory://nope not found", "the reference SDK's words");
    assert_eq!(c.read(GRAPH).await.unwrap(), "{\n  \"entities\": [],\n  \"relations\": []\n}");

    c.subscribe().await;
    c.call("create_entities", entity("Alice")).await;
    let written = c.version().await;
    let notified = c.next_update("after this session's own create_entities").await;
    assert_eq!(notified, written, "the notification names the version that holds the write");
    let read_graph = c.call("read_graph", json!({})).await;
    assert_eq!(c.read(GRAPH).await.unwrap(), read_graph.content[0].as_text().unwrap().text);
    assert!(c.read(GRAPH).await.unwrap().contains("\"Alice\""));

    // A write that changes nothing logs nothing, so there is nothing to notify.
    c.call("create_entities", entity("Alice")).await;
    assert_eq!(c.version().await, written, "a no-op write does not move the version");
    c.service.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let c = spawn(&dir.path().join("m.db"), "host", None).await;
    c.subscribe().await;
    c.call("create_entities", entity("One")).await;
    let v1 = c.version().await;
    assert_eq!(c.next_update("after the first write").await, v1);
    c.service.unsubscribe(UnsubscribeRequestParams::new(GRAPH)).await.unwrap();
    // Written while unsubscribed: v2 must never be notified, not even after subscribing again
    // (a subscription covers only changes after it).
    c.call("create_entities", entity("Two")).await;
    let v2 = c.version().await;
    c.subscribe().await;
    c.call("create_entities", entity("Three")).await;
    let v3 = c.version().await;
    // The watcher reports the log in order, so a notification of v2 would come before v3's.
    let first = c.next_update("after subscribing again and writing").await;
    assert!(first > v2, "notified of version {first}, written while unsubscribed (v2 = {v2})");
    assert_eq!(first, v3);
    c.service.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_on_the_same_file_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let a = spawn(&db, "agent-a", None).await;
    let b = spawn(&db, "agent-b", None).await;
    a.subscribe().await;
    b.call("create_entities", entity("FromB")).await;
    a.until_notified_of("FromB", "B wrote to the same file").await;
    a.service.cancel().await.unwrap();
    b.service.cancel().await.unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `cairn relay` on loopback, killed when dropped.
struct Relay(std::process::Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn relay(data: &Path) -> (Relay, String) {
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["relay", "--insecure-no-auth", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--data", data.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let relay = Relay(child);
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the relay did not listen within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (relay, format!("ws://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_through_the_relay_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let (_relay, url) = relay(&dir.path().join("relay")).await;
    let a = spawn(&dir.path().join("a.db"), "agent-a", Some(&url)).await;
    let b = spawn(&dir.path().join("b.db"), "agent-b", Some(&url)).await;
    a.subscribe().await;
    b.call("create_entities", entity("FromPeer")).await;
    a.until_notified_of("FromPeer", "B wrote to its own file, synced through the relay").await;
    a.service.cancel().await.unwrap();
    b.service.cancel().await.unwrap();
}
