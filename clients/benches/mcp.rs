//! `cairn mcp` against the reference memory server (`@modelcontextprotocol/server-memory`, from
//! npm), side by side in one run, both driven over stdio by the same MCP client. Needs
//! `npm install --prefix clients/js`. Prints a table; record it in BENCHMARKS.md.
//!
//!     cargo bench -p cairn-cli --bench mcp

#![allow(clippy::print_stdout)] // its report goes to stdout

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ClientConfig>;

#[derive(Clone, Copy)]
enum Server {
    /// `cairn mcp` with its default durability (synchronous=FULL: survives power loss).
    Cairn,
    /// `cairn mcp --durability normal` (survives a process crash, like the reference's rename).
    CairnNormal,
    Reference,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Cairn => "cairn (full)",
            Server::CairnNormal => "cairn (normal)",
            Server::Reference => "reference (npm)",
        }
    }
}

fn reference_js() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("js/node_modules/@modelcontextprotocol/server-memory/dist/index.js");
    assert!(p.is_file(), "run `npm install --prefix clients/js` first");
    p
}

async fn spawn(server: Server, store: &Path, agent: &str) -> Client {
    let cmd = match server {
        Server::Cairn | Server::CairnNormal => {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
                c.args(["mcp", "--db", store.to_str().unwrap(), "--agent", agent]).env_remove("MEMORY_FILE_PATH");
                if matches!(server, Server::CairnNormal) {
                    c.args(["--durability", "normal"]);
                }
            })
        }
        Server::Reference => tokio::process::Command::new("node").configure(|c| {
            c.arg(reference_js()).env("MEMORY_FILE_PATH", store);
        }),
    };
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().unwrap();
    ClientConfig::new(ClientCapabilities::default(), Implementation::new("cairn-bench", "1"))
        .serve(transport)
        .await
        .unwrap()
}

async fn call(c: &Client, tool: &str, args: Value) -> Duration {
    let Value::Object(args) = args else { unreachable!() };
    let t = Instant::now();
    let r = c.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await.unwrap();
    let took = t.elapsed();
    assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
    took
}

fn p(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Figures {
    create_p50: Duration,
    create_p99: Duration,
    observe_p50: Duration,
    observe_p99: Duration,
}

/// 200 single-entity creates and 200 observations added to existing entities.
async fn measure(c: &Client, tag: &str, existing: usize) -> Figures {
    const N: usize = 200;
    let mut create = Vec::new();
    for i in 0..N {
        let e = json!({"entities": [{"name": format!("{tag}-new-{i}"), "entityType": "person", "observations": ["fresh"]}]});
        create.push(call(c, "create_entities", e).await);
    }
    let mut observe = Vec::new();
    for i in 0..N {
        let target = if existing > 0 { format!("bulk-{}", (i * 7919) % existing) } else { format!("{tag}-new-{i}") };
        observe.push(
            call(
                c,
                "add_observations",
                json!({"observations": [{"entityName": target, "contents": [format!("{tag} note {i}")]}]}),
            )
            .await,
        );
    }
    Figures {
        create_p50: p(&mut create, 0.5),
        create_p99: p(&mut create, 0.99),
        observe_p50: p(&mut observe, 0.5),
        observe_p99: p(&mut observe, 0.99),
    }
}

/// Grows the store from `from` to `to` entities in batches of 100 (not timed).
async fn grow(c: &Client, from: usize, to: usize) {
    for b in (from..to).step_by(100) {
        let entities: Vec<Value> = (b..b + 100)
            .map(|i| json!({"name": format!("bulk-{i}"), "entityType": "thing", "observations": ["loaded"]}))
            .collect();
        call(c, "create_entities", json!({ "entities": entities })).await;
    }
}

/// The figures on an empty graph, at 5k entities and at 50k, in that order.
async fn bench(server: Server, dir: &Path) -> [Figures; 3] {
    let store = match server {
        Server::Cairn | Server::CairnNormal => dir.join("cairn.db"),
        Server::Reference => dir.join("memory.jsonl"),
    };
    let c = spawn(server, &store, "bench").await;
    let empty = measure(&c, "empty", 0).await;
    grow(&c, 0, 5_000).await;
    let five = measure(&c, "5k", 5_000).await;
    grow(&c, 5_000, 50_000).await;
    let fifty = measure(&c, "50k", 50_000).await;
    c.cancel().await.unwrap();
    [empty, five, fifty]
}

/// 4 server processes on one store, 120 writes each, concurrently; returns how many entities
/// the store holds afterwards (480 if nothing was lost).
async fn concurrency(server: Server, dir: &Path) -> usize {
    let store = match server {
        Server::Cairn | Server::CairnNormal => dir.join("shared.db"),
        Server::Reference => dir.join("shared.jsonl"),
    };
    let mut tasks = Vec::new();
    for s in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let c = spawn(server, &store, &format!("w{s}")).await;
            for i in 0..120 {
                call(
                    &c,
                    "create_entities",
                    json!({"entities": [{"name": format!("w{s}-{i}"), "entityType": "t", "observations": []}]}),
                )
                .await;
            }
            c.cancel().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = spawn(server, &store, "counter").await;
    let Value::Object(args) = json!({}) else { unreachable!() };
    let r = c.call_tool(CallToolRequestParams::new("read_graph").with_arguments(args)).await.unwrap();
    c.cancel().await.unwrap();
    let text = &r.content[0].as_text().unwrap().text;
    serde_json::from_str::<Value>(text).map(|g| g["entities"].as_array().map_or(0, Vec::len)).unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!(
        "per-call latency over stdio (200 calls each), single-entity create_entities and add_observations to existing entities\n"
    );
    println!(
        "{:<16} {:<12} {:>13} {:>13} {:>13} {:>13}",
        "server", "graph", "create p50", "create p99", "observe p50", "observe p99"
    );
    let mut medians = Vec::new();
    for server in [Server::Cairn, Server::CairnNormal, Server::Reference] {
        let sub = dir.path().join(server.name().replace(' ', "_").replace(['(', ')'], ""));
        std::fs::create_dir_all(&sub).unwrap();
        let figures = bench(server, &sub).await;
        for (label, f) in ["empty", "5k entities", "50k entities"].iter().zip(&figures) {
            println!(
                "{:<16} {:<12} {:>10.3} ms {:>10.3} ms {:>10.3} ms {:>10.3} ms",
                server.name(),
                label,
                ms(f.create_p50),
                ms(f.create_p99),
                ms(f.observe_p50),
                ms(f.observe_p99)
            );
        }
        medians.push(figures);
    }
    let reference = &medians[2];
    println!();
    for (server, cairn) in [Server::Cairn, Server::CairnNormal].iter().zip(&medians) {
        let ratio = |i: usize| {
            (
                ms(reference[i].create_p50) / ms(cairn[i].create_p50),
                ms(reference[i].observe_p50) / ms(cairn[i].observe_p50),
            )
        };
        let ((c5, o5), (c50, o50)) = (ratio(1), ratio(2));
        println!(
            "{}: reference / cairn: at 5k create {c5:.1}x, observe {o5:.1}x; at 50k create {c50:.1}x, observe {o50:.1}x; \
cairn at 50k / cairn empty: create {:.2}x, observe {:.2}x",
            server.name(),
            ms(cairn[2].create_p50) / ms(cairn[0].create_p50),
            ms(cairn[2].observe_p50) / ms(cairn[0].observe_p50),
        );
    }
    println!("\n4 server processes on one store, 120 create_entities each (480 entities written):");
    for server in [Server::Cairn, Server::Reference] {
        let sub = dir.path().join(format!("conc-{}", server.name().replace([' ', '(', ')'], "_")));
        std::fs::create_dir_all(&sub).unwrap();
        let kept = concurrency(server, &sub).await;
        println!("  {:<16} {kept} kept, {} lost", server.name(), 480 - kept.min(480));
    }
}
