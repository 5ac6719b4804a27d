//! Stock automerge-repo clients through the Cairn relay and through the stock sync server, in one
//! run. Prints a table; record it in BENCHMARKS.md.
//!
//!     npm install --prefix clients/js --no-audit --no-fund   # once
//!     cargo bench -p cairn-sync --bench stock_clients
//!
//! `CAIRN_BENCH_RELAY` names another relay binary to measure (an older build, say).
//! `CAIRN_BENCH_CLIENTS` (default 4) Node clients (`clients/js/bench-clients.mjs`: stock
//! `@automerge/automerge-repo` with the websocket adapter) each make `CAIRN_BENCH_RATE` (20)
//! ordinary Cairn writes a second for `CAIRN_BENCH_SECONDS` (10) seconds to one shared shard
//! document: first through the relay (the release `cairn-relay` binary, `--insecure-no-auth`,
//! in a temp dir), then through `@automerge/automerge-repo-sync-server` (node, in a temp dir).
//! A Rust replica creates the graph on each server first and then leaves, so the clients `find`
//! its documents. Per server: websocket messages each way (and how many sync messages carried no
//! changes), messages per write, delivery latency (a write until every other client applied
//! it), the CPU time of the server process and of the clients' Node process over the measured
//! window, that CPU per delivered change (a write applied by one other client: issue 17 compares
//! the servers by it), and any client disconnects.
//! The clients' writes are paced by Node's timers: when a storm keeps the clients' process busy
//! the write phase stretches (the "written in" column), so compare messages per write, not
//! message rates.

#![allow(clippy::print_stdout)] // its report goes to stdout

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use cairn::{Durability, Op, OpenOptions, Replica};
use cairn_sync::{ClientOptions, SyncClient};

/// The entity every client writes observations on; its shard is the shared document.
const ENTITY: &str = "Bench";

fn setting(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The relay binary: this build's, or `CAIRN_BENCH_RELAY` (another build's, to measure old and
/// new code with the same bench in one run of the machine).
fn relay_bin() -> PathBuf {
    std::env::var_os("CAIRN_BENCH_RELAY")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cairn-relay")), PathBuf::from)
}

fn js_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/js");
    assert!(
        dir.join("node_modules/@automerge/automerge-repo").is_dir(),
        "the JavaScript packages are not installed: run `npm install --prefix clients/js --no-audit --no-fund`"
    );
    dir
}

fn free_addr() -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// A server process, killed when dropped (a failed run leaves no server behind).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(addr: SocketAddr, server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(server.0.try_wait().unwrap().is_none(), "the server exited before listening");
        assert!(Instant::now() < deadline, "the server did not listen on {addr} within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pushes the seed replica's graph to the server at `addr`, then disconnects.
async fn seed(replica: &Arc<Replica>, addr: SocketAddr) {
    let mut options = ClientOptions::new(format!("ws://{addr}"));
    options.min_backoff = Duration::from_millis(20);
    let client = SyncClient::spawn(replica.clone(), options);
    assert!(client.wait_settled(Duration::from_secs(60)).await, "the seed replica did not sync with {addr}");
    client.stop().await;
}

/// What one server's run measured.
struct Run {
    server: &'static str,
    result: serde_json::Value,
    /// CPU seconds over the counted window: the server process, and the clients' Node process.
    cpu: f64,
    clients_cpu: f64,
    /// The relay's own count of messages in and out over the window (from `/metrics`), to check
    /// the clients' count against.
    relay_counted: Option<(u64, u64)>,
}

/// The relay's message counters (in, out), from its `/metrics`.
fn relay_counters(addr: SocketAddr) -> Option<(u64, u64)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: relay\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let counter =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).map(|v| v as u64);
    Some((counter("cairn_relay_messages_in_total ")?, counter("cairn_relay_messages_out_total ")?))
}

/// Runs the Node clients against `addr`; the server's CPU time is read at the start and the end
/// of the clients' counted window.
fn clients(js: &Path, addr: SocketAddr, server: &Server, name: &'static str, relay: bool) -> Run {
    let (n, rate, seconds) =
        (setting("CAIRN_BENCH_CLIENTS", 4), setting("CAIRN_BENCH_RATE", 20), setting("CAIRN_BENCH_SECONDS", 10));
    let mut node = Command::new("node")
        .arg(js.join("bench-clients.mjs"))
        .args([format!("ws://{addr}"), "default".into(), ENTITY.into(), n.to_string(), rate.to_string()])
        .arg(seconds.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot run `node`: install Node.js and put it on PATH");
    let (pid, node_pid) = (server.0.id(), node.id());
    let (mut cpu_start, mut cpu, mut clients_cpu) = (None, 0.0, 0.0);
    let (mut counted_start, mut relay_counted) = (None, None);
    let mut result = None;
    for line in std::io::BufReader::new(node.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        match value["event"].as_str() {
            Some("counting") => {
                cpu_start = Some((common::cpu_seconds(pid), common::cpu_seconds(node_pid)));
                counted_start = relay.then(|| relay_counters(addr)).flatten();
            }
            Some("done") => {
                let (server0, clients0) = cpu_start.expect("counting started");
                cpu = common::cpu_seconds(pid) - server0;
                clients_cpu = common::cpu_seconds(node_pid) - clients0;
                if let (Some((i0, o0)), Some((i1, o1))) = (counted_start, relay_counters(addr)) {
                    relay_counted = Some((i1 - i0, o1 - o0));
                }
            }
            _ => result = Some(value),
        }
    }
    let status = node.wait().unwrap();
    assert!(status.success(), "bench-clients.mjs failed against the {name}");
    Run {
        server: name,
        result: result.expect("bench-clients.mjs printed its results"),
        cpu,
        clients_cpu,
        relay_counted,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let js = js_dir();
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions::new("bench-seed".parse().unwrap()).durability(Durability::Normal);
    let seeder = Arc::new(Replica::open_with(dir.path().join("seed.db"), options).unwrap());
    seeder.write(&[Op::create_entity(ENTITY, "bench", &[])]).unwrap();
    let mut runs = Vec::new();

    // 1. The Cairn relay, as its release binary.
    let addr = free_addr();
    let mut relay = Server(
        Command::new(relay_bin())
            .args([
                "--listen",
                &addr.to_string(),
                "--data",
                dir.path().join("relay").to_str().unwrap(),
                "--insecure-no-auth",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(addr, &mut relay);
    seed(&seeder, addr).await;
    let js2 = js.clone();
    let run = tokio::task::spawn_blocking(move || clients(&js2, addr, &relay, "Cairn relay", true));
    runs.push(run.await.unwrap());

    // 2. The stock sync server.
    let addr = free_addr();
    let mut stock = Server(
        Command::new("node")
            .arg(js.join("node_modules/@automerge/automerge-repo-sync-server/src/index.js"))
            .env("PORT", addr.port().to_string())
            .env("DATA_DIR", dir.path().join("stock"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run `node`"),
    );
    wait_listening(addr, &mut stock);
    seed(&seeder, addr).await;
    let run = tokio::task::spawn_blocking(move || clients(&js, addr, &stock, "stock sync server", false));
    runs.push(run.await.unwrap());

    report(&runs);
}

fn report(runs: &[Run]) {
    let r = &runs[0].result;
    println!(
        "{} stock automerge-repo 2.5.6 clients x {} writes/s x {} s to one shard document; loopback; 2 cores; relay {}; load average at the end {}\n",
        r["clients"],
        r["rate"],
        r["seconds"],
        relay_bin().display(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "| server | writes delivered (written in) | msgs server→clients (no changes) | msgs clients→server (no changes) | msgs per write (server, total) | p50 / p99 / max delivery | CPU server, clients | CPU per delivered change | disconnects |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let r = &run.result;
        let int = |k: &str| r[k].as_u64().unwrap_or(0);
        let ms = |k: &str| r[k].as_f64().map_or("-".into(), |v| format!("{v:.0}"));
        let writes = int("writes").max(1) as f64;
        let disconnects = r["disconnects"].as_array().map_or(0, Vec::len);
        let reasons: Vec<String> = r["disconnects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| format!("{} {}", d["code"], d["reason"].as_str().unwrap_or("")))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // A write is delivered once to each other client: that many changes applied.
        let applied = (int("delivered") * int("clients").saturating_sub(1)).max(1) as f64;
        println!(
            "| {} | {}/{} ({:.1} s) | {} ({:.0}%) | {} ({:.0}%) | {:.1}, {:.1} | {} / {} / {} ms | {:.2} s, {:.2} s | {:.3} ms | {}{} |",
            run.server,
            int("delivered"),
            int("writes"),
            int("wrote_for_ms") as f64 / 1000.0,
            int("serverSent"),
            100.0 * int("serverSentEmpty") as f64 / int("serverSent").max(1) as f64,
            int("clientsSent"),
            100.0 * int("clientsSentEmpty") as f64 / int("clientsSent").max(1) as f64,
            int("serverSent") as f64 / writes,
            (int("serverSent") + int("clientsSent")) as f64 / writes,
            ms("p50_ms"),
            ms("p99_ms"),
            ms("max_ms"),
            run.cpu,
            run.clients_cpu,
            1000.0 * (run.cpu + run.clients_cpu) / applied,
            disconnects,
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) },
        );
    }
    println!();
    for run in runs {
        println!(
            "{}: messages by type {}; sent by each client {}; counted over {} ms",
            run.server, run.result["byType"], run.result["byClient"], run.result["counted_for_ms"]
        );
        if let Some((received, sent)) = run.relay_counted {
            println!("{} /metrics over the same window: {received} messages in, {sent} out", run.server);
        }
    }
}
