//! Freshness and conditional writes through a real relay on loopback: what a replica reports
//! when peers change things, when it is offline, and when changes are announced but held back.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn::sync::wire::Message;
use cairn::{Error, Freshness, Op};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_write_is_reported_as_unseen_on_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _relay) = relay(&dir.path().join("relay")).await;
    let (a, b, c) = (replica(dir.path(), "a"), replica(dir.path(), "b"), replica(dir.path(), "c"));
    let clients = [connect(&a, addr), connect(&b, addr), connect(&c, addr)];
    // Step 1: B has read once (so it has a cursor) and is synced.
    b.read_graph().unwrap();
    eventually("b synced", WAIT, || matches!(b.freshness(), Freshness::Synced { .. })).await;
    // Step 2: A writes while B is connected.
    write(&a, vec![entity("Plan", "thing", &["step 1"])]).await;
    eventually("b has the plan", WAIT, || b.status().unwrap().entities == 1).await;
    // (The change is readable a moment before the sync step that applied it marks B in step.)
    eventually("b is in step again", WAIT, || matches!(b.freshness(), Freshness::Synced { .. })).await;
    // Step 3: B's next read reports it, by A, on Plan — and only once.
    let read = b.read_graph().unwrap();
    assert_eq!(read.unseen.agents, ["a"]);
    assert_eq!(read.unseen.entities, ["Plan"]);
    assert!(matches!(read.freshness, Freshness::Synced { .. }), "{:?}", read.freshness);
    assert!(b.read_graph().unwrap().unseen.is_empty());
    // C's own write is not "unseen" to C.
    eventually("c has the plan", WAIT, || c.status().unwrap().entities == 1).await;
    write(&c, vec![observe("Plan", "c's step")]).await;
    eventually("c has its own", WAIT, || c.status().unwrap().observations == 2).await;
    assert!(c.read_graph().unwrap().unseen.agents.iter().all(|who| who != "c"));
    for cl in clients {
        cl.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_with_the_right_times_then_synced_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let (addr, stop) = relay(&data).await;
    let b = replica(dir.path(), "b");
    assert_eq!(b.freshness(), Freshness::Local, "no relay configured");
    let client = connect(&b, addr);
    eventually("synced", WAIT, || matches!(b.freshness(), Freshness::Synced { .. })).await;
    let Freshness::Synced { as_of: synced_at } = b.freshness() else { unreachable!() };
    // Step 1: the relay goes away.
    let before_stop = cairn::now_millis();
    drop(stop);
    eventually("offline", WAIT, || matches!(b.freshness(), Freshness::Offline { .. })).await;
    let Freshness::Offline { since, last_sync } = b.freshness() else { unreachable!() };
    assert!(since >= before_stop, "offline since {since}, stopped at {before_stop}");
    assert!(since <= cairn::now_millis());
    assert_eq!(last_sync.map(|t| t >= synced_at), Some(true), "last sync {last_sync:?} vs {synced_at}");
    // Writes keep working offline, and reads say so.
    write(&b, vec![entity("Offline note", "thing", &[])]).await;
    assert!(matches!(b.read_graph().unwrap().freshness, Freshness::Offline { .. }));
    // Step 2: the relay comes back on the same address; B reconnects and is synced again.
    // The stopped relay releases its data directory once its hub has closed storage.
    let deadline = std::time::Instant::now() + WAIT;
    let store = loop {
        match cairn_sync::RelayStore::open(&data, cairn::Durability::Normal) {
            Ok(store) => break store,
            Err(cairn_sync::RelayError::InUse(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("the relay's storage did not reopen: {e}"),
        }
    };
    let config = cairn_sync::RelayConfig::new(cairn_sync::hub_config_for(&data), cairn_sync::Auth::InsecureNoAuth);
    let relay = cairn_sync::Relay::start(store, config).unwrap();
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(relay.serve(listener, async move {
        let _ = stop_rx.await;
    }));
    eventually("synced again", WAIT, || matches!(b.freshness(), Freshness::Synced { as_of } if as_of > since)).await;
    client.stop().await;
    drop(stop_tx);
}

/// A websocket proxy between a client and the relay that can hold back `sync` messages from
/// the relay while letting everything else (head announcements included) through.
async fn holding_proxy(relay: SocketAddr, hold: Arc<AtomicBool>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let hold = hold.clone();
            tokio::spawn(async move {
                let Ok(client) = tokio_tungstenite::accept_async(tcp).await else { return };
                let Ok((upstream, _)) = tokio_tungstenite::connect_async(format!("ws://{relay}")).await else { return };
                let (mut client_tx, mut client_rx) = client.split();
                let (mut up_tx, mut up_rx) = upstream.split();
                let mut held: Vec<WsMessage> = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                loop {
                    tokio::select! {
                        m = client_rx.next() => match m {
                            Some(Ok(m)) => if up_tx.send(m).await.is_err() { return },
                            _ => return,
                        },
                        m = up_rx.next() => match m {
                            Some(Ok(WsMessage::Binary(bytes))) => {
                                let is_sync = matches!(Message::decode(&bytes), Ok(Message::Sync { .. }));
                                if is_sync && hold.load(Ordering::SeqCst) {
                                    held.push(WsMessage::Binary(bytes));
                                } else if client_tx.send(WsMessage::Binary(bytes)).await.is_err() {
                                    return;
                                }
                            }
                            Some(Ok(m)) => if client_tx.send(m).await.is_err() { return },
                            _ => return,
                        },
                        _ = tick.tick() => {
                            if !hold.load(Ordering::SeqCst) {
                                for m in held.drain(..) {
                                    if client_tx.send(m).await.is_err() { return }
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_when_heads_arrive_before_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (relay_addr, _relay) = relay(&dir.path().join("relay")).await;
    let hold = Arc::new(AtomicBool::new(false));
    let proxy = holding_proxy(relay_addr, hold.clone()).await;
    let a = replica(dir.path(), "a");
    let b = replica(dir.path(), "b");
    let ca = connect(&a, relay_addr);
    let cb = connect(&b, proxy);
    eventually("b synced", WAIT, || matches!(b.freshness(), Freshness::Synced { .. })).await;
    // Step 1: the proxy starts holding the relay's sync messages to B; A writes.
    hold.store(true, Ordering::SeqCst);
    let before = cairn::now_millis();
    write(&a, vec![entity("Held", "thing", &["back"])]).await;
    // Step 2: the relay's head announcement gets through: B knows it is behind, though it does
    // not have the change yet.
    eventually("b behind", WAIT, || matches!(b.freshness(), Freshness::Behind { .. })).await;
    let read = b.read_graph().unwrap();
    let Freshness::Behind { since } = read.freshness else { panic!("{:?}", read.freshness) };
    assert!(since >= before);
    assert!(read.data.entities.is_empty(), "the change itself is still held back");
    // Step 3: release; B catches up and is synced.
    hold.store(false, Ordering::SeqCst);
    eventually("b has it", WAIT, || b.status().unwrap().entities == 1).await;
    eventually("b synced again", WAIT, || matches!(b.freshness(), Freshness::Synced { .. })).await;
    ca.stop().await;
    cb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_see_what_peers_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _relay) = relay(&dir.path().join("relay")).await;
    let (a, b) = (replica(dir.path(), "a"), replica(dir.path(), "b"));
    write(&a, vec![entity("Plan", "thing", &["v1"]), entity("Notes", "thing", &[])]).await;
    let clients = [connect(&a, addr), connect(&b, addr)];
    converge(&[a.clone(), b.clone()], WAIT).await;
    let seen = a.read_graph().unwrap().version;
    // Accepted when nothing relevant changed.
    let receipt = a.write_if(&[observe("Plan", "v2")], seen, &["Plan".into()]).unwrap();
    converge(&[a.clone(), b.clone()], WAIT).await;
    // A peer touches an unrelated entity: still accepted.
    let seen = a.read_graph().unwrap().version;
    assert!(receipt.version.seq() <= seen.seq());
    write(&b, vec![observe("Notes", "unrelated")]).await;
    converge(&[a.clone(), b.clone()], WAIT).await;
    a.write_if(&[observe("Plan", "v3")], seen, &["Plan".into()]).unwrap();
    // A peer touches the plan: refused, listing the peer's change, and nothing written.
    let seen = a.read_graph().unwrap().version;
    write(&b, vec![observe("Plan", "b's edit")]).await;
    converge(&[a.clone(), b.clone()], WAIT).await;
    let before = a.status().unwrap().observations;
    let err = a.write_if(&[Op::delete_entity("Plan")], seen, &["Plan".into()]).unwrap_err();
    let Error::Conflict { changes, .. } = err else { panic!("{err:?}") };
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].agent.as_str(), changes[0].entity.as_str()), ("b", "Plan"));
    assert_eq!(a.status().unwrap().observations, before);
    for c in clients {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_wait_for_change_wakes_on_a_peers_write() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _relay) = relay(&dir.path().join("relay")).await;
    let (a, b) = (replica(dir.path(), "a"), replica(dir.path(), "b"));
    let clients = [connect(&a, addr), connect(&b, addr)];
    converge(&[a.clone(), b.clone()], WAIT).await;
    let since = b.read_graph().unwrap().version;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { cairn_sync::wait_for_change(&b, since, WAIT).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(&a, vec![entity("Ping", "thing", &[])]).await;
    let changes = waiter.await.unwrap().data;
    assert!(changes.iter().any(|c| c.entity == "Ping" && c.agent == "a"), "{changes:?}");
    // Nothing new: the wait times out with nothing.
    let since = b.read_graph().unwrap().version;
    assert!(cairn_sync::wait_for_change(&b, since, Duration::from_millis(200)).await.unwrap().data.is_empty());
    for c in clients {
        c.stop().await;
    }
}
