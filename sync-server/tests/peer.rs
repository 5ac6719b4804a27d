//! A listening replica (`cairn_sync::listen`, what `--listen` runs) keeps the relay's door: a
//! connection needs a token from the replica's peer tokens file, and a schema-breaking change
//! from a peer with a write token is refused with the rule it broke, stored nowhere and passed
//! to no one, while an honest peer keeps syncing. The attack is built with the stock JavaScript
//! packages (`clients/js/attack.mjs`), as in `integrity.rs`; it needs Node.js and `npm install
//! --prefix clients/js`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn::sync::{ReplicaDocs, SyncDocs};
use cairn::{DocId, Durability, OpenOptions, Replica};
use cairn_sync::tokens::Role;
use cairn_sync::{PeerAuth, Tokens};
use serde_json::Value;

use common::attack::*;
use common::*;

const GRAPH: &str = "team";
const CONVERGE: Duration = Duration::from_secs(60);

fn team_replica(path: &Path, agent: &str) -> Arc<Replica> {
    let options = OpenOptions::new(agent.parse().unwrap()).graph(GRAPH.parse().unwrap()).durability(Durability::Normal);
    Arc::new(Replica::open_with(path, options).unwrap())
}

/// Runs `node attack.mjs ws://ADDR TOKEN team ATTACK`; its one-line report.
async fn attack(addr: SocketAddr, token: &str, which: &str) -> Value {
    let args = vec![format!("ws://{addr}"), token.to_owned(), GRAPH.to_owned(), which.to_owned()];
    let stdout = node("attack.mjs", args).await;
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_replica_refuses_no_token_and_a_schema_breaking_change_from_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    let host = team_replica(&dir.path().join("host.db"), "host");
    let guest = team_replica(&dir.path().join("guest.db"), "guest");
    write(&host, vec![entity("Target", "place", &["host was here"])]).await;
    // Step 1: the host listens with the tokens beside its database.
    let tokens = Tokens::open(&cairn_sync::peer_tokens_file(host.path())).unwrap();
    let guest_token = token(&tokens, &[GRAPH], Role::Write);
    let mallory_token = token(&tokens, &[GRAPH], Role::Write);
    let listening = cairn_sync::listen(host.clone(), "127.0.0.1:0".parse().unwrap(), PeerAuth::Tokens).await.unwrap();
    let addr = listening.local_addr();
    // Step 2: no token, or one the host never made: refused at the upgrade.
    for presented in [None, Some("cairn_00000000_nope")] {
        match raw(addr, presented).await {
            Ok(_) => panic!("a connection with token {presented:?} was let in"),
            Err(refused) => assert!(refused.starts_with("401"), "{refused}"),
        }
    }
    // Step 3: an honest guest syncs with its token.
    let guest_client = client(&guest, addr, &guest_token);
    converge(&[host.clone(), guest.clone()], CONVERGE).await;
    // Step 4: Mallory, with a write token, replaces a shard's entities map.
    let report = attack(addr, &mallory_token, "entities-map").await;
    eprintln!("mallory: {report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert_eq!(report["outcome"], "refused", "{report}");
    assert!(error.contains("rule \"root\"") || error.contains("rule \"object\""), "{report}");
    // Step 5: the host and the guest keep writing and converge, and neither holds what she sent.
    write(&host, vec![observe("Target", "after the attack (host)")]).await;
    write(&guest, vec![observe("Target", "after the attack (guest)")]).await;
    converge(&[host.clone(), guest.clone()], CONVERGE).await;
    let target = host.open_nodes(&["Target".to_owned()]).unwrap().data.entities;
    assert_eq!(target[0].observations.len(), 3, "{target:?}");
    for change in report["changes"].as_array().unwrap() {
        let doc: DocId = change["doc"].as_str().unwrap().parse().unwrap();
        let hash = change["hash"].as_str().unwrap().parse().unwrap();
        for r in [&host, &guest] {
            assert!(!ReplicaDocs::new(r.clone()).has_all(&doc, &[hash]).unwrap(), "{} holds {hash}", r.agent());
        }
    }
    guest_client.stop().await;
    listening.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_no_auth_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let host = team_replica(&dir.path().join("host.db"), "host");
    let err =
        cairn_sync::listen(host.clone(), "0.0.0.0:0".parse().unwrap(), PeerAuth::InsecureNoAuth).await.unwrap_err();
    assert!(matches!(err, cairn_sync::ListenError::InsecureNotLoopback(_)), "{err}");
    let open = cairn_sync::listen(host, "127.0.0.1:0".parse().unwrap(), PeerAuth::InsecureNoAuth).await.unwrap();
    assert!(raw(open.local_addr(), None).await.is_ok(), "loopback without a token is let in");
    open.stop().await;
}
