//! Run: `cargo run --example offline_agent`
//!
//! An agent works with no relay at all, and another keeps writing meanwhile; later the first
//! connects, and both end with the union of everything. Offline writes need nothing special:
//! they are simply what the replica has and the relay lacks.

#![allow(clippy::print_stdout)] // an example reports on stdout

use std::sync::Arc;
use std::time::Duration;

use cairn::{Freshness, Op, Replica};
use cairn_sync::{ClientOptions, Relay, RelayConfig, RelayStore, SyncClient};

fn note(entity: &str, text: &str) -> Op {
    Op::add_observation(entity, text)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The replicas are used from plain code; the network side runs on a runtime of its own.
    let runtime = tokio::runtime::Runtime::new()?;
    let _network = runtime.enter();
    let dir = tempfile::tempdir()?;
    let relay_dir = dir.path().join("relay");
    let relay = Relay::start(
        RelayStore::open(&relay_dir, cairn::Durability::Full)?,
        // An example on loopback: no tokens. A deployed relay requires them (see the README).
        RelayConfig::new(cairn_sync::hub_config_for(&relay_dir), cairn_sync::Auth::InsecureNoAuth),
    )?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("ws://{}", listener.local_addr()?);
    tokio::spawn(relay.serve(listener, std::future::pending()));

    // The office agent is online; the field agent is not (it has no relay yet: `local`).
    let office = Arc::new(Replica::open(dir.path().join("office.db"), "office")?);
    let field = Arc::new(Replica::open(dir.path().join("field.db"), "field")?);
    let office_sync = SyncClient::spawn(office.clone(), ClientOptions::new(&url));
    let site = Op::create_entity("Site 7", "site", &[]);
    office.write(std::slice::from_ref(&site))?;
    field.write(&[site])?; // both create it: they will merge into one entity
    field.write(&[note("Site 7", "north wall cracked"), note("Site 7", "water on floor")])?;
    office.write(&[note("Site 7", "inspection booked")])?;
    println!("field, offline: {:?}, {} observations", field.freshness(), field.status()?.observations);

    // Back in range: connect, and everything merges.
    let field_sync = SyncClient::spawn(field.clone(), ClientOptions::new(&url));
    while field.heads()? != office.heads()? || !matches!(field.freshness(), Freshness::Synced { .. }) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let site = &field.read_graph()?.data.entities[0];
    let texts: Vec<&str> = site.observations.iter().map(|o| o.text.as_str()).collect();
    println!("after reconnecting, both hold one {:?} with {texts:?}", site.name);
    runtime.block_on(async {
        field_sync.stop().await;
        office_sync.stop().await;
    });
    Ok(())
}
