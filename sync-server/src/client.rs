//! The sync client: keeps a [`Replica`] in sync with a relay (or a serving peer) from a
//! background tokio task. It reconnects with jittered exponential backoff (which only a
//! connection that stayed up resets: `backoff.rs`), pushes offline
//! writes on reconnect, and feeds a [`Driver`] (the core's sans-IO session, which alone sets the
//! replica's freshness). Every driver step does storage work, so it runs on tokio's blocking
//! pool, never on a runtime worker.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use cairn::sync::wire::Message;
use cairn::sync::{Driver, Effect, Input, ReplicaDocs, SessionConfig};
use cairn::{DocId, Replica, now_millis};

use crate::backoff::Backoff;

/// How the client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The relay's websocket URL (`ws://127.0.0.1:7878`).
    pub url: String,
    /// Other nodes of the same relay to fail over to, in turn, when a connection is lost or
    /// refused (docs/scaling.md); each attempt waits the same jittered backoff.
    pub fallbacks: Vec<String>,
    /// A bearer token, if the relay requires one.
    pub token: Option<String>,
    /// First reconnect delay; it doubles up to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// How long a connection must stay up before its end resets the reconnect delay to
    /// `min_backoff`. A connection that ends sooner (a relay refusing the client right after
    /// the handshake, say) doubles it, like a failed attempt.
    pub healthy_after: Duration,
    /// How often to look for changes made by other processes and retry stalled exchanges.
    pub tick: Duration,
    /// Largest message accepted from the relay.
    pub max_message_bytes: usize,
    /// A PEM file of extra certificate authorities to trust for `wss://` (for a relay with a
    /// private CA); the built-in web roots are always trusted.
    pub ca_file: Option<std::path::PathBuf>,
}

impl ClientOptions {
    /// Defaults for `url`: backoff from 100 ms to 10 s, reset by a connection that stayed up
    /// 30 s; a 200 ms tick; 64 MiB messages.
    pub fn new(url: impl Into<String>) -> Self {
        ClientOptions {
            url: url.into(),
            fallbacks: Vec::new(),
            token: None,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            healthy_after: Duration::from_secs(30),
            tick: Duration::from_millis(200),
            max_message_bytes: 64 << 20,
            ca_file: None,
        }
    }

    /// Options for a comma-separated list of relay URLs (`--relay URL1,URL2`, `CAIRN_RELAY`):
    /// the first, failing over to the others.
    pub fn for_relays(urls: &str) -> Self {
        let mut all = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned);
        let mut options = ClientOptions::new(all.next().unwrap_or_default());
        options.fallbacks = all.collect();
        options
    }

    /// Sets the bearer token.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
}

/// Traffic counters of a sync client (all connections since it started).
#[derive(Debug, Default)]
pub struct Traffic {
    /// Bytes received in protocol frames.
    pub bytes_in: AtomicU64,
    /// Bytes sent in protocol frames.
    pub bytes_out: AtomicU64,
    /// Frames received.
    pub frames_in: AtomicU64,
    /// Frames sent.
    pub frames_out: AtomicU64,
    /// Successful connections.
    pub connects: AtomicU64,
}

/// Why the client is not connected, as of its last attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The relay refused the credentials (HTTP 401 or 403): no token, or a wrong, expired or
    /// revoked one (the relay's reason, if it gave one). Retrying will not help until the token
    /// changes.
    #[error("the relay refused the token (HTTP {status}): {reason}")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// What the relay said, or a summary.
        reason: String,
    },
    /// The relay is at its limit of connections for this token (HTTP 429).
    #[error("the relay has too many connections with this token (HTTP 429)")]
    TooManyConnections,
    /// Nothing can be reached at the relay's address right now: its host name does not resolve,
    /// or the connection was refused or has no route. No answer is on its way, so a caller that
    /// cannot wait long should not wait at all (unlike a relay that accepts the connection and is
    /// slow to answer, which is [`ConnectError::Failed`] once it times out).
    #[error("{0}")]
    Unreachable(String),
    /// Anything else: TLS failure, bad URL, a handshake that timed out, connection lost.
    #[error("{0}")]
    Failed(String),
}

impl ConnectError {
    /// Whether another attempt in a moment may succeed: false when the relay refused the token
    /// (until the token changes) or could not be reached at all (until the relay is back).
    pub fn retrying_soon_helps(&self) -> bool {
        !matches!(self, ConnectError::Unauthorized { .. } | ConnectError::Unreachable(_))
    }
}

/// A running sync client. Dropping it stops the task too, but [`SyncClient::stop`] waits for a
/// clean close.
#[derive(Debug)]
pub struct SyncClient {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    connected: watch::Receiver<bool>,
    traffic: Arc<Traffic>,
    remote: RemoteHeadsMap,
    replica: Arc<Replica>,
    read_only: Arc<std::sync::atomic::AtomicBool>,
    last_error: Arc<std::sync::Mutex<Option<ConnectError>>>,
    /// Notified each time a connection attempt fails or a connection ends.
    attempt_ended: Arc<Notify>,
}

/// What the other side last announced it holds, per document.
type RemoteHeadsMap = Arc<std::sync::Mutex<std::collections::BTreeMap<DocId, Vec<cairn::automerge::ChangeHash>>>>;

impl SyncClient {
    /// Starts syncing `replica` in a task on the current tokio runtime.
    pub fn spawn(replica: Arc<Replica>, options: ClientOptions) -> SyncClient {
        let (stop, stop_rx) = watch::channel(false);
        let (connected_tx, connected) = watch::channel(false);
        let traffic = Arc::new(Traffic::default());
        let remote = RemoteHeadsMap::default();
        let read_only = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let attempt_ended = Arc::new(Notify::new());
        let shared = Shared {
            traffic: traffic.clone(),
            remote: remote.clone(),
            read_only: read_only.clone(),
            last_error: last_error.clone(),
            attempt_ended: attempt_ended.clone(),
        };
        let task = tokio::spawn(run(replica.clone(), options, stop_rx, connected_tx, shared));
        SyncClient { stop, task: Some(task), connected, traffic, remote, replica, read_only, last_error, attempt_ended }
    }

    /// Why the last connection attempt failed or the last connection ended; `None` while
    /// connected and before the first attempt ends.
    pub fn last_error(&self) -> Option<ConnectError> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the other side accepts no changes from this replica (a read-only token).
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// How many of this replica's changes the other side has not acknowledged, and whether every
    /// document's heads are known to match (everything pushed and pulled). Reads the replica on
    /// tokio's blocking pool.
    pub async fn pending(&self) -> cairn::Result<Pending> {
        let announced = self.remote.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let read_only = self.is_read_only();
        let connected = self.is_connected();
        crate::off_runtime(&self.replica, move |r| {
            pending(ReplicaDocs::new(r.clone()), &announced, connected, read_only)
        })
        .await
    }

    /// Waits (up to `timeout`) until this replica and the other side hold the same heads for
    /// every document: everything pushed and pulled. Returns whether that happened; gives up
    /// as soon as an attempt fails in a way retrying soon will not fix (the token refused, the
    /// relay unreachable: [`ConnectError::retrying_soon_helps`]; [`SyncClient::last_error`]
    /// says which).
    pub async fn wait_settled(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.pending().await.is_ok_and(|p| p.settled) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline || self.last_error().is_some_and(|e| !e.retrying_soon_helps()) {
                return false;
            }
            // Woken early when an attempt ends, so a refused connection is known at once.
            let ended = self.attempt_ended.notified();
            let _ = tokio::time::timeout(Duration::from_millis(20), ended).await;
        }
    }

    /// Traffic so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until the connection is up (or `timeout` passes); returns whether it is.
    pub async fn wait_connected(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.connected.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    /// Closes the connection cleanly and ends the task; the replica reads as `local` again.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What the other side of a sync connection lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// Changes of this replica the other side has not acknowledged (all of them while the other
    /// side's heads are unknown).
    pub changes: usize,
    /// Connected, and both sides hold the same heads for every document (for a read-only
    /// connection: this side holds everything the other has).
    pub settled: bool,
    /// The other side accepts no changes from this one.
    pub read_only: bool,
}

/// What the other side lacks, given what it announced (blocking: it reads the replica).
fn pending(
    mut docs: ReplicaDocs,
    announced: &std::collections::BTreeMap<DocId, Vec<cairn::automerge::ChangeHash>>,
    connected: bool,
    read_only: bool,
) -> cairn::Result<Pending> {
    let mut out = Pending { changes: 0, settled: connected, read_only };
    let replica = docs.replica().clone();
    for (doc, _) in replica.docs().all() {
        let Some(theirs) = announced.get(&doc) else {
            out.changes += docs.missing_from(doc, &[])?;
            out.settled = false;
            continue;
        };
        out.changes += docs.missing_from(doc, theirs)?;
        if read_only {
            // Nothing can be pushed: settled once everything is pulled.
            out.settled &= cairn::sync::SyncDocs::has_all(&mut docs, &doc, theirs)?;
        } else {
            let mut mine = cairn::sync::SyncDocs::heads(&mut docs, &doc)?;
            let mut theirs = theirs.clone();
            mine.sort();
            theirs.sort();
            out.settled &= mine == theirs;
        }
    }
    Ok(out)
}

/// State a sync task shares with its [`SyncClient`].
struct Shared {
    traffic: Arc<Traffic>,
    remote: RemoteHeadsMap,
    read_only: Arc<std::sync::atomic::AtomicBool>,
    last_error: Arc<std::sync::Mutex<Option<ConnectError>>>,
    attempt_ended: Arc<Notify>,
}

/// Why a connection ended.
enum End {
    Stopped,
    Lost(ConnectError),
}

impl From<String> for End {
    fn from(why: String) -> Self {
        End::Lost(ConnectError::Failed(why))
    }
}

/// A little randomness for jitter, without a dependency: std's per-process random hash keys.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let frac = (h.finish() % 1000) as f64 / 1000.0;
    // Somewhere in [d/2, d): peers that lost the relay together do not all return together.
    d.mul_f64(0.5 + frac / 2.0)
}

async fn run(
    replica: Arc<Replica>,
    options: ClientOptions,
    mut stop: watch::Receiver<bool>,
    connected: watch::Sender<bool>,
    shared: Shared,
) {
    let Shared { traffic, remote, read_only, last_error, attempt_ended } = shared;
    // Attached from here until this task ends, however it ends: the driver detaches on drop.
    let mut driver = Some(attach(&replica, &options.url));
    let notify = Arc::new(Notify::new());
    let changed: Arc<std::sync::Mutex<BTreeSet<DocId>>> = Arc::default();
    let (waker, pending) = (notify.clone(), changed.clone());
    let _subscription = replica.subscribe(move |docs| {
        pending.lock().unwrap_or_else(|p| p.into_inner()).extend(docs.iter().copied());
        waker.notify_one();
    });
    let mut backoff = Backoff::new(options.min_backoff, options.max_backoff, options.healthy_after);
    let urls: Vec<String> = std::iter::once(options.url.clone()).chain(options.fallbacks.iter().cloned()).collect();
    let mut current = 0;
    let mut options = options;
    loop {
        if *stop.borrow() {
            break;
        }
        // How long the connection was up, if it came up.
        let mut up = None;
        // A stop ends an attempt too: a relay that accepts TCP and never answers must not hold
        // `stop` for the whole connect timeout.
        let attempt = tokio::select! {
            attempt = connect(&options) => attempt,
            _ = stop.changed() => break,
        };
        let end = match attempt {
            Ok(ws) => {
                let since = tokio::time::Instant::now();
                *last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let _ = connected.send(true);
                traffic.connects.fetch_add(1, Ordering::Relaxed);
                tracing::info!(url = %redacted_url(&options.url), "connected");
                remote.lock().unwrap_or_else(|p| p.into_inner()).clear();
                let end = session(
                    ws,
                    &mut driver,
                    &replica,
                    &options,
                    (&notify, &changed),
                    &mut stop,
                    (&traffic, &remote, &read_only),
                )
                .await;
                let _ = connected.send(false);
                up = Some(since.elapsed());
                end
            }
            Err(e) => End::Lost(e),
        };
        let delay = jitter(backoff.ended(up));
        let _ = step(&mut driver, (&replica, &options.url), |d, now| d.handle(now, Input::Disconnected)).await;
        match end {
            End::Stopped => break,
            End::Lost(why) => {
                match &why {
                    ConnectError::Failed(_) | ConnectError::Unreachable(_) => {
                        tracing::info!(url = %redacted_url(&options.url), %why, retry_in = ?delay, "sync connection lost")
                    }
                    refused => {
                        tracing::warn!(url = %redacted_url(&options.url), why = %refused, retry_in = ?delay, "relay refused")
                    }
                }
                *last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                attempt_ended.notify_waiters();
                if urls.len() > 1 {
                    // Fail over. The next node is another relay as far as freshness goes: a new
                    // link named by its URL, offline until it connects and behind until it has
                    // said what it holds (each node has its own storage id).
                    current = (current + 1) % urls.len();
                    options.url = urls[current].clone();
                    // Attached now, not at the next connection: between the two the replica is
                    // offline, never "no relay".
                    drop(driver.take());
                    driver = Some(attach(&replica, &options.url));
                    tracing::info!(url = %redacted_url(&options.url), "failing over to another relay node");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => break,
        }
    }
}

/// The URL without its query: a `?token=` must not end up in logs or messages.
pub fn redacted_url(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(options: &ClientOptions) -> Result<Ws, ConnectError> {
    let failed = ConnectError::Failed;
    let mut request = options
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| failed(format!("bad relay URL {}: {e}", redacted_url(&options.url))))?;
    if let Some(token) = &options.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| failed("the token has characters a header cannot carry".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(options.max_message_bytes))
        .max_frame_size(Some(options.max_message_bytes));
    // wss:// with our TLS configuration: the built-in web roots plus any extra CA.
    let connector = if request.uri().scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("wss")) {
        let tls = crate::tls::client_config(options.ca_file.as_deref()).map_err(|e| failed(e.to_string()))?;
        Some(tokio_tungstenite::Connector::Rustls(tls))
    } else {
        None
    };
    let attempt = async {
        let tcp = reach(request.uri()).await?;
        tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(config), connector)
            .await
            .map_err(Attempt::Ws)
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Err(Attempt::Unreachable(why))) => Err(ConnectError::Unreachable(why)),
        Ok(Err(Attempt::Failed(why))) => Err(failed(why)),
        Ok(Err(Attempt::Ws(e))) => Err(handshake_error(e, failed)),
        Ok(Ok((ws, _))) => Ok(ws),
        Err(_) => Err(failed("connecting timed out".into())),
    }
}

/// How a connection attempt failed: before anything answered, or in the websocket handshake.
enum Attempt {
    Unreachable(String),
    Failed(String),
    Ws(tokio_tungstenite::tungstenite::Error),
}

/// Resolves the relay's host and opens a TCP connection to it. Done here rather than inside
/// tokio-tungstenite so that "nothing is there" (no such name, refused, no route) is told apart
/// from a relay that is there and slow.
async fn reach(uri: &tokio_tungstenite::tungstenite::http::Uri) -> Result<tokio::net::TcpStream, Attempt> {
    let bad = |why: &str| Attempt::Failed(why.to_owned());
    let host = uri.host().ok_or_else(|| bad("the relay URL has no host"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some(s)) if s.eq_ignore_ascii_case("wss") => 443,
        (None, Some(s)) if s.eq_ignore_ascii_case("ws") => 80,
        _ => return Err(bad("the relay URL is not ws:// or wss://")),
    };
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Attempt::Unreachable(format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Attempt::Unreachable(format!("{host} resolves to no address")));
    }
    let tcp = tokio::net::TcpStream::connect(&addrs[..]).await.map_err(|e| {
        use std::io::ErrorKind::{AddrNotAvailable, ConnectionRefused, HostUnreachable, NetworkUnreachable};
        match e.kind() {
            ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable => {
                Attempt::Unreachable(format!("{host}:{port}: {e}"))
            }
            _ => Attempt::Failed(format!("{host}:{port}: {e}")),
        }
    })?;
    // Sync messages are small and latency-bound.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// What a failed websocket handshake means for the client.
fn handshake_error(e: tokio_tungstenite::tungstenite::Error, failed: fn(String) -> ConnectError) -> ConnectError {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(response) => match response.status().as_u16() {
            status @ (401 | 403) => {
                let said = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                let said: String = said.trim().chars().filter(|c| !c.is_control()).take(200).collect();
                let reason =
                    if said.is_empty() { "the token is missing, wrong, expired or revoked".to_owned() } else { said };
                ConnectError::Unauthorized { status, reason }
            }
            429 => ConnectError::TooManyConnections,
            code => failed(format!("the relay answered HTTP {code} to the websocket upgrade")),
        },
        e => failed(e.to_string()),
    }
}

/// A new driver on `replica` (offline until its first connection), syncing with `url` (its
/// freshness is listed under the URL without its query).
fn attach(replica: &Arc<Replica>, url: &str) -> Driver {
    let docs = ReplicaDocs::new(replica.clone());
    let config = session_config(&docs);
    Driver::attach_to(docs, config, now_millis(), redacted_url(url))
}

/// Runs one driver step on tokio's blocking pool (it does SQLite work). A step that panics (a
/// bug) takes its driver with it, which detaches; the next step attaches a fresh one.
async fn step<T: Send + 'static>(
    driver: &mut Option<Driver>,
    (replica, url): (&Arc<Replica>, &str),
    f: impl FnOnce(&mut Driver, cairn::Millis) -> cairn::Result<T> + Send + 'static,
) -> Result<T, String> {
    let mut d = driver.take().unwrap_or_else(|| attach(replica, url));
    let joined = tokio::task::spawn_blocking(move || {
        let result = f(&mut d, now_millis());
        (d, result)
    })
    .await;
    match joined {
        Ok((d, result)) => {
            *driver = Some(d);
            result.map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("sync step failed: {e}")),
    }
}

fn session_config(docs: &ReplicaDocs) -> SessionConfig {
    let random = cairn::automerge::ActorId::random().to_hex_string();
    SessionConfig {
        peer_id: format!("cairn-{}", &random[..16.min(random.len())]).into(),
        storage_id: Some(docs.storage_id()),
        docs: docs.replica().docs().all().map(|(id, _)| id).collect(),
        resync_after: 5_000,
        handshake_timeout: 5_000,
    }
}

async fn session(
    mut ws: Ws,
    driver: &mut Option<Driver>,
    replica: &Arc<Replica>,
    options: &ClientOptions,
    (notify, changed): (&Notify, &std::sync::Mutex<BTreeSet<DocId>>),
    stop: &mut watch::Receiver<bool>,
    (traffic, remote, read_only): (&Traffic, &RemoteHeadsMap, &std::sync::atomic::AtomicBool),
) -> End {
    let mut input = Some(Input::Connected);
    let mut tick = tokio::time::interval(options.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The log position the session last offered: changes other processes log in the file wake
    // no one here, so each tick compares (on the blocking pool) and offers what is new.
    let mut seen: Option<cairn::LogPosition> = None;
    loop {
        if let Some(i) = input.take() {
            let last = seen;
            // One read of the log position per step: after a received message (what it brought
            // is logged, and is not this side's to offer), before anything else (which logs
            // nothing; a tick that finds the file moved offers what is new).
            let result = step(driver, (replica, &options.url), move |d, now| match i {
                Input::Received(_) => {
                    let effects = d.handle(now, i)?;
                    Ok((effects, d.docs().log_position()?))
                }
                i => {
                    let position = d.docs().log_position()?;
                    let i = match i {
                        Input::Tick if last.is_some_and(|l| l != position) => Input::LocalChange(None),
                        i => i,
                    };
                    Ok((d.handle(now, i)?, position))
                }
            })
            .await;
            let effects = match result {
                Ok((effects, position)) => {
                    seen = Some(position);
                    effects
                }
                Err(e) => return End::from(e),
            };
            for effect in effects {
                match effect {
                    Effect::Send(m) => {
                        let bytes = m.encode();
                        traffic.frames_out.fetch_add(1, Ordering::Relaxed);
                        traffic.bytes_out.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        if let Err(e) = ws.send(WsMessage::Binary(bytes.into())).await {
                            return End::from(e.to_string());
                        }
                    }
                    Effect::Close { reason } => {
                        let _ = ws
                            .close(Some(CloseFrame { code: CloseCode::Protocol, reason: reason.clone().into() }))
                            .await;
                        return End::from(reason);
                    }
                    Effect::RemoteHeads(doc, heads) => {
                        remote.lock().unwrap_or_else(|p| p.into_inner()).insert(doc, heads);
                    }
                    Effect::PeerReadOnly => {
                        read_only.store(true, Ordering::Relaxed);
                        tracing::warn!(url = %redacted_url(&options.url), "the relay accepts no changes with this token (read-only): local changes stay local");
                    }
                    // Freshness is the driver's to record, and it did.
                    Effect::Behind | Effect::Synced => {}
                }
            }
        }
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    traffic.frames_in.fetch_add(1, Ordering::Relaxed);
                    traffic.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    match Message::decode(&bytes) {
                        Ok(m) => input = Some(Input::Received(m)),
                        Err(e) => {
                            let _ = ws.close(Some(CloseFrame { code: CloseCode::Protocol, reason: "malformed message".into() })).await;
                            return End::from(format!("malformed message from the relay: {e}"));
                        }
                    }
                }
                Some(Ok(WsMessage::Close(frame))) => return End::from(frame.map(|f| f.reason.to_string()).unwrap_or_else(|| "closed".into())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return End::from(e.to_string()),
                None => return End::from("connection closed".to_string()),
            },
            _ = notify.notified() => {
                let docs: Vec<DocId> = std::mem::take(&mut *changed.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
                input = Some(Input::LocalChange(Some(docs)));
            }
            _ = tick.tick() => input = Some(Input::Tick),
            _ = stop.changed() => {
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "detached".into() })).await;
                return End::Stopped;
            }
        }
    }
}
