//! One websocket connection's task: frames from the peer go to the hub thread, frames from the
//! hub go to the peer, and every per-connection limit is enforced here — message rate, idle
//! time, the time to `join`, the write timeout, and the relay-wide budget of bytes waiting for
//! the hub. (The outgoing queue's bounds are enforced as the hub thread fills it: `queue.rs`.)

use std::borrow::Cow;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};

use cairn::sync::wire::Message;

use crate::hub::{Access, ConnId, Event};
use crate::metrics::Metrics;
use crate::server::{Command, Outgoing, Queue, Relay, TokenSlot};

/// Close codes (RFC 6455).
pub(crate) mod code {
    pub(crate) const NORMAL: u16 = 1000;
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const PROTOCOL: u16 = 1002;
    pub(crate) const UNSUPPORTED: u16 = 1003;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const TOO_BIG: u16 = 1009;
}

/// Runs a connection from its upgrade to its end, then tells the hub and frees its slot.
pub(crate) async fn run(socket: WebSocket, relay: Relay, access: Access, mut slot: Option<TokenSlot>) {
    let conn = relay.next_conn();
    let _active = relay.active_guard();
    Metrics::add(&relay.metrics().connections_total, 1);
    if let Some(slot) = &mut slot {
        slot.attach(conn);
    }
    let token = slot.as_ref().map(TokenSlot::token);
    tracing::debug!(conn, token = ?token, "connection opened");
    let (outbox, mut out_rx) =
        crate::server::outgoing_queue(relay.config().outgoing_queue, relay.config().max_outgoing_bytes);
    let ended = if relay.send(Command::Register { conn, out: outbox }).await
        && relay.send(Command::Event(Event::Connected { conn, access })).await
    {
        serve(socket, &relay, conn, &mut out_rx).await
    } else {
        Cow::Borrowed("relay stopping")
    };
    relay.send(Command::Event(Event::Disconnected { conn })).await;
    tracing::info!(conn, token = ?token, reason = %ended, "connection closed");
    drop(slot);
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

type Sink = SplitSink<WebSocket, WsMessage>;

/// The longest a close frame may take to leave: a courtesy to the peer, never a wait on it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a connection task can take to end once told to: a frame already being written (the
/// write timeout), the close frame, and the socket's shutdown. Relay shutdown waits this long.
pub(crate) fn longest_ending(write_timeout: Duration) -> Duration {
    write_timeout + CLOSE_TIMEOUT + Duration::from_millis(100)
}

/// Sends a frame, giving up after `within`: a peer that stops reading must not hold its task
/// (and its token's connection slot) forever.
async fn send(sink: &mut Sink, frame: WsMessage, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, sink.send(frame)).await, Ok(Ok(())))
}

/// Why a connection ended, and the close frame to tell the peer (none for a peer that left or
/// stopped reading).
struct Ending {
    close: Option<u16>,
    reason: Cow<'static, str>,
}

impl Ending {
    fn close(code: u16, reason: impl Into<Cow<'static, str>>) -> Ending {
        Ending { close: Some(code), reason: reason.into() }
    }

    fn silent(reason: impl Into<Cow<'static, str>>) -> Ending {
        Ending { close: None, reason: reason.into() }
    }

    fn stopping() -> Ending {
        Ending::close(code::GOING_AWAY, "relay shutting down")
    }
}

/// Writes what the hub sent this connection.
async fn deliver(sink: &mut Sink, outgoing: Option<Outgoing>, queue: &Queue, relay: &Relay) -> Result<(), Ending> {
    let write_timeout = relay.config().write_timeout;
    // The hub gave up on this connection (and counted it): too slow a reader. It is closed
    // before anything more is written, the frames still queued included.
    let too_slow = |queue: &Queue| queue.given_up().map(|reason| Ending::close(code::POLICY, reason.to_owned()));
    if let Some(ending) = too_slow(queue) {
        return Err(ending);
    }
    match outgoing {
        Some(Outgoing::Frame(bytes)) => {
            let len = bytes.len();
            let sent = send(sink, WsMessage::Binary(bytes.into()), write_timeout).await;
            queue.written(len);
            match (sent, too_slow(queue)) {
                (true, _) => Ok(()),
                (false, Some(ending)) => Err(ending),
                (false, None) => {
                    Metrics::add(&relay.metrics().closed_slow, 1);
                    Err(Ending::silent(format!("the peer did not take a frame within {write_timeout:?}")))
                }
            }
        }
        Some(Outgoing::Close { code, reason }) => Err(Ending::close(code, reason)),
        // The hub dropped this connection without giving up on it: it is stopping.
        None => Err(too_slow(queue).unwrap_or_else(Ending::stopping)),
    }
}

/// Waits for `work` (the hub's budget or inbox) while still delivering the hub's frames, so a
/// connection held up by the hub never falls behind on its own outgoing queue.
async fn delivering<T>(
    work: impl Future<Output = T>,
    sink: &mut Sink,
    out_rx: &mut Queue,
    relay: &Relay,
) -> Result<T, Ending> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Ok(done),
            outgoing = out_rx.recv() => deliver(sink, outgoing, out_rx, relay).await?,
        }
    }
}

/// Serves the connection; returns why it ended.
async fn serve(socket: WebSocket, relay: &Relay, conn: ConnId, out_rx: &mut Queue) -> Cow<'static, str> {
    let (mut sink, stream) = socket.split();
    let Err(ending) = exchange(&mut sink, stream, relay, conn, out_rx).await;
    if let Some(code) = ending.close {
        let within = relay.config().write_timeout.min(CLOSE_TIMEOUT);
        let frame = WsMessage::Close(Some(CloseFrame { code, reason: truncate(&ending.reason).into() }));
        let _ = send(&mut sink, frame, within).await;
    }
    // Give the close frame a moment to leave; the peer's reply does not matter.
    let _ = tokio::time::timeout(Duration::from_millis(100), sink.close()).await;
    ending.reason
}

/// Moves frames both ways until something ends the connection (`?` ends it too).
async fn exchange(
    sink: &mut Sink,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    relay: &Relay,
    conn: ConnId,
    out_rx: &mut Queue,
) -> Result<std::convert::Infallible, Ending> {
    let config = relay.config();
    let write_timeout = config.write_timeout;
    let mut shutdown = relay.shutdown_signal();
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
    // After a wait on the hub, one tick, not a burst of catch-up ticks.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let refuse = |code: u16, reason: String| {
        Metrics::add(&relay.metrics().closed_protocol, 1);
        Ending::close(code, reason)
    };
    loop {
        tokio::select! {
            // Frames from the peer go to the hub; the hub's inbox is bounded in messages and in
            // bytes, so a flood of frames waits here instead of piling up in memory.
            incoming = stream.next() => {
                last_heard = Instant::now();
                // Every frame counts against the rate, control frames too.
                if matches!(incoming, Some(Ok(_))) && !bucket.take() {
                    let reason = format!("message rate above {} per second; slow down", config.messages_per_second);
                    return Err(refuse(code::POLICY, reason));
                }
                let frame = match incoming {
                    Some(Ok(WsMessage::Binary(bytes))) => bytes,
                    Some(Ok(WsMessage::Text(_))) => {
                        let reason = "text frames are not part of the protocol; send CBOR in binary frames";
                        return Err(refuse(code::UNSUPPORTED, reason.into()));
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) | None => return Err(Ending::silent("closed by the peer")),
                    Some(Err(e)) => {
                        let text = e.to_string();
                        let too_big = text.contains("too long") || text.contains("too big");
                        let code = if too_big { code::TOO_BIG } else { code::PROTOCOL };
                        return Err(refuse(code, format!("bad frame: {text}")));
                    }
                };
                Metrics::add(&relay.metrics().messages_in, 1);
                Metrics::add(&relay.metrics().bytes_in, frame.len() as u64);
                // The frame's bytes count against the budget before it is decoded into a copy.
                let reserved = delivering(relay.reserve(frame.len()), sink, out_rx, relay).await?;
                let permit = reserved.ok_or_else(Ending::stopping)?;
                let message = match Message::decode(&frame) {
                    Ok(message) => message,
                    Err(e) => {
                        let ending = refuse(code::PROTOCOL, format!("malformed message: {e}"));
                        let sender = Some(config.hub.peer_id.clone());
                        let reply = Message::Error { sender, target: None, message: ending.reason.to_string() };
                        let _ = send(sink, WsMessage::Binary(reply.encode().into()), write_timeout).await;
                        return Err(ending);
                    }
                };
                drop(frame);
                joined = true;
                let command = Command::Received { event: Event::Received { conn, message }, permit };
                if !delivering(relay.send(command), sink, out_rx, relay).await? {
                    return Err(Ending::stopping());
                }
                // Time spent waiting on the hub is not the peer's silence.
                last_heard = Instant::now();
            }
            // Frames from the hub go to the peer.
            outgoing = out_rx.recv() => deliver(sink, outgoing, out_rx, relay).await?,
            // Keep-alive, idle and handshake deadlines.
            _ = ping.tick() => {
                if !joined && opened.elapsed() >= config.handshake_timeout {
                    return Err(refuse(code::POLICY, format!("no join within {:?}", config.handshake_timeout)));
                }
                if last_heard.elapsed() >= config.idle_timeout {
                    return Err(Ending::close(code::NORMAL, "idle timeout"));
                }
                if !send(sink, WsMessage::Ping(Vec::new().into()), write_timeout).await {
                    Metrics::add(&relay.metrics().closed_slow, 1);
                    return Err(Ending::silent("the peer stopped reading"));
                }
            }
            _ = shutdown.changed() => return Err(Ending::stopping()),
        }
    }
}

/// Close-frame reasons are limited to 123 bytes.
fn truncate(reason: &str) -> String {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
