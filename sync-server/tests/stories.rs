//! Sync stories over a real relay on 127.0.0.1 and real websocket connections.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn::Freshness;
use common::*;

const CONVERGE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_writing_concurrently_converge() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _relay) = relay(&dir.path().join("relay")).await;
    // Step 1: Alice, Bob and Carol connect to the relay.
    let replicas: Vec<_> = ["alice", "bob", "carol"].iter().map(|n| replica(dir.path(), n)).collect();
    let clients: Vec<_> = replicas.iter().map(|r| connect(r, addr)).collect();
    // Step 2: all three write at once, including to one shared entity created by each.
    let mut writers = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        let r = r.clone();
        writers.push(tokio::spawn(async move {
            write(&r, vec![entity("Shared", "thing", &[&format!("from {i}")])]).await;
            for n in 0..30 {
                write(&r, vec![entity(&format!("r{i}-{n}"), "thing", &["x"]), observe("Shared", &format!("{i}/{n}"))])
                    .await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    // Step 3: every replica ends with the same graph, holding everyone's writes.
    converge(&replicas, CONVERGE).await;
    let g = replicas[0].read_graph().unwrap().data;
    assert_eq!(g.entities.len(), 1 + 3 * 30);
    let shared = g.entities.iter().find(|e| e.name == "Shared").unwrap();
    assert_eq!(shared.observations.len(), 3 + 3 * 30);
    // And each reports being in sync with the relay.
    for r in &replicas {
        eventually("synced", Duration::from_secs(10), || matches!(r.freshness(), Freshness::Synced { .. })).await;
    }
    for c in clients {
        c.stop().await;
    }
    assert_eq!(replicas[0].freshness(), Freshness::Local, "detached replicas read as local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_offline_for_a_hundred_writes_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _relay) = relay(&dir.path().join("relay")).await;
    let online = replica(dir.path(), "online");
    let roamer = replica(dir.path(), "roamer");
    let online_client = connect(&online, addr);
    // Step 1: the roamer works offline (no client at all) for a hundred writes...
    for n in 0..100 {
        write(&roamer, vec![entity(&format!("offline-{n}"), "thing", &["written on a plane"])]).await;
    }
    // ...while the online replica keeps writing through the relay.
    for n in 0..50 {
        write(&online, vec![entity(&format!("online-{n}"), "thing", &[])]).await;
    }
    // Step 2: the roamer reconnects; both sides converge.
    let roamer_client = connect(&roamer, addr);
    converge(&[online.clone(), roamer.clone()], CONVERGE).await;
    assert_eq!(online.read_graph().unwrap().data.entities.len(), 150);
    roamer_client.stop().await;
    online_client.stop().await;
}

fn relay_process(addr: &str, data: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
        .args(["--listen", addr, "--data", data.to_str().unwrap(), "--insecure-no-auth"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    // A port picked by the OS, then handed to the relay process.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut relay = relay_process(&addr.to_string(), &data);
    let a = replica(dir.path(), "a");
    let b = replica(dir.path(), "b");
    let ca = connect(&a, addr);
    let cb = connect(&b, addr);
    // Step 1: both write while the relay runs; midway the relay is SIGKILLed and restarted
    // from its data directory, and writing goes on throughout.
    for n in 0..60 {
        if n == 20 {
            relay.kill().unwrap();
            relay.wait().unwrap();
        }
        if n == 40 {
            relay = relay_process(&addr.to_string(), &data);
        }
        write(&a, vec![entity(&format!("a-{n}"), "thing", &[])]).await;
        write(&b, vec![entity(&format!("b-{n}"), "thing", &[])]).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Step 2: everything anyone wrote reaches everyone.
    converge(&[a.clone(), b.clone()], CONVERGE).await;
    assert_eq!(a.read_graph().unwrap().data.entities.len(), 120);
    // Step 3: a newcomer gets it all from the restarted relay alone.
    ca.stop().await;
    cb.stop().await;
    let c = replica(dir.path(), "c");
    let cc = connect(&c, addr);
    eventually("newcomer caught up", CONVERGE, || c.read_graph().unwrap().data.entities.len() == 120).await;
    cc.stop().await;
    relay.kill().unwrap();
    relay.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sync_peer_to_peer() {
    let dir = tempfile::tempdir().unwrap();
    let host = replica(dir.path(), "host");
    let guest = replica(dir.path(), "guest");
    // The host serves its own database: no relay anywhere.
    let config = cairn_sync::RelayConfig::new(
        cairn_sync::HubConfig::new("host", cairn::sync::ReplicaDocs::new(host.clone()).storage_id()),
        cairn_sync::Auth::InsecureNoAuth,
    );
    let relay = cairn_sync::serve_replica(host.clone(), config).unwrap();
    let (addr, _stop) = serve(relay).await;
    write(&host, vec![entity("Tea", "thing", &["from host"])]).await;
    let client = connect(&guest, addr);
    eventually("guest sees Tea", CONVERGE, || !guest.read_graph().unwrap().data.entities.is_empty()).await;
    write(&guest, vec![observe("Tea", "from guest")]).await;
    // The host's own later writes reach the guest too.
    write(&host, vec![entity("Cup", "thing", &[])]).await;
    converge(&[host.clone(), guest.clone()], CONVERGE).await;
    let g = host.read_graph().unwrap().data;
    assert_eq!(g.entities.len(), 2);
    assert_eq!(g.entities.iter().find(|e| e.name == "Tea").unwrap().observations.len(), 2);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_replicas_times_a_hundred_writes_converge() {
    const REPLICAS: usize = 50;
    const WRITES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let (addr, _relay) = relay(&dir.path().join("relay")).await;
    let replicas: Vec<_> = (0..REPLICAS).map(|i| replica(dir.path(), &format!("agent{i}"))).collect();
    let clients: Vec<_> = replicas.iter().map(|r| connect(r, addr)).collect();
    let mut writers = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        let r = r.clone();
        writers.push(tokio::task::spawn_blocking(move || {
            for n in 0..WRITES {
                r.write(&[entity(&format!("a{i}-{n}"), "t", &[])]).unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    converge(&replicas, Duration::from_secs(240)).await;
    assert_eq!(replicas[0].read_graph().unwrap().data.entities.len(), REPLICAS * WRITES);
    for c in clients {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_the_relays_message_limit_syncs_over_several_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _relay) = relay(&dir.path().join("relay")).await;
    let writer = replica(dir.path(), "writer");
    let reader = replica(dir.path(), "reader");
    // Step 1: offline, the writer records three 6 MiB observations on one entity: 18 MiB of
    // incompressible text in one shard, more than the relay's 16 MiB message limit. (Before
    // sync messages were bounded, Automerge put all of it in one message, which the relay
    // refused, on every reconnection.)
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut text = |n: usize| -> String {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + (seed % 26) as u8)
            })
            .collect()
    };
    write(&writer, vec![entity("Archive", "document", &[])]).await;
    let pages: Vec<String> = (0..3).map(|_| text(6 << 20)).collect();
    for page in &pages {
        write(&writer, vec![observe("Archive", page)]).await;
    }
    // Step 2: both connect; the reader ends up with every page.
    let clients = [connect(&writer, addr), connect(&reader, addr)];
    converge(&[writer.clone(), reader.clone()], Duration::from_secs(120)).await;
    let archive = &reader.read_graph().unwrap().data.entities[0];
    let got: Vec<&str> = archive.observations.iter().map(|o| o.text.as_str()).collect();
    assert_eq!(got.len(), 3);
    for page in &pages {
        assert!(got.contains(&page.as_str()), "a page is missing");
    }
    for c in clients {
        c.stop().await;
    }
}
