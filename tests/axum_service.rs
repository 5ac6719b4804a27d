//! The axum example under load: 1,000 concurrent requests on a multi-threaded runtime, with a
//! sync client to a relay running in the same runtime. No request fails, nothing is lost, and
//! the relay ends up with everything.

#[path = "../examples/axum_service.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::{Durability, OpenOptions, Replica};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_lose_nothing() {
    const REQUESTS: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    // A relay and the service's sync client, in this same runtime.
    let relay_dir = dir.path().join("relay");
    let store = cairn_sync::RelayStore::open(&relay_dir, Durability::Normal).unwrap();
    let config = cairn_sync::RelayConfig::new(cairn_sync::hub_config_for(&relay_dir), cairn_sync::Auth::InsecureNoAuth);
    let relay = cairn_sync::Relay::start(store, config).unwrap();
    let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay_listener.local_addr().unwrap();
    tokio::spawn(relay.serve(relay_listener, std::future::pending()));
    let options = OpenOptions::new("web@test".parse().unwrap()).durability(Durability::Normal);
    let replica = Arc::new(Replica::open_with(dir.path().join("service.db"), options).unwrap());
    let sync =
        cairn_sync::SyncClient::spawn(replica.clone(), cairn_sync::ClientOptions::new(format!("ws://{relay_addr}")));
    // The service.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, example::app(replica)).await });

    // 1,000 requests at once, over plain HTTP/1.1 connections, spread over 10 topics.
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        tasks.push(tokio::spawn(async move {
            let body = format!("note {i}");
            let request = format!(
                "POST /notes/topic{} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                i % 10,
                body.len()
            );
            http(addr, &request).await
        }));
    }
    for t in tasks {
        let response = t.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    }
    // Every note is there.
    let mut total = 0;
    for topic in 0..10 {
        let response =
            http(addr, &format!("GET /notes/topic{topic} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")).await;
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        total += json["notes"].as_array().unwrap().len();
    }
    assert_eq!(total, REQUESTS);
    // And the relay has all of it: a fresh replica syncing from it sees every note.
    let check =
        Arc::new(Replica::open_with(dir.path().join("check.db"), OpenOptions::new("check".parse().unwrap())).unwrap());
    let check_sync =
        cairn_sync::SyncClient::spawn(check.clone(), cairn_sync::ClientOptions::new(format!("ws://{relay_addr}")));
    let deadline = Instant::now() + Duration::from_secs(60);
    while check.status().unwrap().observations < REQUESTS as u64 {
        assert!(Instant::now() < deadline, "the relay did not get every note");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check_sync.stop().await;
    sync.stop().await;
}

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}
