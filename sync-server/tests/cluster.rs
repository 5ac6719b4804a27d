//! Several relay nodes on one real PostgreSQL and one real NATS (`common::servers`): replicas
//! spread over the nodes converge, access is the same on every node, a node started later
//! serves everything, and nodes catch up when the bus was away.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn::automerge::sync::{self, SyncDoc};
use cairn::sync::SyncDocs;
use cairn_sync::hub::ActorBook;
use cairn_sync::{ClusterOptions, PgStore, PgTokens, Relay, Role, Tokens};
use common::servers::{Nats, Postgres};
use common::*;

const CONVERGE: Duration = Duration::from_secs(120);

/// A node on `pg` and `nats` (none: reconciliation only), served on loopback; stops when the
/// sender drops.
async fn node(
    pg: &Postgres,
    nats: Option<&Nats>,
    insecure: bool,
) -> (Relay, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    node_reconciling(pg, nats, insecure, Duration::from_millis(500)).await
}

/// [`node`], comparing its documents' versions with the store every `reconcile_every`.
async fn node_reconciling(
    pg: &Postgres,
    nats: Option<&Nats>,
    insecure: bool,
    reconcile_every: Duration,
) -> (Relay, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut cluster = ClusterOptions::new(pg.url(), nats.map(|n| n.url()).unwrap_or_default());
    cluster.reconcile_every = reconcile_every;
    let relay = cairn_sync::start_node(cluster, insecure).await.unwrap_or_else(|e| panic!("{e}\n{}", pg.log()));
    let (addr, stop) = serve(relay.clone()).await;
    (relay, addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_replicas_on_three_nodes_writing_concurrently_converge() {
    let (pg, nats) = (Postgres::start(), Nats::start());
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    // Reconciliation out of the way (once an hour): the bus alone carries the changes.
    for _ in 0..3 {
        nodes.push(node_reconciling(&pg, Some(&nats), true, Duration::from_secs(3600)).await);
    }
    let replicas: Vec<_> = (0..30).map(|i| replica(dir.path(), &format!("agent{i}"))).collect();
    let clients: Vec<_> = replicas.iter().enumerate().map(|(i, r)| connect(r, nodes[i % 3].1)).collect();
    let mut writers = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        let r = r.clone();
        writers.push(tokio::spawn(async move {
            write(&r, vec![entity("Shared", "thing", &[&format!("from {i}")])]).await;
            for n in 0..3 {
                write(&r, vec![entity(&format!("r{i}-{n}"), "thing", &["x"]), observe("Shared", &format!("{i}/{n}"))])
                    .await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    converge(&replicas, CONVERGE).await;
    let graph = graph_of(&replicas[0]);
    assert_eq!(graph.len(), 1 + 30 * 3, "every replica's entities: {graph:?}");
    let shared = graph.iter().find(|e| e.starts_with("Shared:")).unwrap();
    for i in 0..30 {
        assert!(shared.contains(&format!("\"{i}/2\"")), "{i}'s last observation is everywhere: {shared}");
    }
    let announced: u64 =
        nodes.iter().map(|(r, _, _)| r.metrics().bus_published.load(std::sync::atomic::Ordering::Relaxed)).sum();
    assert!(announced > 0, "the nodes announced their writes on the bus");
    for (i, (r, _, _)) in nodes.iter().enumerate() {
        let heard = r.metrics().bus_received.load(std::sync::atomic::Ordering::Relaxed);
        assert!(heard >= announced, "node {i} heard every announcement ({heard} of {announced})");
        let reconciled = r.metrics().reconciled_docs.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(reconciled, 0, "node {i}: reconciliation found nothing, the bus did it all");
    }
    for c in clients {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_one_node_closes_its_connections_on_every_node() {
    let (pg, nats) = (Postgres::start(), Nats::start());
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url();
    // Token commands are synchronous PostgreSQL work: off the runtime, as the CLI runs them.
    let (tokens, id, token) = tokio::task::spawn_blocking(move || {
        let tokens = Tokens::new(Arc::new(PgTokens::open(&url).unwrap()));
        let graph = cairn::GraphName::default_graph().to_string();
        let (id, token) = tokens.create(&[graph], Role::Write, None, None, cairn::now_millis()).unwrap();
        (tokens, id, token)
    })
    .await
    .unwrap();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&pg, Some(&nats), false).await);
    }
    let replicas: Vec<_> = (0..3).map(|i| replica(dir.path(), &format!("agent{i}"))).collect();
    let clients: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| cairn_sync::SyncClient::spawn(r.clone(), options(nodes[i].1).token(Some(token.clone()))))
        .collect();
    write(&replicas[0], vec![entity("Before", "thing", &["x"])]).await;
    converge(&replicas, CONVERGE).await;
    for (i, c) in clients.iter().enumerate() {
        eventually(&format!("client {i} connected"), CONVERGE, || c.is_connected()).await;
    }
    // Revoked in the shared store, as `cairn relay token revoke --store ...` does, next to node 0.
    tokio::task::spawn_blocking(move || tokens.revoke(&id, cairn::now_millis()).unwrap()).await.unwrap();
    let gauge = |r: &Relay| r.metrics().connections.load(std::sync::atomic::Ordering::Relaxed);
    for (i, (relay, _, _)) in nodes.iter().enumerate() {
        eventually(&format!("node {i} closed the revoked token's connection"), CONVERGE, || gauge(relay) == 0).await;
    }
    // And none of them lets it back in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, c) in clients.iter().enumerate() {
        assert!(!c.is_connected(), "client {i} is still connected");
    }
    for (i, (relay, _, _)) in nodes.iter().enumerate() {
        assert_eq!(gauge(relay), 0, "node {i} took the revoked token back");
    }
    write(&replicas[1], vec![entity("After", "thing", &["x"])]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!graph_of(&replicas[0]).iter().any(|e| e.starts_with("After:")), "nothing flows after the revocation");
    for c in clients {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_serves_everything() {
    let (pg, nats) = (Postgres::start(), Nats::start());
    let dir = tempfile::tempdir().unwrap();
    let first = node(&pg, Some(&nats), true).await;
    let writers: Vec<_> = (0..3).map(|i| replica(dir.path(), &format!("writer{i}"))).collect();
    let clients: Vec<_> = writers.iter().map(|r| connect(r, first.1)).collect();
    for (i, r) in writers.iter().enumerate() {
        write(r, vec![entity(&format!("E{i}"), "thing", &["x", "y"])]).await;
    }
    converge(&writers, CONVERGE).await;
    // The first node goes away; a new one starts on the same store and knows everything.
    for c in clients {
        c.stop().await;
    }
    drop(first);
    let later = node(&pg, Some(&nats), true).await;
    let newcomer = replica(dir.path(), "newcomer");
    let client = connect(&newcomer, later.1);
    let mut all = writers.clone();
    all.push(newcomer.clone());
    converge(&all, CONVERGE).await;
    assert_eq!(graph_of(&newcomer).len(), 3, "{:?}", graph_of(&newcomer));
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_catch_up_when_nats_restarts_mid_run() {
    let (pg, mut nats) = (Postgres::start(), Nats::start());
    let dir = tempfile::tempdir().unwrap();
    let (a_node, b_node) = (node(&pg, Some(&nats), true).await, node(&pg, Some(&nats), true).await);
    let (a, b) = (replica(dir.path(), "a"), replica(dir.path(), "b"));
    let clients = [connect(&a, a_node.1), connect(&b, b_node.1)];
    write(&a, vec![entity("First", "thing", &["x"])]).await;
    converge(&[a.clone(), b.clone()], CONVERGE).await;
    // The bus goes down: what node a stores still reaches b, by reconciliation with the store.
    nats.stop();
    write(&a, vec![entity("WhileDown", "thing", &["x"])]).await;
    converge(&[a.clone(), b.clone()], CONVERGE).await;
    let reconciled = b_node.0.metrics().reconciled_docs.load(std::sync::atomic::Ordering::Relaxed);
    assert!(reconciled > 0, "node b found the change by reconciliation");
    // Back up, mid-run: both directions flow again.
    nats.restart();
    write(&b, vec![entity("AfterRestart", "thing", &["x"])]).await;
    write(&a, vec![observe("First", "again")]).await;
    converge(&[a.clone(), b.clone()], CONVERGE).await;
    assert_eq!(graph_of(&b).len(), 3, "{:?}", graph_of(&b));
    eventually("node b's bus reconnected", CONVERGE, || {
        b_node.0.metrics().bus_up.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    for c in clients {
        c.stop().await;
    }
}

/// Every change of `doc` in one message, as a peer that knows the store has nothing sends it.
fn everything(doc: &cairn::automerge::Automerge) -> sync::Message {
    let mut state = sync::State::new();
    state.their_heads = Some(vec![]);
    state.their_have = Some(vec![sync::Have { last_sync: vec![], bloom: Default::default() }]);
    state.their_need = Some(vec![]);
    doc.generate_sync_message(&mut state).unwrap()
}

#[test]
fn two_stores_on_one_database_see_each_others_commits_once_told() {
    use cairn::automerge::transaction::Transactable;
    let pg = Postgres::start();
    let mut one = PgStore::open(&pg.url()).unwrap();
    let mut two = PgStore::open(&pg.url()).unwrap();
    let id = cairn::DocId::from_bytes([9; 16]);
    let mut source = cairn::automerge::Automerge::new();
    let mut tx = source.transaction();
    tx.put(cairn::automerge::ROOT, "n", 1).unwrap();
    tx.commit();
    assert_eq!(one.receive(&id, &mut sync::State::new(), everything(&source)).unwrap(), 1);
    assert_eq!(two.heads(&id).unwrap(), source.get_heads(), "a store loading a document reads it whole");
    let mut tx = source.transaction();
    tx.put(cairn::automerge::ROOT, "n", 2).unwrap();
    tx.commit();
    one.receive(&id, &mut sync::State::new(), everything(&source)).unwrap();
    assert_ne!(two.heads(&id).unwrap(), source.get_heads(), "not told yet: still what it loaded");
    let version = one.versions().of(&id).unwrap();
    assert_eq!(version, 2);
    assert!(two.versions().saw(&id, version), "two is behind version 2");
    assert!(!one.versions().saw(&id, version), "one holds version 2");
    assert_eq!(two.heads(&id).unwrap(), source.get_heads(), "told, it catches up");
    // A change stored through `two` from a state that lacks nothing: version 3, seen by one.
    let mut tx = source.transaction();
    tx.put(cairn::automerge::ROOT, "n", 3).unwrap();
    tx.commit();
    two.receive(&id, &mut sync::State::new(), everything(&source)).unwrap();
    assert_eq!(two.versions().of(&id), Some(3));
    assert!(one.versions().saw(&id, 3));
    assert_eq!(one.heads(&id).unwrap(), source.get_heads());
    // A store opened afresh (a restarted node) serves it all.
    let mut three = PgStore::open(&pg.url()).unwrap();
    assert_eq!(three.heads(&id).unwrap(), source.get_heads());
}

#[test]
fn an_actor_bound_through_one_node_is_refused_to_another_token_on_every_node() {
    let pg = Postgres::start();
    let mut one = PgStore::open(&pg.url()).unwrap();
    let mut two = PgStore::open(&pg.url()).unwrap();
    let actor = cairn::automerge::ActorId::random();
    one.bind(&actor, "token-a").unwrap();
    assert_eq!(two.owner(&actor).unwrap().as_deref(), Some("token-a"));
    // A node that had not seen the binding yet and binds it for another token loses the race.
    assert!(two.bind(&actor, "token-b").is_err(), "the first binding holds");
    two.bind(&actor, "token-a").unwrap();
    assert_eq!(one.owner(&actor).unwrap().as_deref(), Some("token-a"));
}

#[test]
fn a_database_with_a_newer_schema_is_refused_with_what_to_do() {
    let pg = Postgres::start();
    drop(PgStore::open(&pg.url()).unwrap());
    let mut db = postgres_client(&pg.url());
    db.batch_execute("UPDATE cairn_schema SET version = 99").unwrap();
    let err = PgStore::open(&pg.url()).unwrap_err().to_string();
    assert!(err.contains("newer than this build reads") && err.contains("upgrade Cairn"), "{err}");
}

#[test]
fn an_unreachable_store_is_a_clear_error() {
    let pg = Postgres::start();
    let url = pg.url();
    drop(pg);
    let err = PgStore::open(&url).unwrap_err().to_string();
    assert!(err.contains("PostgreSQL"), "{err}");
}

fn postgres_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// A `cairn-relay --store --bus` process, SIGKILLed on drop.
struct NodeProcess {
    child: std::process::Child,
    addr: SocketAddr,
}

impl NodeProcess {
    fn start(pg: &Postgres, nats: &Nats) -> NodeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--insecure-no-auth", "--store", &pg.url()])
            .args(["--bus", &nats.url()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = std::time::Instant::now() + CONVERGE;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "the node did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        NodeProcess { child, addr }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_node_killed_mid_stream_fail_over_and_nothing_acknowledged_is_lost() {
    let (pg, nats) = (Postgres::start(), Nats::start());
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (NodeProcess::start(&pg, &nats), NodeProcess::start(&pg, &nats));
    // Six replicas on the first node, failing over to the second; one reader on the second only.
    let replicas: Vec<_> = (0..6).map(|i| replica(dir.path(), &format!("w{i}"))).collect();
    let clients: Vec<_> = replicas
        .iter()
        .map(|r| {
            let mut o = options(first.addr);
            o.fallbacks = vec![format!("ws://{}", second.addr)];
            cairn_sync::SyncClient::spawn(r.clone(), o)
        })
        .collect();
    let reader = replica(dir.path(), "reader");
    let reader_client = connect(&reader, second.addr);
    let writing: Vec<_> = replicas
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let r = r.clone();
            tokio::spawn(async move {
                for n in 0..20 {
                    write(&r, vec![entity(&format!("w{i}-{n}"), "thing", &["x"])]).await;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            })
        })
        .collect();
    // Mid-stream: the first node dies without a word (SIGKILL).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    for w in writing {
        w.await.unwrap();
    }
    let mut all = replicas.clone();
    all.push(reader.clone());
    converge(&all, CONVERGE).await;
    assert_eq!(graph_of(&reader).len(), 6 * 20, "every write reached the reader through the second node");
    // Freshness names the node each writer now talks to, and only that one.
    let second_url = format!("ws://{}", second.addr);
    for (i, r) in replicas.iter().enumerate() {
        eventually(&format!("writer {i} synced with the second node"), CONVERGE, || {
            let peers = r.peers();
            peers.len() == 1
                && peers[0].peer == second_url
                && matches!(peers[0].freshness, cairn::Freshness::Synced { .. })
        })
        .await;
    }
    // What the first node acknowledged before it died is in the store: a replica that never
    // met either node's memory reads it all from a node started afresh.
    drop(second);
    let third = NodeProcess::start(&pg, &nats);
    let late = replica(dir.path(), "late");
    let late_client = connect(&late, third.addr);
    let mut everyone = all.clone();
    everyone.push(late.clone());
    converge(&everyone, CONVERGE).await;
    for c in clients {
        c.stop().await;
    }
    reader_client.stop().await;
    late_client.stop().await;
}

#[test]
fn a_list_of_relay_urls_is_the_first_with_the_rest_to_fail_over_to() {
    let o = cairn_sync::ClientOptions::for_relays("ws://a:1, ws://b:2,,ws://c:3 ");
    assert_eq!((o.url.as_str(), o.fallbacks), ("ws://a:1", vec!["ws://b:2".to_owned(), "ws://c:3".to_owned()]));
    let one = cairn_sync::ClientOptions::for_relays("ws://a:1");
    assert!(one.fallbacks.is_empty());
}
