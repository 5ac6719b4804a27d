//! Relay nodes on one PostgreSQL and one NATS (both real, started here unprivileged, as the
//! tests start them). Prints a table; record it in BENCHMARKS.md.
//!
//!     cargo bench -p cairn-sync --bench cluster
//!
//! Figures: write-to-visible latency between two replicas on one node, and on two nodes (the
//! change goes through PostgreSQL and an announcement on NATS); end-to-end throughput of 30
//! replicas writing at once, all on one node, and spread over three.

#![allow(clippy::print_stdout)] // its report goes to stdout

#[path = "../tests/common/servers.rs"]
#[allow(dead_code, unreachable_pub)]
mod servers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::{Durability, Op, OpenOptions, Replica};
use cairn_sync::{ClientOptions, SyncClient};
use servers::{Nats, Postgres};

struct Node {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(pg: &Postgres, nats: &Nats) -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
        .args(["--listen", &addr.to_string(), "--insecure-no-auth", "--store", &pg.url(), "--bus", &nats.url()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Node { child, addr }
}

fn replica(dir: &std::path::Path, name: &str) -> Arc<Replica> {
    let options = OpenOptions::new(name.parse().unwrap()).durability(Durability::Normal);
    Arc::new(Replica::open_with(dir.join(format!("{name}.db")), options).unwrap())
}

/// A replica of graph `graph`: each throughput run on a graph of its own.
fn replica_in(dir: &std::path::Path, name: &str, graph: &str) -> Arc<Replica> {
    let options = OpenOptions::new(name.parse().unwrap()).graph(graph.parse().unwrap()).durability(Durability::Normal);
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

/// p50 and p99 of `n` writes by `a`, each until `b`'s read reports it.
async fn write_to_visible(a: &Arc<Replica>, b: &Arc<Replica>, n: usize, tag: &str) -> (Duration, Duration) {
    let mut samples = Vec::new();
    for i in 0..n {
        let since = b.status().unwrap().version;
        let t = Instant::now();
        let a2 = a.clone();
        let text = format!("{tag} {i}");
        tokio::task::spawn_blocking(move || a2.write(&[Op::add_observation("Hub", text)]).unwrap()).await.unwrap();
        let b2 = b.clone();
        tokio::task::spawn_blocking(move || {
            let read = b2.wait_for_change(since, Duration::from_secs(10)).unwrap();
            assert!(!read.data.is_empty(), "write {i} reached the reader");
        })
        .await
        .unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    (samples[n / 2], samples[n * 99 / 100])
}

/// How long until `replicas` (of a graph `tag`, spread over `nodes` in turn), each writing
/// `writes` entities at once, have all converged.
async fn throughput(dir: &std::path::Path, tag: &str, nodes: &[&Node], replicas: usize, writes: usize) -> Duration {
    let rs: Vec<_> = (0..replicas).map(|i| replica_in(dir, &format!("{tag}{i}"), tag)).collect();
    let clients: Vec<_> = rs
        .iter()
        .enumerate()
        .map(|(i, r)| SyncClient::spawn(r.clone(), options(nodes[i % nodes.len()].addr)))
        .collect();
    for r in &rs {
        wait_until("connected", Duration::from_secs(60), || matches!(r.freshness(), cairn::Freshness::Synced { .. }))
            .await;
    }
    let t = Instant::now();
    let mut writers = Vec::new();
    for (i, r) in rs.iter().enumerate() {
        let r = r.clone();
        let tag = tag.to_owned();
        writers.push(tokio::task::spawn_blocking(move || {
            for n in 0..writes {
                r.write(&[Op::create_entity(format!("{tag}{i}-{n}"), "t", &[])]).unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    wait_until("converged", Duration::from_secs(600), || {
        let h = rs[0].heads().unwrap();
        rs.iter().all(|r| r.heads().unwrap() == h)
            && rs[0].read_graph().unwrap().data.entities.len() >= replicas * writes
    })
    .await;
    let took = t.elapsed();
    for c in clients {
        c.stop().await;
    }
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (pg, nats) = (Postgres::start(), Nats::start());
    let dir = tempfile::tempdir().unwrap();
    let nodes = [node(&pg, &nats), node(&pg, &nats), node(&pg, &nats)];
    println!("3 relay nodes (cairn-relay processes) on one PostgreSQL (fsync off) and one NATS; loopback; 2 cores\n");

    let a = replica(dir.path(), "a");
    a.write(&[Op::create_entity("Hub", "t", &[])]).unwrap();
    let (same, other) = (replica(dir.path(), "same"), replica(dir.path(), "other"));
    let clients = [
        SyncClient::spawn(a.clone(), options(nodes[0].addr)),
        SyncClient::spawn(same.clone(), options(nodes[0].addr)),
        SyncClient::spawn(other.clone(), options(nodes[1].addr)),
    ];
    for r in [&same, &other] {
        wait_until("the readers see Hub", Duration::from_secs(30), || r.read_graph().unwrap().data.entities.len() == 1)
            .await;
    }
    const N: usize = 300;
    let (p50, p99) = write_to_visible(&a, &same, N, "same").await;
    println!("write-to-visible, writer and reader on one node, {N} writes: p50 {} p99 {}", ms(p50), ms(p99));
    let (p50, p99) = write_to_visible(&a, &other, N, "other").await;
    println!("write-to-visible, writer and reader on two nodes, {N} writes: p50 {} p99 {}", ms(p50), ms(p99));
    for c in clients {
        c.stop().await;
    }

    const R: usize = 30;
    const W: usize = 20;
    let one = throughput(dir.path(), "one", &[&nodes[0]], R, W).await;
    println!(
        "{R} replicas x {W} writes on 1 node: converged in {} ({:.0} writes/s end to end)",
        ms(one),
        (R * W) as f64 / one.as_secs_f64()
    );
    let three = throughput(dir.path(), "three", &[&nodes[0], &nodes[1], &nodes[2]], R, W).await;
    println!(
        "{R} replicas x {W} writes over 3 nodes: converged in {} ({:.0} writes/s end to end)",
        ms(three),
        (R * W) as f64 / three.as_secs_f64()
    );
}
