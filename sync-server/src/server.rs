//! The relay's network edge: an HTTP server (axum) that upgrades `/` to the automerge-repo
//! websocket protocol and answers `/healthz` and `/metrics`, feeding one [`Hub`] that runs on a
//! thread of its own (it does synchronous SQLite work, which must not stall the async runtime).
//!
//! Safe by default: a connection presents a token (an `Authorization: Bearer` header, or a
//! `token` query parameter for browsers) checked before the websocket upgrade, and every limit —
//! message size, documents per connection, connections per token, message rate, idle time, the
//! outgoing queue — has a default. A reader too slow to keep up is disconnected, never allowed to
//! grow the relay's memory.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};

use cairn::GraphName;
use cairn::sync::SyncDocs;
use cairn::sync::wire::Message;

use crate::hub::{Access, Action, ConnId, DocScope, Event, Hub, HubConfig};
use crate::metrics::Metrics;
use crate::tokens::{Graphs, Role, TokenError, Tokens};

/// Close codes (RFC 6455).
mod code {
    pub(crate) const NORMAL: u16 = 1000;
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const PROTOCOL: u16 = 1002;
    pub(crate) const UNSUPPORTED: u16 = 1003;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const TOO_BIG: u16 = 1009;
}

/// Who may connect.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Connections present a token from the `tokens` table of this relay data file.
    Tokens(PathBuf),
    /// Anyone may read and write everything. For local development and tests only.
    InsecureNoAuth,
}

/// Relay settings. Every limit has a safe default.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The relay's peer and storage identity, and its per-connection document limit.
    pub hub: HubConfig,
    /// Who may connect.
    pub auth: Auth,
    /// Largest message accepted, in bytes; a larger one closes the connection.
    pub max_message_bytes: usize,
    /// Frames queued for one connection before it counts as too slow and is closed.
    pub outgoing_queue: usize,
    /// Open connections one token may have at once.
    pub max_connections_per_token: usize,
    /// Sustained messages per second one connection may send.
    pub messages_per_second: f64,
    /// Messages one connection may send in a burst above that rate.
    pub message_burst: f64,
    /// A connection that sends nothing (not even a pong) for this long is closed. The relay
    /// pings every third of it.
    pub idle_timeout: Duration,
    /// A connection must send its `join` within this.
    pub handshake_timeout: Duration,
    /// How often token revocations and expiries are checked against open connections.
    pub token_check_interval: Duration,
    /// Where the relay counts what it does (shared with its storage; see `/metrics`).
    pub metrics: Arc<Metrics>,
}

impl RelayConfig {
    /// Defaults: 16 MiB messages, 1024 queued frames, 32 connections per token, 500 messages/s
    /// with bursts of 2000, 90 s idle timeout, 10 s to send `join`.
    pub fn new(hub: HubConfig, auth: Auth) -> Self {
        RelayConfig {
            hub,
            auth,
            max_message_bytes: 16 << 20,
            outgoing_queue: 1024,
            max_connections_per_token: 32,
            messages_per_second: 500.0,
            message_burst: 2000.0,
            idle_timeout: Duration::from_secs(90),
            handshake_timeout: Duration::from_secs(10),
            token_check_interval: Duration::from_secs(1),
            metrics: Arc::default(),
        }
    }
}

/// What a connection task hands the hub thread.
enum Command {
    Register { conn: ConnId, out: mpsc::Sender<Outgoing> },
    Event(Event),
}

/// What the hub thread hands a connection task.
#[derive(Debug)]
enum Outgoing {
    Frame(Vec<u8>),
    Close { code: u16, reason: String },
}

/// Open connections that came with a token, for revocation checks and per-token limits.
#[derive(Debug, Default)]
struct Sessions {
    token_of: HashMap<ConnId, String>,
    per_token: HashMap<String, usize>,
}

/// A running relay core: the hub thread and the handle to feed it.
#[derive(Clone)]
pub struct Relay {
    metrics: Arc<Metrics>,
    commands: mpsc::Sender<Command>,
    next_conn: Arc<AtomicU64>,
    config: Arc<RelayConfig>,
    tokens: Option<Arc<Mutex<Tokens>>>,
    sessions: Arc<Mutex<Sessions>>,
    shutdown: watch::Receiver<bool>,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the relay's tokens: {0}")]
pub struct StartError(#[from] TokenError);

impl Relay {
    /// Starts the hub on a thread of its own, serving `docs`.
    pub fn start<D: SyncDocs + Send + 'static>(docs: D, config: RelayConfig) -> Result<Relay, StartError> {
        let tokens = match &config.auth {
            Auth::Tokens(path) => Some(Arc::new(Mutex::new(Tokens::open(path)?))),
            Auth::InsecureNoAuth => {
                tracing::warn!(
                    "relay running WITHOUT authentication (--insecure-no-auth): anyone who can reach it can read and write every graph"
                );
                None
            }
        };
        let (commands, inbox) = mpsc::channel(4096);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let hub = Hub::new(config.hub.clone());
        let metrics = config.metrics.clone();
        let hub_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("cairn-hub".into())
            .spawn(move || run_hub(hub, docs, inbox, &hub_metrics))
            .expect("spawning the hub thread"); // only fails when the OS is out of threads
        Ok(Relay {
            metrics,
            commands,
            next_conn: Arc::new(AtomicU64::new(1)),
            config: Arc::new(config),
            tokens,
            sessions: Arc::default(),
            shutdown,
            shutdown_tx: Arc::new(shutdown_tx),
        })
    }

    /// The relay's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Tells the hub that documents changed outside the protocol (a serving replica wrote).
    pub fn notify_docs_changed(&self) {
        // A full inbox already holds work that will generate the same messages.
        let _ = self.commands.try_send(Command::Event(Event::DocsChanged));
    }

    /// The HTTP routes: the websocket at `/`, `/healthz` and `/metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(upgrade))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(|State(relay): State<Relay>| async move { relay.metrics.render() }))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` resolves; then stops accepting, closes every
    /// connection with "going away", lets storage finish, and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        // Sync messages are small and latency-bound: without TCP_NODELAY, Nagle's algorithm
        // and delayed acknowledgements add ~40 ms to a round trip.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY");
            }
        });
        self.serve_on(listener, shutdown).await
    }

    /// [`Relay::serve`] over TLS (`wss://`).
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = crate::tls::TlsListener::new(listener, tls)?;
        self.serve_on(listener, shutdown).await
    }

    async fn serve_on<L>(self, listener: L, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()>
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let stop = self.shutdown_tx.clone();
        let router = self.router();
        if self.tokens.is_some() {
            tokio::spawn(self.clone().watch_tokens());
        }
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await
    }

    /// Closes open connections whose token was revoked or expired.
    async fn watch_tokens(self) {
        let Some(tokens) = self.tokens.clone() else { return };
        let mut tick = tokio::time::interval(self.config.token_check_interval);
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let open: Vec<(ConnId, String)> = {
                let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
                s.token_of.iter().map(|(c, t)| (*c, t.clone())).collect()
            };
            if open.is_empty() {
                continue;
            }
            let tokens = tokens.clone();
            let ids: Vec<String> = open.iter().map(|(_, t)| t.clone()).collect();
            let invalid = tokio::task::spawn_blocking(move || {
                let t = tokens.lock().unwrap_or_else(|p| p.into_inner());
                let now = cairn::now_millis();
                ids.into_iter().filter(|id| !t.still_valid(id, now).unwrap_or(true)).collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for (conn, token) in open {
                if invalid.contains(&token) {
                    tracing::info!(conn, token = %token, "closing a connection whose token was revoked or expired");
                    let _ = self.commands.send(Command::Event(Event::AccessChanged { conn, access: None })).await;
                }
            }
        }
    }

    /// Checks a request's token; the access it grants and its id, or the refusal.
    async fn authorize(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<(Access, Option<String>), (StatusCode, String)> {
        let Some(tokens) = self.tokens.clone() else { return Ok((Access::full(), None)) };
        let presented = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::to_owned)
            .or_else(|| query.get("token").cloned());
        let Some(token) = presented else {
            Metrics::add(&self.metrics.refused_no_token, 1);
            return Err((
                StatusCode::UNAUTHORIZED,
                "no token: send Authorization: Bearer <token>, or ?token=<token>\n".into(),
            ));
        };
        let verified = tokio::task::spawn_blocking(move || {
            tokens.lock().unwrap_or_else(|p| p.into_inner()).verify(&token, cairn::now_millis())
        })
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let grant = match verified {
            Ok(g) => g,
            Err(
                e @ (TokenError::Storage(_) | TokenError::Graph(_) | TokenError::NoGraphs | TokenError::NoSuchId(_)),
            ) => {
                tracing::error!(error = %e, "token check failed");
                return Err((StatusCode::INTERNAL_SERVER_ERROR, "token check failed\n".into()));
            }
            Err(e) => {
                Metrics::add(&self.metrics.refused_bad_token, 1);
                tracing::info!(reason = %e, "refused a connection");
                return Err((StatusCode::UNAUTHORIZED, format!("{e}\n")));
            }
        };
        {
            let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let open = s.per_token.entry(grant.id.clone()).or_default();
            if *open >= self.config.max_connections_per_token {
                Metrics::add(&self.metrics.refused_too_many, 1);
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "token {} already has {} connections open (the limit)\n",
                        grant.id, self.config.max_connections_per_token
                    ),
                ));
            }
            *open += 1;
        }
        let write = grant.role == Role::Write;
        let access = match &grant.graphs {
            Graphs::All(_) => Access { scope: DocScope::Any, write },
            Graphs::Only(names) => {
                let graphs: Vec<GraphName> = names.iter().filter_map(|n| n.parse().ok()).collect();
                Access::graphs(&graphs, write)
            }
        };
        Ok((access, Some(grant.id)))
    }

    fn release(&self, conn: ConnId, token: Option<&str>) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.token_of.remove(&conn);
        if let Some(t) = token {
            if let Some(n) = s.per_token.get_mut(t) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// How many queued events the hub handles before it fans their changes out.
const BATCH: usize = 256;

fn run_hub<D: SyncDocs>(mut hub: Hub, mut docs: D, mut inbox: mpsc::Receiver<Command>, metrics: &Metrics) {
    let mut conns: HashMap<ConnId, mpsc::Sender<Outgoing>> = HashMap::new();
    while let Some(first) = inbox.blocking_recv() {
        let started = Instant::now();
        // Take whatever else is already waiting, handle it all, then fan out once: under load,
        // one message per connection carries the changes of many writers.
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match inbox.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut actions = Vec::new();
        for command in batch {
            let event = match command {
                Command::Register { conn, out } => {
                    conns.insert(conn, out);
                    continue;
                }
                Command::Event(e) => e,
            };
            if let Event::Disconnected { conn } = &event {
                conns.remove(conn);
            }
            match hub.handle(cairn::now_millis(), event, &mut docs) {
                Ok(a) => actions.extend(a),
                // The relay's own storage failed: nothing was forwarded for this event. Keep
                // serving; the affected peer will retry its sync.
                Err(e) => tracing::error!(error = %e, "relay storage failed"),
            }
        }
        match hub.flush(cairn::now_millis(), &mut docs) {
            Ok(a) => actions.extend(a),
            Err(e) => tracing::error!(error = %e, "relay storage failed"),
        }
        let mut slow = Vec::new();
        for action in actions {
            match action {
                Action::Send { conn, message } => {
                    let Some(tx) = conns.get(&conn) else { continue };
                    let frame = message.encode();
                    Metrics::add(&metrics.messages_out, 1);
                    Metrics::add(&metrics.bytes_out, frame.len() as u64);
                    if tx.try_send(Outgoing::Frame(frame)).is_err() {
                        slow.push(conn);
                    }
                }
                Action::Close { conn, reason, protocol_error } => {
                    if protocol_error {
                        Metrics::add(&metrics.closed_protocol, 1);
                    }
                    if let Some(tx) = conns.remove(&conn) {
                        let code = if protocol_error { code::PROTOCOL } else { code::POLICY };
                        tracing::info!(conn, %reason, "closing a connection");
                        let _ = tx.try_send(Outgoing::Close { code, reason });
                    }
                }
            }
        }
        for conn in slow {
            // Dropping the sender makes the connection task close the socket.
            if conns.remove(&conn).is_some() {
                tracing::warn!(conn, "closing a connection that reads too slowly");
                Metrics::add(&metrics.closed_slow, 1);
                let _ = hub.handle(cairn::now_millis(), Event::Disconnected { conn }, &mut docs);
            }
        }
        metrics.connections.store(hub.connections() as u64, Ordering::Relaxed);
        metrics.open_docs.store(hub.open_docs() as u64, Ordering::Relaxed);
        Metrics::add(&metrics.hub_busy_micros, started.elapsed().as_micros() as u64);
    }
    // Every sender is gone: the relay is shutting down. Everything acknowledged is committed;
    // fold the write-ahead log into the database so the files are tidy for the next start.
    drop(docs);
    tracing::info!("hub stopped");
}

async fn upgrade(
    ws: WebSocketUpgrade,
    State(relay): State<Relay>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (access, token) = match relay.authorize(&headers, &query).await {
        Ok(granted) => granted,
        Err(refusal) => return refusal.into_response(),
    };
    let max = relay.config.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection(socket, relay, access, token))
        .into_response()
}

/// A token bucket: `rate` per second, at most `burst` at once.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn connection(socket: WebSocket, relay: Relay, access: Access, token: Option<String>) {
    let conn = relay.next_conn.fetch_add(1, Ordering::Relaxed);
    Metrics::add(&relay.metrics.connections_total, 1);
    if let Some(t) = &token {
        relay.sessions.lock().unwrap_or_else(|p| p.into_inner()).token_of.insert(conn, t.clone());
    }
    tracing::debug!(conn, token = ?token, "connection opened");
    let (out_tx, mut out_rx) = mpsc::channel(relay.config.outgoing_queue);
    if relay.commands.send(Command::Register { conn, out: out_tx }).await.is_ok()
        && relay.commands.send(Command::Event(Event::Connected { conn, access })).await.is_ok()
    {
        serve_connection(socket, &relay, conn, &mut out_rx).await;
    }
    let _ = relay.commands.send(Command::Event(Event::Disconnected { conn })).await;
    relay.release(conn, token.as_deref());
    tracing::debug!(conn, "connection closed");
}

async fn serve_connection(socket: WebSocket, relay: &Relay, conn: ConnId, out_rx: &mut mpsc::Receiver<Outgoing>) {
    let config = &relay.config;
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = relay.shutdown.clone();
    let close = |code: u16, reason: &str| WsMessage::Close(Some(CloseFrame { code, reason: truncate(reason).into() }));
    let mut bucket = Bucket {
        tokens: config.message_burst,
        rate: config.messages_per_second,
        burst: config.message_burst,
        at: Instant::now(),
    };
    let opened = Instant::now();
    let mut joined = false;
    let mut last_heard = Instant::now();
    // Pings keep idle-but-healthy connections alive; the same tick enforces the deadlines.
    let mut ping = tokio::time::interval(
        (config.idle_timeout / 3).min(config.handshake_timeout / 2).max(Duration::from_millis(10)),
    );
    ping.tick().await;
    let refuse = |reason: String| {
        Metrics::add(&relay.metrics.closed_protocol, 1);
        tracing::info!(conn, %reason, "closing a connection");
        reason
    };
    loop {
        tokio::select! {
            // Frames from the peer go to the hub; the hub's inbox is bounded, so a flood of
            // frames waits here instead of piling up in memory.
            incoming = stream.next() => {
                last_heard = Instant::now();
                let frame = match incoming {
                    Some(Ok(WsMessage::Binary(bytes))) => bytes,
                    Some(Ok(WsMessage::Text(_))) => {
                        let reason = refuse("text frames are not part of the protocol; send CBOR in binary frames".into());
                        let _ = sink.send(close(code::UNSUPPORTED, &reason)).await;
                        break;
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) | None => break,
                    Some(Err(e)) => {
                        let text = e.to_string();
                        let too_big = text.contains("too long") || text.contains("too big");
                        let reason = refuse(format!("bad frame: {text}"));
                        let _ = sink.send(close(if too_big { code::TOO_BIG } else { code::PROTOCOL }, &reason)).await;
                        break;
                    }
                };
                if !bucket.take() {
                    let reason = refuse(format!("message rate above {} per second; slow down", config.messages_per_second));
                    let _ = sink.send(close(code::POLICY, &reason)).await;
                    break;
                }
                Metrics::add(&relay.metrics.messages_in, 1);
                Metrics::add(&relay.metrics.bytes_in, frame.len() as u64);
                match Message::decode(&frame) {
                    Ok(message) => {
                        joined = true;
                        if relay.commands.send(Command::Event(Event::Received { conn, message })).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let reason = refuse(format!("malformed message: {e}"));
                        let reply = Message::Error { sender: Some(config.hub.peer_id.clone()), target: None, message: reason.clone() };
                        let _ = sink.send(WsMessage::Binary(reply.encode().into())).await;
                        let _ = sink.send(close(code::PROTOCOL, &reason)).await;
                        break;
                    }
                }
            }
            // Frames from the hub go to the peer.
            outgoing = out_rx.recv() => match outgoing {
                Some(Outgoing::Frame(bytes)) => {
                    if sink.send(WsMessage::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close { code, reason }) => {
                    let _ = sink.send(close(code, &reason)).await;
                    break;
                }
                // The hub dropped this connection (too slow a reader).
                None => {
                    let _ = sink.send(close(code::POLICY, "too slow: the outgoing queue is full")).await;
                    break;
                }
            },
            // Keep-alive, idle and handshake deadlines.
            _ = ping.tick() => {
                if !joined && opened.elapsed() >= config.handshake_timeout {
                    let reason = refuse(format!("no join within {:?}", config.handshake_timeout));
                    let _ = sink.send(close(code::POLICY, &reason)).await;
                    break;
                }
                if last_heard.elapsed() >= config.idle_timeout {
                    let _ = sink.send(close(code::NORMAL, "idle timeout")).await;
                    break;
                }
                if sink.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => {
                let _ = sink.send(close(code::GOING_AWAY, "relay shutting down")).await;
                break;
            }
        }
    }
    // Give the close frame a moment to leave; the peer's reply does not matter.
    let _ = tokio::time::timeout(Duration::from_millis(100), sink.close()).await;
}

/// Close-frame reasons are limited to 123 bytes.
fn truncate(reason: &str) -> String {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
