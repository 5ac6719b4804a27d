//! The relay's network edge: an HTTP server (axum) that upgrades `/` to the automerge-repo
//! websocket protocol and answers `/healthz`, feeding one [`Hub`] that runs on a thread of its
//! own (it does synchronous SQLite work, which must not stall the async runtime).
//!
//! Every connection has a bounded outgoing queue: a reader too slow to keep up is disconnected,
//! never allowed to grow the relay's memory.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};

use cairn::sync::SyncDocs;
use cairn::sync::wire::Message;

use crate::hub::{Access, Action, ConnId, Event, Hub, HubConfig};
use crate::metrics::Metrics;

/// Close codes (RFC 6455).
mod code {
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const PROTOCOL: u16 = 1002;
    pub(crate) const UNSUPPORTED: u16 = 1003;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const TOO_BIG: u16 = 1009;
}

/// Relay settings. Every limit has a safe default.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The relay's peer and storage identity.
    pub hub: HubConfig,
    /// Largest message accepted, in bytes; a larger one closes the connection.
    pub max_message_bytes: usize,
    /// Frames queued for one connection before it counts as too slow and is closed.
    pub outgoing_queue: usize,
    /// Where the relay counts what it does (shared with its storage; see `/metrics`).
    pub metrics: Arc<Metrics>,
}

impl RelayConfig {
    /// Defaults: 16 MiB messages, 1024 queued frames per connection.
    pub fn new(hub: HubConfig) -> Self {
        RelayConfig { hub, max_message_bytes: 16 << 20, outgoing_queue: 1024, metrics: Arc::default() }
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

/// A running relay core: the hub thread and the handle to feed it.
#[derive(Clone)]
pub struct Relay {
    metrics: Arc<Metrics>,
    commands: mpsc::Sender<Command>,
    next_conn: Arc<AtomicU64>,
    config: Arc<RelayConfig>,
    shutdown: watch::Receiver<bool>,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Relay {
    /// Starts the hub on a thread of its own, serving `docs`.
    pub fn start<D: SyncDocs + Send + 'static>(docs: D, config: RelayConfig) -> Relay {
        let (commands, inbox) = mpsc::channel(4096);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let hub = Hub::new(config.hub.clone());
        let metrics = config.metrics.clone();
        let hub_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("cairn-hub".into())
            .spawn(move || run_hub(hub, docs, inbox, &hub_metrics))
            .expect("spawning the hub thread"); // only fails when the OS is out of threads
        Relay {
            metrics,
            commands,
            next_conn: Arc::new(AtomicU64::new(1)),
            config: Arc::new(config),
            shutdown,
            shutdown_tx: Arc::new(shutdown_tx),
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

    /// The HTTP routes: the websocket at `/` and `/healthz`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(upgrade))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(|State(relay): State<Relay>| async move { relay.metrics.render() }))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` resolves; then stops accepting, closes every
    /// connection with "going away", and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let stop = self.shutdown_tx.clone();
        let router = self.router();
        // Sync messages are small and latency-bound: without TCP_NODELAY, Nagle's algorithm
        // and delayed acknowledgements add ~40 ms to a round trip.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY");
            }
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await
    }
}

/// How many queued events the hub handles before it fans their changes out.
const BATCH: usize = 256;

fn run_hub<D: SyncDocs>(mut hub: Hub, mut docs: D, mut inbox: mpsc::Receiver<Command>, metrics: &Metrics) {
    let mut conns: HashMap<ConnId, mpsc::Sender<Outgoing>> = HashMap::new();
    while let Some(first) = inbox.blocking_recv() {
        let started = std::time::Instant::now();
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
}

async fn upgrade(ws: WebSocketUpgrade, State(relay): State<Relay>) -> Response {
    let max = relay.config.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection(socket, relay, Access::full()))
        .into_response()
}

async fn connection(socket: WebSocket, relay: Relay, access: Access) {
    let conn = relay.next_conn.fetch_add(1, Ordering::Relaxed);
    Metrics::add(&relay.metrics.connections_total, 1);
    let (out_tx, mut out_rx) = mpsc::channel(relay.config.outgoing_queue);
    if relay.commands.send(Command::Register { conn, out: out_tx }).await.is_err()
        || relay.commands.send(Command::Event(Event::Connected { conn, access })).await.is_err()
    {
        return;
    }
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = relay.shutdown.clone();
    let close = |code: u16, reason: &str| WsMessage::Close(Some(CloseFrame { code, reason: truncate(reason).into() }));
    loop {
        tokio::select! {
            // Frames from the peer go to the hub; the hub's inbox is bounded, so a flood of
            // frames waits here instead of piling up in memory.
            incoming = stream.next() => {
                let frame = match incoming {
                    Some(Ok(WsMessage::Binary(bytes))) => bytes,
                    Some(Ok(WsMessage::Text(_))) => {
                        let _ = sink.send(close(code::UNSUPPORTED, "text frames are not part of the protocol; send CBOR in binary frames")).await;
                        break;
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) | None => break,
                    Some(Err(e)) => {
                        let too_big = e.to_string().contains("too long") || e.to_string().contains("too big");
                        let code = if too_big { code::TOO_BIG } else { code::PROTOCOL };
                        let _ = sink.send(close(code, &format!("bad frame: {e}"))).await;
                        break;
                    }
                };
                Metrics::add(&relay.metrics.messages_in, 1);
                Metrics::add(&relay.metrics.bytes_in, frame.len() as u64);
                match Message::decode(&frame) {
                    Ok(message) => {
                        if relay.commands.send(Command::Event(Event::Received { conn, message })).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        Metrics::add(&relay.metrics.closed_protocol, 1);
                        let reply = Message::Error { sender: Some(relay.config.hub.peer_id.clone()), target: None, message: format!("malformed message: {e}") };
                        let _ = sink.send(WsMessage::Binary(reply.encode().into())).await;
                        let _ = sink.send(close(code::PROTOCOL, &format!("malformed message: {e}"))).await;
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
            _ = shutdown.changed() => {
                let _ = sink.send(close(code::GOING_AWAY, "relay shutting down")).await;
                break;
            }
        }
    }
    // Give the close frame a moment to leave; the peer's reply does not matter.
    let _ = tokio::time::timeout(Duration::from_millis(100), sink.close()).await;
    let _ = relay.commands.send(Command::Event(Event::Disconnected { conn })).await;
    tracing::debug!(conn, "connection closed");
}

/// Close-frame reasons are limited to 123 bytes.
fn truncate(reason: &str) -> String {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
