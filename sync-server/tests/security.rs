//! Access control, rule by rule, with real websocket clients on loopback: tokens (missing,
//! wrong, expired, revoked, other graph, read-only) and connections per token. Malformed input
//! and every other limit are in `hardening.rs`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::sync::wire::Message;
use cairn::{GraphDocs, GraphName, Replica};
use cairn_sync::tokens::Role;
use cairn_sync::{RelayStore, Tokens};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use common::attack::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_without_a_valid_token_are_refused_with_401() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(dir.path(), |_| {}).await;
    let good = token(&tokens, &["team"], Role::Write);
    assert!(raw(addr, None).await.unwrap_err().starts_with("401 no token"));
    assert!(raw(addr, Some("cairn_00000000_guess")).await.unwrap_err().starts_with("401 unknown token"));
    assert!(raw(addr, Some(&format!("{good}x"))).await.unwrap_err().starts_with("401"));
    assert!(raw(addr, Some("not-a-token")).await.unwrap_err().starts_with("401 malformed"));
    let (_, expired) = tokens.create(&["team".into()], Role::Write, Some(cairn::now_millis() - 1), None, 0).unwrap();
    assert!(raw(addr, Some(&expired)).await.unwrap_err().contains("expired"));
    // The good token gets in, by header or by query parameter.
    raw(addr, Some(&good)).await.unwrap();
    let (_ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/?token={good}")).await.unwrap();
    // And the refusals are counted.
    let metrics = http_get(addr, "/metrics").await;
    assert!(metrics.contains("cairn_relay_rejected_handshakes_total{reason=\"no_token\"} 1"), "{metrics}");
    assert!(metrics.contains("cairn_relay_rejected_handshakes_total{reason=\"bad_token\"} 4"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_closes_its_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(dir.path(), |_| {}).await;
    let graphs = vec!["default".to_string()];
    let (id, t) = tokens.create(&graphs, Role::Write, None, None, cairn::now_millis()).unwrap();
    let mut ws = raw(addr, Some(&t)).await.unwrap();
    handshake(&mut ws).await;
    // Revoked from another handle on the data file, as `cairn relay token revoke` does.
    Tokens::open(&RelayStore::file_in(dir.path())).unwrap().revoke(&id, cairn::now_millis()).unwrap();
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("revoked"), "{reason}");
    assert!(raw(addr, Some(&t)).await.unwrap_err().contains("revoked"));
    // A sync client with the revoked token says why it is not connected, and stops waiting for
    // a sync that cannot happen well before its timeout.
    let replica = Arc::new(Replica::open(dir.path().join("r.db"), "agent").unwrap());
    let c = client(&replica, addr, &t);
    let started = Instant::now();
    assert!(!c.wait_settled(WAIT).await);
    assert!(started.elapsed() < WAIT, "gave up early on a refused token");
    match c.last_error() {
        Some(cairn_sync::ConnectError::Unauthorized { status: 401, reason }) => {
            assert!(reason.contains("revoked"), "the relay's reason comes through: {reason}")
        }
        other => panic!("expected a refused token, got {other:?}"),
    }
    assert!(!c.is_connected());
    assert_eq!(c.pending().await.unwrap().changes, 0, "genesis is nobody's write: nothing is pending");
    replica.write(&[entity("E", "t", &[])]).unwrap();
    assert_eq!(c.pending().await.unwrap().changes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sees_only_its_graphs() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(&dir.path().join("relay"), |_| {}).await;
    let team = token(&tokens, &["team"], Role::Write);
    // A replica of "team" syncs; a replica of graph "default" with the same token gets nothing.
    let options = cairn::OpenOptions::new("writer".parse().unwrap()).graph("team".parse().unwrap());
    let writer = Arc::new(Replica::open_with(dir.path().join("w.db"), options).unwrap());
    let other = replica(dir.path(), "outsider");
    write(&writer, vec![entity("Secret", "thing", &[])]).await;
    let _c1 = client(&writer, addr, &team);
    let _c2 = client(&other, addr, &team);
    eventually("the team replica is synced", WAIT, || matches!(writer.freshness(), cairn::Freshness::Synced { .. }))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!matches!(other.freshness(), cairn::Freshness::Synced { .. }), "nothing of another graph is served");
    // At the protocol level: a document of another graph is answered as if it did not exist,
    // even though it exists on this relay.
    let other_graph = GraphDocs::of(&"default".parse::<GraphName>().unwrap());
    let team_docs = GraphDocs::of(&"team".parse::<GraphName>().unwrap());
    let admin = token(&tokens, &["*"], Role::Write);
    let mut full = raw(addr, Some(&admin)).await.unwrap();
    let relay_id = handshake(&mut full).await;
    // (Make "default" exist on the relay through the all-graphs token.)
    let seeded = replica(dir.path(), "seeder");
    let seeder = client(&seeded, addr, &admin);
    eventually("default exists on the relay", WAIT, || matches!(seeded.freshness(), cairn::Freshness::Synced { .. }))
        .await;
    seeder.stop().await;
    let mut ws = raw(addr, Some(&team)).await.unwrap();
    let relay_id2 = handshake(&mut ws).await;
    assert_eq!(relay_id, relay_id2);
    ws.send(sync_msg(&relay_id, other_graph.root, empty_sync())).await.unwrap();
    assert!(matches!(next(&mut ws).await.unwrap(), Message::DocUnavailable { doc, .. } if doc == other_graph.root));
    ws.send(sync_msg(&relay_id, team_docs.root, empty_sync())).await.unwrap();
    assert!(matches!(next(&mut ws).await.unwrap(), Message::Sync { .. }), "its own graph is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_tokens_changes_go_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(&dir.path().join("relay"), |_| {}).await;
    let writer_token = token(&tokens, &["default"], Role::Write);
    let reader_token = token(&tokens, &["default"], Role::Read);
    let writer = replica(dir.path(), "writer");
    let reader = replica(dir.path(), "reader");
    let witness = replica(dir.path(), "witness");
    write(&writer, vec![entity("Shared", "thing", &["from the writer"])]).await;
    write(&reader, vec![entity("Sneaky", "thing", &["from a reader"])]).await;
    let _w = client(&writer, addr, &writer_token);
    let r = client(&reader, addr, &reader_token);
    let _x = client(&witness, addr, &writer_token);
    // The reader receives the writer's changes...
    eventually("the reader got Shared", WAIT, || {
        reader.open_nodes(&["Shared".into()]).unwrap().data.entities.len() == 1
    })
    .await;
    eventually("the reader knows it is read-only", WAIT, || r.is_read_only()).await;
    assert!(r.wait_settled(WAIT).await, "a read-only client settles once it has pulled everything");
    // ...but its own change is stored nowhere and forwarded to no one.
    write(&writer, vec![observe("Shared", "later")]).await;
    eventually("the witness got the later write", WAIT, || witness.status().unwrap().observations == 2).await;
    assert!(witness.open_nodes(&["Sneaky".into()]).unwrap().data.entities.is_empty());
    assert!(writer.open_nodes(&["Sneaky".into()]).unwrap().data.entities.is_empty());
    assert!(r.pending().await.unwrap().changes > 0, "the reader's change stays pending, and says so");
    let newcomer = replica(dir.path(), "newcomer");
    let _n = client(&newcomer, addr, &writer_token);
    eventually("the newcomer caught up", WAIT, || newcomer.status().unwrap().entities == 1).await;
    assert!(newcomer.open_nodes(&["Sneaky".into()]).unwrap().data.entities.is_empty(), "nor stored on the relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_token_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(dir.path(), |c| c.max_connections_per_token = 2).await;
    let t = token(&tokens, &["default"], Role::Write);
    let a = raw(addr, Some(&t)).await.unwrap();
    let _b = raw(addr, Some(&t)).await.unwrap();
    assert!(raw(addr, Some(&t)).await.unwrap_err().starts_with("429"));
    drop(a);
    eventually_async("a slot frees when a connection ends", || async { raw(addr, Some(&t)).await.is_ok() }).await;
}
