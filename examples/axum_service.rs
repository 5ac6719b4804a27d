//! Run: `cargo run --example axum_service` — then `curl -X POST localhost:3000/notes/tea -d 'hot'`
//! and `curl localhost:3000/notes/tea`.
//!
//! A `Replica` embedded in an axum web service on a multi-threaded tokio runtime, with sync to a
//! relay running in the same runtime (set `CAIRN_RELAY=ws://127.0.0.1:7878` to turn it on). The
//! replica is synchronous and `Send + Sync`: handlers call it from `spawn_blocking`, there is no
//! second event loop to clash with, nothing bound to another runtime. `tests/axum_service.rs`
//! fires 1,000 concurrent requests at `app` and checks that nothing is lost.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cairn::{Op, Replica};

/// The service: `POST /notes/{topic}` records the body as an observation on the topic (creating
/// the topic on first use); `GET /notes/{topic}` returns its observations and freshness.
pub fn app(replica: Arc<Replica>) -> Router {
    Router::new().route("/notes/{topic}", get(read).post(write)).with_state(replica)
}

async fn write(
    State(replica): State<Arc<Replica>>,
    Path(topic): Path<String>,
    body: String,
) -> Result<StatusCode, (StatusCode, String)> {
    let ops = vec![Op::create_entity(topic.clone(), "topic", &[]), Op::add_observation(topic, body)];
    // SQLite work: off the async worker threads.
    tokio::task::spawn_blocking(move || replica.write(&ops))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            cairn::Error::Invalid(_) => (StatusCode::BAD_REQUEST, e.to_string()),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })?;
    Ok(StatusCode::CREATED)
}

async fn read(
    State(replica): State<Arc<Replica>>,
    Path(topic): Path<String>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let read = tokio::task::spawn_blocking(move || replica.open_nodes(&[topic]))
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let notes: Vec<String> =
        read.data.entities.iter().flat_map(|e| e.observations.iter().map(|o| o.text.clone())).collect();
    Ok(Json(serde_json::json!({ "notes": notes, "version": read.version, "freshness": read.freshness })))
}

#[allow(dead_code)] // the test includes this file for `app` only
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let replica = Arc::new(Replica::open("axum-service.db", "web@example")?);
    // Sync runs as a task in this same runtime, beside the web server.
    let _sync = std::env::var("CAIRN_RELAY")
        .ok()
        .map(|url| cairn_sync::SyncClient::spawn(replica.clone(), cairn_sync::ClientOptions::new(url)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    eprintln!("listening on http://127.0.0.1:3000");
    axum::serve(listener, app(replica)).await?;
    Ok(())
}
