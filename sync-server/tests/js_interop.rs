//! Interoperability with the stock JavaScript automerge-repo packages (installed by `.ci/run`
//! with `npm install --prefix clients/js`): a Node client joins a graph on the Cairn relay, Rust
//! replicas sync through the stock automerge-repo sync server, and the stock packages read the
//! golden fixtures (`tests/fixtures/golden`, checked on the Rust side by `tests/golden.rs`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn::What;
use common::*;

#[test]
fn the_stock_javascript_packages_read_the_golden_fixtures_as_expected() {
    let js = js_dir();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden");
    let out = Command::new("node")
        .arg(js.join("golden.mjs"))
        .arg(&fixtures)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run `node`: install Node.js (the interop tests need it) and put it on PATH");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "golden.mjs failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "golden: ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_javascript_client_reads_and_writes_a_graph_on_the_relay() {
    let js = js_dir();
    let dir = tempfile::tempdir().unwrap();
    let (addr, _relay) = relay(&dir.path().join("relay")).await;
    // Step 1: a Rust agent writes, and a second Rust replica proves the relay holds it.
    let rust = replica(dir.path(), "rust-agent");
    write(&rust, vec![entity("Tea", "thing", &["hot", "green"]), entity("Cup", "thing", &[])]).await;
    let observer = replica(dir.path(), "observer");
    let clients = [connect(&rust, addr), connect(&observer, addr)];
    converge(&[rust.clone(), observer.clone()], Duration::from_secs(30)).await;
    // Step 2: a Node agent with stock automerge-repo reads the graph and writes an entity.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(js.join("interop.mjs"))
            .args([&format!("ws://{addr}"), "default", "js-agent"])
            .stdin(Stdio::null())
            .output()
            .expect("node is installed")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(seen["entities"]["Tea"]["type"], "thing");
    let mut tea: Vec<&str> =
        seen["entities"]["Tea"]["observations"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    tea.sort();
    assert_eq!(tea, ["green", "hot"]);
    assert!(seen["entities"]["Cup"].is_object());
    // Step 3: the Rust replica sees the JavaScript agent's entity, attributed to it.
    eventually("the Rust replica sees FromJS", Duration::from_secs(20), || {
        rust.open_nodes(&["FromJS".into()]).unwrap().data.entities.len() == 1
    })
    .await;
    let g = rust.open_nodes(&["FromJS".into()]).unwrap().data;
    assert_eq!(g.entities[0].entity_type, "js-thing");
    assert_eq!(g.entities[0].observations[0].text, "written by stock automerge-repo");
    let history = rust.history("FromJS").unwrap().data;
    assert!(
        history.iter().any(|c| c.agent == "js-agent" && c.what == What::EntitySet { entity_type: "js-thing".into() }),
        "{history:?}"
    );
    for c in clients {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_replicas_sync_through_the_stock_automerge_repo_sync_server() {
    let js = js_dir();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new("node")
        .arg(js.join("node_modules/@automerge/automerge-repo-sync-server/src/index.js"))
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.path().join("stock-server"))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node is installed");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the stock server listens", Duration::from_secs(20), || std::net::TcpStream::connect(addr).is_ok())
        .await;
    let a = replica(dir.path(), "a");
    let b = replica(dir.path(), "b");
    write(&a, vec![entity("FromA", "thing", &["a"])]).await;
    write(&b, vec![entity("FromB", "thing", &["b"])]).await;
    let clients = [connect(&a, addr), connect(&b, addr)];
    converge(&[a.clone(), b.clone()], Duration::from_secs(30)).await;
    write(&a, vec![observe("FromB", "a was here")]).await;
    converge(&[a.clone(), b.clone()], Duration::from_secs(30)).await;
    let g = b.read_graph().unwrap().data;
    assert_eq!(g.entities.len(), 2);
    assert_eq!(g.entities.iter().find(|e| e.name == "FromB").unwrap().observations.len(), 2);
    for c in clients {
        c.stop().await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
