//! The relay's network edge: an HTTP server (axum) that upgrades `/` to the automerge-repo
//! websocket protocol and answers `/healthz` and `/metrics`, feeding one [`Hub`] that runs on a
//! thread of its own (it does synchronous SQLite work, which must not stall the async runtime).
//!
//! Safe by default: a connection presents a token (an `Authorization: Bearer` header, or a
//! `token` query parameter for browsers) checked before the websocket upgrade, and every limit —
//! message size, documents per connection, connections per token, message rate, idle time, the
//! outgoing queue, bytes waiting for the hub — has a default. A reader too slow to keep up is
//! disconnected, never allowed to grow the relay's memory. Here: the relay handle, its
//! configuration and serving; the hub thread is `hub_thread.rs`, access is `auth.rs`, and the
//! connection tasks are `connection.rs`.

mod auth;
mod hub_thread;
mod queue;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use cairn::sync::SyncDocs;

use crate::hub::{ConnId, Event, Hub, HubConfig};
use crate::metrics::Metrics;
use crate::tokens::Tokens;

pub(crate) use auth::TokenSlot;
use auth::{Sessions, upgrade};
pub(crate) use hub_thread::Command;
pub(crate) use queue::{Outgoing, Queue, channel as outgoing_queue};

/// Who may connect.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Connections present a token these tokens hold (for a SQLite relay,
    /// `Tokens::open(&RelayStore::file_in(data))`).
    Tokens(Tokens),
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
    /// Bytes of frames queued for one connection (the one being written included), ephemeral
    /// messages too, before it counts as too slow and is closed; a frame always fits into an
    /// empty queue, so no message is too large to send.
    pub max_outgoing_bytes: usize,
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
    /// Defaults: 16 MiB messages, 1024 queued frames or 64 MiB of them (four largest messages),
    /// 32 connections per token, 500 messages/s
    /// with bursts of 2000, 90 s idle timeout, 10 s to send `join`, 10 s to take a frame,
    /// 256 MiB waiting for the hub, 10 s and 256 at once for TLS handshakes.
    pub fn new(hub: HubConfig, auth: Auth) -> Self {
        RelayConfig {
            hub,
            auth,
            max_message_bytes: 16 << 20,
            outgoing_queue: 1024,
            max_outgoing_bytes: 64 << 20,
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
    tokens: Option<Tokens>,
    sessions: Arc<Mutex<Sessions>>,
    shutdown: watch::Receiver<bool>,
    shutdown_tx: Arc<watch::Sender<bool>>,
    inflight: Arc<Semaphore>,
    active: Arc<(AtomicUsize, Notify)>,
    watching: Arc<AtomicBool>,
    hub_thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// Whatever must live as long as the relay (a serving replica's subscription).
    kept: Option<Arc<cairn::Subscription>>,
}

/// Tells a relay's hub that documents changed outside the protocol, without keeping it alive.
#[derive(Debug, Clone)]
pub(crate) struct Notifier(mpsc::WeakSender<Command>);

impl Notifier {
    pub(crate) fn notify_docs_changed(&self) {
        if let Some(commands) = self.0.upgrade() {
            // A full inbox already holds work that will generate the same messages.
            let _ = commands.try_send(Command::Event(Event::DocsChanged));
        }
    }

    /// Whether the hub still runs.
    pub(crate) fn alive(&self) -> bool {
        self.0.upgrade().is_some()
    }

    /// Tells the hub that other nodes changed `docs`, waiting for room in its inbox (a dropped
    /// notice would leave connections unoffered); false once the hub has stopped.
    pub(crate) async fn changed_elsewhere(&self, docs: Vec<cairn::DocId>) -> bool {
        let Some(commands) = self.0.upgrade() else { return false };
        commands.send(Command::Event(Event::ChangedElsewhere { docs })).await.is_ok()
    }

    /// [`Notifier::changed_elsewhere`], from a thread outside the runtime.
    pub(crate) fn changed_elsewhere_blocking(&self, docs: Vec<cairn::DocId>) -> bool {
        let Some(commands) = self.0.upgrade() else { return false };
        commands.blocking_send(Command::Event(Event::ChangedElsewhere { docs })).is_ok()
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the relay's hub thread: {0}")]
pub struct StartError(#[from] std::io::Error);

impl Relay {
    /// Starts the hub on a thread of its own, serving `docs`.
    pub fn start<D: SyncDocs + crate::hub::ActorBook + Send + 'static>(
        docs: D,
        config: RelayConfig,
    ) -> Result<Relay, StartError> {
        let tokens = match &config.auth {
            Auth::Tokens(tokens) => Some(tokens.clone()),
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
            .spawn(move || hub_thread::run_hub(hub, docs, inbox, &hub_metrics))?;
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
            kept: None,
        })
    }

    pub(crate) fn downgrade_notifier(&self) -> Notifier {
        Notifier(self.commands.downgrade())
    }

    /// Keeps `subscription` alive as long as any handle to this relay.
    pub(crate) fn keeping(mut self, subscription: cairn::Subscription) -> Self {
        self.kept = Some(Arc::new(subscription));
        self
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
            .route("/healthz", get(|State(relay): State<Relay>| async move { relay.metrics.health() }))
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
}
