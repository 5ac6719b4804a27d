//! # cairn-sync: the relay and the sync client
//!
//! Cairn replicas sync through a relay that speaks the automerge-repo websocket protocol, so a
//! stock `@automerge/automerge-repo` client can join too. This crate is the network edge around
//! the core's sans-IO protocol code:
//!
//! * [`Hub`]: the relay's routing core, a pure state machine over [`cairn::sync::SyncDocs`];
//! * [`RelayStore`] and [`Tokens`]: the relay's storage (SQLite by default, behind
//!   [`cairn::sync::SyncDocs`] and [`TokenStore`]), persisting every change before the hub
//!   forwards or acknowledges it;
//! * [`Relay`]: the axum/tokio server around a hub (websocket at `/`, `/healthz`);
//! * [`SyncClient`]: keeps a [`cairn::Replica`] in sync from a background task.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cairn_sync::{Auth, ClientOptions, Relay, RelayConfig, RelayStore, SyncClient, Tokens};
//!
//! // A relay on loopback, storing in ./relay-data; connections must present a token that
//! // `cairn relay token create --data relay-data ...` issued.
//! let data = std::path::Path::new("relay-data");
//! let store = RelayStore::open(data, cairn::Durability::Full)?;
//! let auth = Auth::Tokens(Tokens::open(&RelayStore::file_in(data))?);
//! let relay = Relay::start(store, RelayConfig::new(cairn_sync::hub_config_for(data), auth))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7878").await?;
//! tokio::spawn(relay.serve(listener, std::future::pending()));
//!
//! // An agent's replica, synced through it.
//! let replica = Arc::new(cairn::Replica::open("agent.db", "planner@laptop")?);
//! let options = ClientOptions::new("ws://127.0.0.1:7878").token(Some("TOKEN".into()));
//! let client = SyncClient::spawn(replica.clone(), options);
//! // ... read and write `replica` as usual; reads now report `synced`, `behind` or `offline`.
//! client.stop().await;
//! # Ok(()) }
//! ```

mod backoff;
mod client;
mod cluster;
mod connection;
pub mod hub;
mod metrics;
mod peer;
mod server;
mod storage;
pub mod tls;
pub mod tokens;

use std::path::Path;
use std::sync::Arc;

pub use client::{ClientOptions, ConnectError, Pending, SyncClient, Traffic, redacted_url};
pub use cluster::ClusterOptions;
pub use hub::{Access, DocScope, Hub, HubConfig};
pub use metrics::Metrics;
pub use peer::{ListenError, Listening, PeerAuth, listen, peer_tokens_file};
pub use server::{Auth, Relay, RelayConfig, StartError};
pub use storage::{
    Committed, DataDirInUse, PgSchemaError, PgStore, PgTokens, RelayStore, SqliteTokens, StorageError, TokenRecord,
    TokenStore, Versions,
};
pub use tokens::{Role, TokenError, TokenInfo, Tokens};

/// The relay's identity for a data directory: its storage id is kept in the directory, so that
/// peers that remember what this relay holds are still right after a restart.
pub fn hub_config_for(dir: &Path) -> HubConfig {
    let file = dir.join("storage-id");
    let storage_id = match std::fs::read_to_string(&file) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => {
            let id = format!("cairn-relay-{}", cairn::automerge::ActorId::random().to_hex_string());
            if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&file, &id)) {
                tracing::warn!(error = %e, "could not save the relay's storage id; it will change on restart");
            }
            id
        }
    };
    HubConfig::new(storage_id.clone(), storage_id)
}

/// Serves a replica's own graph to peers (peer-to-peer, no separate relay): the same hub, with
/// the replica as its storage. The replica's own writes are offered to connected peers as they
/// happen.
pub fn serve_replica(replica: Arc<cairn::Replica>, config: RelayConfig) -> Result<Relay, StartError> {
    // Actor bindings live for the life of the process: a serving replica has no token store.
    let relay = Relay::start(hub::InMemoryBook::new(cairn::sync::ReplicaDocs::new(replica.clone())), config)?;
    // The subscription holds the hub's inbox weakly, so it keeps nothing alive; the relay keeps
    // the subscription for as long as any handle to it exists.
    let commands = relay.downgrade_notifier();
    let subscription = replica.subscribe(move |_| commands.notify_docs_changed());
    Ok(relay.keeping(subscription))
}

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Its storage would not open.
    #[error("cannot open the relay's storage: {0}")]
    Storage(#[from] cairn::Error),
    /// Another relay holds its data directory.
    #[error(transparent)]
    InUse(#[from] DataDirInUse),
    /// Its tokens would not open.
    #[error("cannot open the relay's tokens: {0}")]
    Tokens(#[from] TokenError),
    /// The hub would not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}; is another relay running there?")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("relay server failed: {0}")]
    Serve(std::io::Error),
    /// The TLS certificate or key would not load.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The PostgreSQL store would not open (unreachable, refused, or a newer schema).
    #[error("cannot open the relay's PostgreSQL store: {0}")]
    Postgres(Box<dyn std::error::Error + Send + Sync>),
}

/// How `run_relay` runs.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Commit durability.
    pub durability: cairn::Durability,
    /// Let anyone read and write everything (local development only).
    pub insecure_no_auth: bool,
    /// Serve `wss://` with this PEM certificate chain and PEM private key.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Keep documents, tokens and actor bindings in this PostgreSQL database (a `postgres://`
    /// URL) instead of the data directory, as one of several nodes (docs/scaling.md).
    pub store: Option<String>,
    /// With `store`: hear of other nodes' writes over this NATS server (`nats://host:port`).
    /// Without it, a node learns of them by reconciliation only ([`ClusterOptions`]).
    pub bus: Option<String>,
}

/// Runs a relay on `listen`, storing in `data`, until SIGTERM or Ctrl-C; then stops accepting,
/// closes connections with "going away" and returns. Everything acknowledged is already on disk.
pub async fn run_relay(listen: std::net::SocketAddr, data: &Path, options: RelayOptions) -> Result<(), RelayError> {
    let RelayOptions { durability, insecure_no_auth, tls, store, bus } = options;
    let tls = tls.map(|(cert, key)| tls::server_config(&cert, &key)).transpose()?;
    if insecure_no_auth && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "--insecure-no-auth on an address other machines can reach: anyone on the network can read and write every graph"
        );
    }
    if let Some(url) = store {
        return run_node(listen, url, bus, insecure_no_auth, tls).await;
    }
    // Opening storage is SQLite work (a first start migrates): off the runtime's workers.
    let dir = data.to_owned();
    let (store, auth, hub) = tokio::task::spawn_blocking(move || open_storage(&dir, durability, insecure_no_auth))
        .await
        .map_err(|e| RelayError::Serve(std::io::Error::other(e)))??;
    let config = RelayConfig::new(hub, auth);
    let store = store.with_metrics(config.metrics.clone());
    let relay = Relay::start(store, config)?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| RelayError::Bind { addr: listen, source })?;
    let local = listener.local_addr().map_err(RelayError::Serve)?;
    let (ws, http) = if tls.is_some() { ("wss", "https") } else { ("ws", "http") };
    tracing::info!(%local, data = %data.display(), "relay listening ({ws}://{local}, health at {http}://{local}/healthz)");
    match tls {
        Some(tls) => relay.serve_tls(listener, tls, shutdown_signal()).await,
        None => relay.serve(listener, shutdown_signal()).await,
    }
    .map_err(RelayError::Serve)
}

/// Runs one node of a relay whose documents and tokens are in PostgreSQL at `url`.
async fn run_node(
    listen: std::net::SocketAddr,
    url: String,
    bus: Option<String>,
    insecure_no_auth: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), RelayError> {
    let mut cluster = ClusterOptions::new(url, bus.unwrap_or_default());
    if cluster.bus.is_empty() {
        cluster.bus_off();
    }
    let relay = start_node(cluster, insecure_no_auth).await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| RelayError::Bind { addr: listen, source })?;
    let local = listener.local_addr().map_err(RelayError::Serve)?;
    let ws = if tls.is_some() { "wss" } else { "ws" };
    tracing::info!(%local, "relay node listening ({ws}://{local}, store: PostgreSQL)");
    match tls {
        Some(tls) => relay.serve_tls(listener, tls, shutdown_signal()).await,
        None => relay.serve(listener, shutdown_signal()).await,
    }
    .map_err(RelayError::Serve)
}

/// Starts one relay node on the PostgreSQL store and NATS bus `cluster` names (on the current
/// tokio runtime): its hub, its bus task and its reconciliation thread. Serve it with
/// [`Relay::serve`]; everything stops when it does.
pub async fn start_node(cluster: ClusterOptions, insecure_no_auth: bool) -> Result<Relay, RelayError> {
    let opening = cluster.store.clone();
    let (store, tokens) = tokio::task::spawn_blocking(move || -> Result<_, RelayError> {
        let store = PgStore::open(&opening).map_err(|e| RelayError::Postgres(Box::new(e)))?;
        let tokens = PgTokens::open(&opening).map_err(|e| RelayError::Postgres(Box::new(e)))?;
        Ok((store, tokens))
    })
    .await
    .map_err(|e| RelayError::Serve(std::io::Error::other(e)))??;
    let auth = if insecure_no_auth { Auth::InsecureNoAuth } else { Auth::Tokens(Tokens::new(Arc::new(tokens))) };
    // Each node its own storage id: a client that fails over must not take one node's heads
    // for another's, which may not have caught up yet.
    let id = format!("cairn-node-{}", cairn::automerge::ActorId::random().to_hex_string());
    let config = RelayConfig::new(HubConfig::new(id.clone(), id), auth);
    let metrics = config.metrics.clone();
    let (committed, announcements) = tokio::sync::mpsc::unbounded_channel();
    let versions = store.versions();
    let store = store.with_metrics(metrics.clone()).announcing(committed);
    let relay = Relay::start(store, config)?;
    cluster::start(cluster, versions, announcements, relay.downgrade_notifier(), metrics).map_err(RelayError::Serve)?;
    Ok(relay)
}

/// The relay's documents, who may connect, and its identity, from its data directory.
fn open_storage(
    data: &Path,
    durability: cairn::Durability,
    insecure_no_auth: bool,
) -> Result<(RelayStore, Auth, HubConfig), RelayError> {
    let store = RelayStore::open(data, durability)?;
    let auth = if insecure_no_auth {
        Auth::InsecureNoAuth
    } else {
        let tokens = Tokens::open(&RelayStore::file_in(data))?;
        if tokens.list()?.is_empty() {
            tracing::warn!(
                "no tokens yet, so nobody can connect: create one with `cairn relay token create --data {} --graph <name> --role write`",
                data.display()
            );
        }
        Auth::Tokens(tokens)
    };
    Ok((store, auth, hub_config_for(data)))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// Waits until a change is logged after `since`, or `timeout`, without blocking the async
/// runtime; returns the changes after `since` (empty on timeout). The async variant of
/// [`cairn::Replica::wait_for_change`].
pub async fn wait_for_change(
    replica: &Arc<cairn::Replica>,
    since: cairn::Version,
    timeout: std::time::Duration,
) -> cairn::Result<cairn::Read<Vec<cairn::EntityChange>>> {
    let notify = Arc::new(tokio::sync::Notify::new());
    let waker = notify.clone();
    let _subscription = replica.subscribe(move |_| waker.notify_one());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let position = off_runtime(replica, |r| cairn::sync::ReplicaDocs::new(r.clone()).log_position()).await?;
        if position > since.seq() || tokio::time::Instant::now() >= deadline {
            break;
        }
        // Other processes' writes wake nothing here: look at the file again every 25 ms.
        let poll = tokio::time::Instant::now() + std::time::Duration::from_millis(25);
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep_until(poll.min(deadline)) => {}
        }
    }
    off_runtime(replica, move |r| r.changes_since(since, usize::MAX)).await
}

/// Runs `f` on `replica` on tokio's blocking pool, so that its SQLite work never holds up a
/// runtime worker (ARCHITECTURE.md). A panic in `f` is reported as an error of the replica's file.
pub async fn off_runtime<T: Send + 'static>(
    replica: &Arc<cairn::Replica>,
    f: impl FnOnce(&Arc<cairn::Replica>) -> cairn::Result<T> + Send + 'static,
) -> cairn::Result<T> {
    let r = replica.clone();
    tokio::task::spawn_blocking(move || f(&r)).await.map_err(|e| cairn::Error::Io {
        path: replica.path().to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?
}
