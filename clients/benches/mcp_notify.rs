//! Write-to-notification delay of `memory://knowledge-graph`: how long after a write starts a
//! subscribed `cairn mcp` session receives `notifications/resources/updated` that covers it,
//! when the write comes from the same session, from another `cairn mcp` on the same file, and
//! from a peer on another file through a `cairn relay` on loopback. Prints a table; record it in
//! BENCHMARKS.md.
//!
//!     cargo bench -p cairn-cli --bench mcp_notify

#![allow(clippy::print_stdout)] // its report goes to stdout
#![expect(deprecated, reason = "resources/subscribe is what hosts on protocol 2025-11-25 use")]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::handler::client::ClientHandler;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ReadResourceRequestParams,
    ResourceContents, ResourceUpdatedNotificationParam, SubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const SAMPLES: usize = 200;
const GRAPH: &str = "memory://knowledge-graph";
/// More than the server's least gap between notifications (100 ms), so that no sample waits on
/// the previous one's.
const PAUSE: Duration = Duration::from_millis(120);

struct Recorder {
    updates: mpsc::UnboundedSender<Instant>,
}

impl ClientHandler for Recorder {
    async fn on_resource_updated(&self, _: ResourceUpdatedNotificationParam, _: NotificationContext<RoleClient>) {
        let _ = self.updates.send(Instant::now());
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("cairn-bench", "1"))
    }
}

type Client = RunningService<RoleClient, Recorder>;

async fn spawn(db: &Path, agent: &str, relay: Option<&str>) -> (Client, mpsc::UnboundedReceiver<Instant>) {
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
        c.args(["mcp", "--db", db.to_str().unwrap(), "--agent", agent]).env_remove("MEMORY_FILE_PATH");
        c.env_remove("CAIRN_RELAY").env_remove("CAIRN_TOKEN");
        if let Some(url) = relay {
            c.env("CAIRN_RELAY", url);
        }
    });
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    (Recorder { updates: tx }.serve(transport).await.unwrap(), rx)
}

async fn call(c: &Client, tool: &str, args: Value) {
    let Value::Object(args) = args else { unreachable!() };
    let r = c.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{tool}: {:?}", r.content);
}

async fn graph_text(c: &Client) -> String {
    let r = c.read_resource(ReadResourceRequestParams::new(GRAPH)).await.unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &r.contents[0] else { unreachable!() };
    text.clone()
}

/// `SAMPLES` writes by `writer`, each timed from its start to the first notification at
/// `watcher` after which the watcher's graph holds it.
async fn measure(watcher: &Client, updates: &mut mpsc::UnboundedReceiver<Instant>, writer: &Client) -> Vec<Duration> {
    call(writer, "create_entities", json!({"entities": [{"name": "Bench", "entityType": "t", "observations": []}]}))
        .await;
    // Until the watcher has the entity (through the relay, once both are connected).
    loop {
        tokio::time::timeout(Duration::from_secs(30), updates.recv()).await.expect("no first notification");
        if graph_text(watcher).await.contains("\"Bench\"") {
            break;
        }
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        tokio::time::sleep(PAUSE).await;
        while updates.try_recv().is_ok() {}
        let text = format!("sample {i}");
        let start = Instant::now();
        call(writer, "add_observations", json!({"observations": [{"entityName": "Bench", "contents": [text]}]})).await;
        loop {
            let at = tokio::time::timeout(Duration::from_secs(30), updates.recv())
                .await
                .unwrap_or_else(|_| panic!("no notification for {text}"))
                .unwrap();
            if graph_text(watcher).await.contains(&format!("\"{text}\"")) {
                samples.push(at - start);
                break;
            }
        }
    }
    samples
}

fn p(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i].as_secs_f64() * 1e3
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();

    let (a, mut ua) = spawn(&dir.path().join("same.db"), "a", None).await;
    a.subscribe(SubscribeRequestParams::new(GRAPH)).await.unwrap();
    rows.push(("same session", measure(&a, &mut ua, &a).await));
    a.cancel().await.unwrap();

    let shared = dir.path().join("shared.db");
    let (a, mut ua) = spawn(&shared, "a", None).await;
    let (b, _) = spawn(&shared, "b", None).await;
    a.subscribe(SubscribeRequestParams::new(GRAPH)).await.unwrap();
    rows.push(("other process, same file", measure(&a, &mut ua, &b).await));
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();

    let port = free_port();
    let mut relay = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["relay", "--insecure-no-auth", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--data", dir.path().join("relay").to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("ws://127.0.0.1:{port}");
    let (a, mut ua) = spawn(&dir.path().join("a.db"), "a", Some(&url)).await;
    let (b, _) = spawn(&dir.path().join("b.db"), "b", Some(&url)).await;
    a.subscribe(SubscribeRequestParams::new(GRAPH)).await.unwrap();
    rows.push(("peer through a relay", measure(&a, &mut ua, &b).await));
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
    let _ = relay.kill();
    let _ = relay.wait();

    println!("write-to-notification delay, {SAMPLES} add_observations each, from the write call's start\n");
    println!("{:<26} {:>10} {:>10} {:>10}", "writer", "p50", "p99", "max");
    for (label, mut s) in rows {
        let (p50, p99, max) = (p(&mut s, 0.5), p(&mut s, 0.99), p(&mut s, 1.0));
        println!("{label:<26} {p50:>7.2} ms {p99:>7.2} ms {max:>7.2} ms");
    }
}
