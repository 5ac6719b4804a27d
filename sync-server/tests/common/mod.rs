//! Helpers for the sync stories: a relay on loopback, replicas, and bounded waits.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

pub mod attack;
pub mod servers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::{Durability, Op, OpenOptions, Replica};
use cairn_sync::{ClientOptions, Relay, RelayConfig, RelayStore, SyncClient};

pub fn replica(dir: &Path, name: &str) -> Arc<Replica> {
    let options = OpenOptions::new(name.parse().unwrap()).durability(Durability::Normal);
    Arc::new(Replica::open_with(dir.join(format!("{name}.db")), options).unwrap())
}

/// A relay in this process on 127.0.0.1 with a random port; stops when the returned sender drops.
pub async fn relay(dir: &Path) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let store = RelayStore::open(dir, Durability::Normal).unwrap();
    let relay =
        Relay::start(store, RelayConfig::new(cairn_sync::hub_config_for(dir), cairn_sync::Auth::InsecureNoAuth))
            .unwrap();
    serve(relay).await
}

pub async fn serve(relay: Relay) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(relay.serve(listener, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

pub fn options(addr: SocketAddr) -> ClientOptions {
    let mut o = ClientOptions::new(format!("ws://{addr}"));
    o.min_backoff = Duration::from_millis(50);
    o.max_backoff = Duration::from_millis(500);
    o.tick = Duration::from_millis(50);
    o
}

pub fn connect(replica: &Arc<Replica>, addr: SocketAddr) -> SyncClient {
    SyncClient::spawn(replica.clone(), options(addr))
}

/// Creates entity `name` of type `entity_type` with these observations (the same helper, with the
/// same signature, as in `tests/common`).
pub fn entity(name: &str, entity_type: &str, observations: &[&str]) -> Op {
    Op::create_entity(name, entity_type, observations)
}

/// Adds observation `text` to `entity`.
pub fn observe(entity: &str, text: &str) -> Op {
    Op::add_observation(entity, text)
}

/// Writes from a blocking thread, as an application would from its async code.
pub async fn write(replica: &Arc<Replica>, ops: Vec<Op>) {
    let r = replica.clone();
    tokio::task::spawn_blocking(move || r.write(&ops).unwrap()).await.unwrap();
}

pub fn graph_of(r: &Replica) -> Vec<String> {
    let g = r.read_graph_as_of(None).unwrap().data;
    let mut out: Vec<String> = g
        .entities
        .iter()
        .map(|e| {
            let mut obs: Vec<&str> = e.observations.iter().map(|o| o.text.as_str()).collect();
            obs.sort();
            format!("{}:{}:{obs:?}", e.name, e.entity_type)
        })
        .collect();
    out.extend(
        g.relations.iter().map(|r| format!("{}-{}->{}", r.relation.from, r.relation.relation_type, r.relation.to)),
    );
    out
}

/// Waits (bounded) until every replica holds the same heads for every document, then checks
/// that their graphs are identical.
pub async fn converge(replicas: &[Arc<Replica>], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let heads: Vec<_> = replicas.iter().map(|r| r.heads().unwrap()).collect();
        if heads.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(Instant::now() < deadline, "replicas did not converge within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = graph_of(&replicas[0]);
    for r in &replicas[1..] {
        assert_eq!(graph_of(r), first, "same heads but different graphs");
    }
}

/// Waits (bounded) for a condition.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stock JavaScript packages' directory (`clients/js`), which `npm install` must have filled.
pub fn js_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/js");
    assert!(
        dir.join("node_modules/@automerge/automerge-repo").is_dir(),
        "the JavaScript packages are not installed: run `npm install --prefix clients/js` (the README's test command does)"
    );
    dir
}

/// Runs `node <script> <args>` to completion and returns its stdout; the script exiting non-zero
/// fails the story (it could not even make its attack).
pub async fn node(script: &str, args: Vec<String>) -> String {
    let path = js_dir().join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(path)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run `node`: install Node.js (the JavaScript stories need it) and put it on PATH")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{script} failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}
