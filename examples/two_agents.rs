//! Run: `cargo run --example two_agents`
//!
//! Two agents, each with its own replica, sync through a relay (started here on loopback). Each
//! writes; each sees the other's writes, reported as changes it has not seen yet. The replicas
//! are used from plain synchronous code; the relay and the sync clients run on a tokio runtime
//! the program owns (its worker threads never wait on SQLite).

#![allow(clippy::print_stdout)] // an example reports on stdout

use std::sync::Arc;
use std::time::Duration;

use cairn::{Op, Replica};
use cairn_sync::{ClientOptions, Relay, RelayConfig, RelayStore, SyncClient};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let _network = runtime.enter(); // the relay and the sync clients are spawned on it
    let dir = tempfile::tempdir()?;
    // A relay on a free loopback port, storing in a temporary directory.
    let relay_dir = dir.path().join("relay");
    let relay = Relay::start(
        RelayStore::open(&relay_dir, cairn::Durability::Full)?,
        // An example on loopback: no tokens. A deployed relay requires them (see the README).
        RelayConfig::new(cairn_sync::hub_config_for(&relay_dir), cairn_sync::Auth::InsecureNoAuth),
    )?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("ws://{}", listener.local_addr()?);
    tokio::spawn(relay.serve(listener, std::future::pending()));

    let alice = Arc::new(Replica::open(dir.path().join("alice.db"), "alice")?);
    let bob = Arc::new(Replica::open(dir.path().join("bob.db"), "bob")?);
    let clients = [
        SyncClient::spawn(alice.clone(), ClientOptions::new(&url)),
        SyncClient::spawn(bob.clone(), ClientOptions::new(&url)),
    ];
    bob.read_graph()?; // Bob's first look: from now on, reads report what others changed.

    alice.write(&[Op::create_entity("Tea", "drink", &["hot"])])?;
    while bob.status()?.entities == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    bob.write(&[Op::add_observation("Tea", "green")])?;
    while alice.status()?.observations < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    for (name, r) in [("alice", &alice), ("bob", &bob)] {
        let read = r.read_graph()?;
        let tea = &read.data.entities[0];
        let texts: Vec<&str> = tea.observations.iter().map(|o| o.text.as_str()).collect();
        println!("{name} sees Tea: {texts:?} ({:?}); unseen: {:?}", read.freshness, read.unseen.agents);
    }
    runtime.block_on(async {
        for c in clients {
            c.stop().await;
        }
    });
    Ok(())
}
