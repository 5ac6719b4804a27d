//! The relay's network edge: an HTTP server (axum) that upgrades `/` to the automerge-repo
//! websocket protocol and answers `/healthz` and `/metrics`, feeding one [`Hub`] that runs on a
//! thread of its own (it does synchronous SQLite work, which must not stall the async runtime).
//!
//! Safe by default: a connection presents a token (an `Authorization: Bearer` header, or a
//! `token` query parameter for browsers) checked before the websocket upgrade, and every limit —
//! message size, documents per connection, connections per token, message rate, idle time, the
//! outgoing queue, bytes waiting for the hub — has a default. A reader too slow to keep up is
//! disconnected, never allowed to grow the relay's memory. The connection tasks themselves are
//! in `connection.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use cairn::GraphName;
use cairn::sync::SyncDocs;

use crate::connection::code;
use crate::hub::{Access, Action, ConnId, DocScope, Event, Hub, HubConfig};
use crate::metrics::Metrics;
use crate::tokens::{Graphs, Role, TokenError, Tokens};

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
    /// pings every third of it, or every half of `handshake_timeout` if that is sooner.
    pub idle_timeout: Duration,
    /// A connection must send its `join` within this.
    pub handshake_timeout: Duration,
    /// How often token revocations and expiries are checked against open connections.
    pub token_check_interval: Duration,
    /// A frame the peer does not take within this closes the connection (it stopped reading).
    pub write_timeout: Duration,
    /// Bytes of received messages, across all connections, waiting for the hub; a connection
    /// with a message beyond it waits (and so reads no further) until the hub catches up. Each
    /// such waiting connection holds its one frame outside this budget.
    pub max_inflight_bytes: usize,
    /// A TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
    /// TLS handshakes in progress at once; further connections wait to be accepted.
    pub max_tls_handshakes: usize,
    /// Where the relay counts what it does (shared with its storage; see `/metrics`).
    pub metrics: Arc<Metrics>,
}

impl RelayConfig {
    /// Defaults: 16 MiB messages, 1024 queued frames, 32 connections per token, 500 messages/s
    /// with bursts of 2000, 90 s idle timeout, 10 s to send `join`, 10 s to take a frame,
    /// 256 MiB waiting for the hub, 10 s and 256 at once for TLS handshakes.
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
            write_timeout: Duration::from_secs(10),
            max_inflight_bytes: 256 << 20,
            tls_handshake_timeout: Duration::from_secs(10),
            max_tls_handshakes: 256,
            metrics: Arc::default(),
        }
    }

    /// The in-flight budget as semaphore permits (one per byte).
    fn inflight_budget(&self) -> usize {
        self.max_inflight_bytes.clamp(1, Semaphore::MAX_PERMITS)
    }
}

/// What a connection task hands the hub thread.
pub(crate) enum Command {
    Register {
        conn: ConnId,
        out: mpsc::Sender<Outgoing>,
    },
    Event(Event),
    /// A received message, holding its share of the in-flight byte budget until it is handled.
    Received {
        event: Event,
        permit: OwnedSemaphorePermit,
    },
    /// The relay is shutting down: finish the batch and stop.
    Stop,
}

/// What the hub thread hands a connection task.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Frame(Vec<u8>),
    Close { code: u16, reason: String },
}

/// Open connections that came with a token, for revocation checks and per-token limits.
#[derive(Debug, Default)]
struct Sessions {
    token_of: HashMap<ConnId, String>,
    per_token: HashMap<String, usize>,
}

/// One connection's place in its token's limit and in the revocation checks, given back when
/// dropped — whichever way the connection ends, including an upgrade that never completes.
pub(crate) struct TokenSlot {
    sessions: Arc<Mutex<Sessions>>,
    token: String,
    conn: Option<ConnId>,
}

impl TokenSlot {
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Records the connection using the slot, so revoking the token closes it.
    pub(crate) fn attach(&mut self, conn: ConnId) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).token_of.insert(conn, self.token.clone());
        self.conn = Some(conn);
    }
}

impl Drop for TokenSlot {
    fn drop(&mut self) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = self.conn {
            s.token_of.remove(&conn);
        }
        if let Some(n) = s.per_token.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_token.remove(&self.token);
            }
        }
    }
}

/// Counts a connection task as running until dropped; shutdown waits for the count to reach 0.
pub(crate) struct ActiveGuard(Arc<(AtomicUsize, Notify)>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
        self.0.1.notify_waiters();
    }
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
    inflight: Arc<Semaphore>,
    active: Arc<(AtomicUsize, Notify)>,
    watching: Arc<AtomicBool>,
    hub_thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
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
        let hub_thread = std::thread::Builder::new()
            .name("cairn-hub".into())
            .spawn(move || run_hub(hub, docs, inbox, &hub_metrics))
            .expect("spawning the hub thread"); // only fails when the OS is out of threads
        let inflight = Arc::new(Semaphore::new(config.inflight_budget()));
        Ok(Relay {
            metrics,
            commands,
            next_conn: Arc::new(AtomicU64::new(1)),
            config: Arc::new(config),
            tokens,
            sessions: Arc::default(),
            shutdown,
            shutdown_tx: Arc::new(shutdown_tx),
            inflight,
            active: Arc::default(),
            watching: Arc::default(),
            hub_thread: Arc::new(Mutex::new(Some(hub_thread))),
        })
    }

    pub(crate) fn config(&self) -> &RelayConfig {
        &self.config
    }

    pub(crate) fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    pub(crate) fn active_guard(&self) -> ActiveGuard {
        self.active.0.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(self.active.clone())
    }

    /// Hands the hub a command; false once the hub has stopped.
    pub(crate) async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
    }

    /// Waits for `bytes` of the in-flight budget (capped at the whole budget, so any message
    /// can pass alone); `None` once the relay is stopping.
    pub(crate) async fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = bytes.clamp(1, self.config.inflight_budget());
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            permit = self.inflight.clone().acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX)) => permit.ok(),
            _ = shutdown.changed() => None,
        }
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

    /// The HTTP routes: the websocket at `/`, `/healthz` and `/metrics`. With tokens, this also
    /// starts the task that closes connections whose token is revoked (on the current runtime).
    pub fn router(&self) -> Router {
        if self.tokens.is_some() && !self.watching.swap(true, Ordering::SeqCst) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(self.token_watch())),
                Err(_) => {
                    self.watching.store(false, Ordering::SeqCst);
                    tracing::error!("Relay::router called outside a tokio runtime: revoked tokens stay connected");
                }
            }
        }
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
        let listener = crate::tls::TlsListener::new(
            listener,
            tls,
            self.config.tls_handshake_timeout,
            self.config.max_tls_handshakes,
        )?;
        self.serve_on(listener, shutdown).await
    }

    async fn serve_on<L>(self, listener: L, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()>
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        let stop = self.shutdown_tx.clone();
        let router = self.router();
        let serving = axum::serve(listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        // axum waits, without limit, for HTTP requests in progress (one whose client sent half
        // its headers and went quiet, too): give them as long as a websocket gets, no longer.
        let grace = crate::connection::longest_ending(self.config.write_timeout);
        let mut stopping = self.shutdown.clone();
        let served = tokio::select! {
            served = serving.into_future() => served,
            _ = async {
                let _ = stopping.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("HTTP requests still unfinished at shutdown: stopping anyway");
                Ok(())
            }
        };
        // axum has stopped accepting; the websockets it upgraded are not its to wait for. Each
        // was told "going away" by the shutdown signal: wait (bounded) for their tasks to end,
        // then for the hub to finish its batch and close storage.
        let _ = self.shutdown_tx.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.active.1.notified();
            if self.active.0.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!("connections still open at shutdown: stopping anyway");
                break;
            }
        }
        let _ = self.commands.send(Command::Stop).await;
        let hub = self.hub_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(hub) = hub {
            let _ = tokio::task::spawn_blocking(move || hub.join()).await;
        }
        served
    }

    /// A task that closes open connections whose token was revoked or expired. It holds the
    /// hub's inbox weakly, so it keeps nothing alive: it ends at shutdown or once every handle
    /// to the relay is gone.
    fn token_watch(&self) -> impl Future<Output = ()> + Send + 'static {
        let tokens = self.tokens.clone();
        let sessions = self.sessions.clone();
        let commands = self.commands.downgrade();
        let mut shutdown = self.shutdown.clone();
        let interval = self.config.token_check_interval;
        async move {
            let Some(tokens) = tokens else { return };
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let Some(commands) = commands.upgrade() else { return };
                Relay::close_revoked(&tokens, &sessions, &commands).await;
            }
        }
    }

    /// Closes the open connections whose token is no longer valid.
    async fn close_revoked(tokens: &Arc<Mutex<Tokens>>, sessions: &Mutex<Sessions>, commands: &mpsc::Sender<Command>) {
        let open: Vec<(ConnId, String)> = {
            let s = sessions.lock().unwrap_or_else(|p| p.into_inner());
            s.token_of.iter().map(|(c, t)| (*c, t.clone())).collect()
        };
        if open.is_empty() {
            return;
        }
        let tokens = tokens.clone();
        let ids: Vec<String> = open.iter().map(|(_, t)| t.clone()).collect();
        let invalid = tokio::task::spawn_blocking(move || {
            let t = tokens.lock().unwrap_or_else(|p| p.into_inner());
            let now = cairn::now_millis();
            // Fail closed: a token whose validity cannot be read counts as revoked.
            ids.into_iter()
                .filter(|id| {
                    !t.still_valid(id, now).unwrap_or_else(|e| {
                        tracing::error!(token = %id, error = %e, "cannot check a token; closing its connections");
                        false
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (conn, token) in open {
            if invalid.contains(&token) {
                tracing::info!(conn, token = %token, "closing a connection whose token was revoked or expired");
                let _ = commands.send(Command::Event(Event::AccessChanged { conn, access: None })).await;
            }
        }
    }

    /// Checks a request's token; the access it grants and its id, or the refusal.
    async fn authorize(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<(Access, Option<TokenSlot>), (StatusCode, String)> {
        let Some(tokens) = self.tokens.clone() else { return Ok((Access::full(), None)) };
        let presented = match headers.get("authorization") {
            Some(value) => {
                let bearer = value.to_str().ok().and_then(|v| {
                    let (scheme, token) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
                });
                match bearer {
                    Some(t) => Some(t),
                    None => {
                        Metrics::add(&self.metrics.refused_bad_token, 1);
                        tracing::info!("refused a connection: malformed Authorization header");
                        return Err((
                            StatusCode::UNAUTHORIZED,
                            "malformed Authorization header: send `Authorization: Bearer <token>`\n".into(),
                        ));
                    }
                }
            }
            None => query.get("token").cloned(),
        };
        let Some(token) = presented else {
            Metrics::add(&self.metrics.refused_no_token, 1);
            tracing::info!("refused a connection: no token");
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
                tracing::info!(token = %grant.id, "refused a connection: too many for this token");
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
        Ok((access, Some(TokenSlot { sessions: self.sessions.clone(), token: grant.id, conn: None })))
    }
}

/// How many queued events the hub handles before it fans their changes out.
const BATCH: usize = 256;

fn run_hub<D: SyncDocs>(mut hub: Hub, mut docs: D, mut inbox: mpsc::Receiver<Command>, metrics: &Metrics) {
    let mut conns: HashMap<ConnId, mpsc::Sender<Outgoing>> = HashMap::new();
    let mut stopping = false;
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
        // Permits of the batch's messages: their bytes count as in flight until handled.
        let mut permits = Vec::new();
        for command in batch {
            let event = match command {
                Command::Register { conn, out } => {
                    conns.insert(conn, out);
                    continue;
                }
                Command::Event(e) => e,
                Command::Received { event, permit } => {
                    permits.push(permit);
                    event
                }
                Command::Stop => {
                    stopping = true;
                    continue;
                }
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
        drop(permits);
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
                    // The connection's task logs the reason when it ends.
                    if let Some(tx) = conns.remove(&conn) {
                        let code = if protocol_error { code::PROTOCOL } else { code::POLICY };
                        let _ = tx.try_send(Outgoing::Close { code, reason });
                    }
                }
            }
        }
        for conn in slow {
            if let Some(tx) = conns.remove(&conn) {
                Metrics::add(&metrics.closed_slow, 1);
                // Dropping the sender makes the connection task close the socket: counted
                // first, so a peer that sees its close also sees it in /metrics.
                drop(tx);
                let _ = hub.handle(cairn::now_millis(), Event::Disconnected { conn }, &mut docs);
            }
        }
        metrics.connections.store(hub.connections() as u64, Ordering::Relaxed);
        metrics.open_docs.store(hub.open_docs() as u64, Ordering::Relaxed);
        Metrics::add(&metrics.hub_busy_micros, started.elapsed().as_micros() as u64);
        if stopping {
            break;
        }
    }
    // Stopped, or every sender is gone: the relay is shutting down. Everything acknowledged is committed;
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
    let (access, slot) = match relay.authorize(&headers, &query).await {
        Ok(granted) => granted,
        Err(refusal) => return refusal.into_response(),
    };
    let max = relay.config.max_message_bytes;
    // The slot moves into the callback: if the upgrade never completes, dropping the callback
    // gives it back.
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| crate::connection::run(socket, relay, access, slot))
        .into_response()
}
