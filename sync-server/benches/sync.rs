//! Sync benchmarks through a real relay on loopback. Prints a table; record it in BENCHMARKS.md.
//!
//!     cargo bench -p cairn-sync --bench sync
//!
//! Figures: write-to-visible latency between two replicas (A writes, B's read reports the new
//! fact as unseen from A), catch-up time and bytes for a replica that missed 10k changes, and
//! relay throughput with 100 connected replicas writing at once.

#![allow(clippy::print_stdout)] // its report goes to stdout

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;

use cairn::{Durability, Op, OpenOptions, Replica};
use cairn_sync::{ClientOptions, Relay, RelayConfig, RelayStore, SyncClient};

fn replica(dir: &std::path::Path, name: &str, durability: Durability) -> Arc<Replica> {
    let options = OpenOptions::new(name.parse().unwrap()).durability(durability);
    Arc::new(Replica::open_with(dir.join(format!("{name}.db")), options).unwrap())
}

fn options(addr: SocketAddr) -> ClientOptions {
    let mut o = ClientOptions::new(format!("ws://{addr}"));
    o.min_backoff = Duration::from_millis(20);
    o.tick = Duration::from_millis(100);
    o
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn observe(entity: &str, text: String) -> Op {
    Op::add_observation(entity, text)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let config = RelayConfig::new(cairn_sync::hub_config_for(&relay_dir), cairn_sync::Auth::InsecureNoAuth);
    let store = RelayStore::open(&relay_dir, Durability::Full).unwrap();
    let relay = Relay::start(store, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(relay.serve(listener, std::future::pending()));
    println!("relay durability FULL; replicas FULL; loopback; 2 cores\n");

    // 1. Write-to-visible latency.
    let a = replica(dir.path(), "a", Durability::Full);
    let b = replica(dir.path(), "b", Durability::Full);
    a.write(&[Op::create_entity("Hub", "t", &[])]).unwrap();
    let ca = SyncClient::spawn(a.clone(), options(addr));
    let cb = SyncClient::spawn(b.clone(), options(addr));
    wait_until("b sees Hub", Duration::from_secs(20), || b.read_graph().unwrap().data.entities.len() == 1).await;
    let mut samples = Vec::new();
    for i in 0..500 {
        let since = b.status().unwrap().version;
        let t = Instant::now();
        let a2 = a.clone();
        tokio::task::spawn_blocking(move || a2.write(&[observe("Hub", format!("note {i}"))]).unwrap()).await.unwrap();
        // B's read reports A's write as unseen: that is "visible".
        let b2 = b.clone();
        tokio::task::spawn_blocking(move || {
            let read = b2.wait_for_change(since, Duration::from_secs(5)).unwrap();
            assert_eq!(read.unseen.agents, ["a"], "B's read reports A's write");
            assert!(read.data.iter().any(|c| c.agent == "a"), "write {i} reached B");
        })
        .await
        .unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "write-to-visible (A writes, B's read reports it), 500 writes: p50 {} p99 {} max {}",
        ms(samples[250]),
        ms(samples[495]),
        ms(samples[499])
    );

    // 2. Catch-up after 10k missed changes, spread over 100 entities (and so most shards).
    let c = replica(dir.path(), "c", Durability::Full);
    let entities: Vec<Op> = (0..100).map(|e| Op::create_entity(format!("E{e}"), "t", &[])).collect();
    a.write(&entities).unwrap();
    let t = Instant::now();
    for i in 0..10_000 {
        a.write(&[observe(&format!("E{}", i % 100), format!("while c was away {i}"))]).unwrap();
    }
    let wrote = t.elapsed();
    wait_until("b caught up with a", Duration::from_secs(300), || b.heads().unwrap() == a.heads().unwrap()).await;
    let t = Instant::now();
    let cc = SyncClient::spawn(c.clone(), options(addr));
    wait_until("c caught up", Duration::from_secs(300), || c.heads().unwrap() == a.heads().unwrap()).await;
    let catch_up = t.elapsed();
    let traffic = cc.traffic();
    println!(
        "catch-up of 10k missed changes: {} ({:.1} MiB in {} frames down, {:.1} KiB up); writing them took {}",
        ms(catch_up),
        traffic.bytes_in.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        traffic.frames_in.load(Ordering::Relaxed),
        traffic.bytes_out.load(Ordering::Relaxed) as f64 / 1024.0,
        ms(wrote)
    );
    cc.stop().await;
    ca.stop().await;
    cb.stop().await;

    // 3. Relay throughput: 100 replicas connected, each writing 20 times as fast as it can. The
    // relay runs as its own process here, so that its CPU time can be told apart from the 100
    // replicas' (which share this process and the machine's two cores).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let relay_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut relay_process = std::process::Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
        .args([
            "--listen",
            &relay_addr.to_string(),
            "--data",
            dir.path().join("relay2").to_str().unwrap(),
            "--insecure-no-auth",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("relay up", Duration::from_secs(20), || std::net::TcpStream::connect(relay_addr).is_ok()).await;
    let addr = relay_addr;
    const N: usize = 100;
    const WRITES: usize = 20;
    let replicas: Vec<_> = (0..N).map(|i| replica(dir.path(), &format!("w{i}"), Durability::Normal)).collect();
    let clients: Vec<_> = replicas.iter().map(|r| SyncClient::spawn(r.clone(), options(addr))).collect();
    for r in &replicas {
        wait_until("connected", Duration::from_secs(60), || matches!(r.freshness(), cairn::Freshness::Synced { .. }))
            .await;
    }
    let cpu_before = common::cpu_seconds(relay_process.id());
    let own_cpu_before = common::cpu_seconds(std::process::id());
    let t = Instant::now();
    let mut writers = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        let r = r.clone();
        writers.push(tokio::task::spawn_blocking(move || {
            for n in 0..WRITES {
                r.write(&[Op::create_entity(format!("w{i}-{n}"), "t", &[])]).unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let written = t.elapsed();
    wait_until("100 replicas converged", Duration::from_secs(600), || {
        let h = replicas[0].heads().unwrap();
        replicas.iter().all(|r| r.heads().unwrap() == h)
            && replicas[0].read_graph().unwrap().data.entities.len() >= N * WRITES
    })
    .await;
    let converged = t.elapsed();
    let frames: u64 = clients.iter().map(|c| c.traffic().frames_in.load(Ordering::Relaxed)).sum();
    let relay_cpu = common::cpu_seconds(relay_process.id()) - cpu_before;
    let replicas_cpu = common::cpu_seconds(std::process::id()) - own_cpu_before;
    println!(
        "100 replicas x {WRITES} writes: all written in {}, all {} replicas converged in {} ({:.0} writes/s end to end, {:.0} delivered changes/s: a write applied by one other replica; relay sent {} frames, {:.0}/s; relay process CPU {:.1} s = {:.0}% of one core over that time; the replicas' process {:.1} s)",
        ms(written),
        N,
        ms(converged),
        (N * WRITES) as f64 / converged.as_secs_f64(),
        (N * WRITES * (N - 1)) as f64 / converged.as_secs_f64(),
        frames,
        frames as f64 / converged.as_secs_f64(),
        relay_cpu,
        100.0 * relay_cpu / converged.as_secs_f64(),
        replicas_cpu
    );
    for c in clients {
        c.stop().await;
    }
    let _ = relay_process.kill();
    let _ = relay_process.wait();
}
