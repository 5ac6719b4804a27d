//! One websocket connection's task: frames from the peer go to the hub thread, frames from the
//! hub go to the peer, and every per-connection limit is enforced here — message rate, idle
//! time, the time to `join`, the write timeout, and the relay-wide budget of bytes waiting for
//! the hub.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use cairn::sync::wire::Message;

use crate::hub::{Access, ConnId, Event};
use crate::metrics::Metrics;
use crate::server::{Command, Outgoing, Relay, TokenSlot};

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
pub(crate) async fn run(socket: WebSocket, relay: Relay, access: Access, slot: Option<TokenSlot>) {
    let conn = relay.next_conn();
    let _active = relay.active_guard();
    Metrics::add(&relay.metrics().connections_total, 1);
    let token = slot.as_ref().map(|s| s.token().to_owned());
    relay.track_token(conn, token.as_deref());
    tracing::debug!(conn, token = ?token, "connection opened");
    let (out_tx, mut out_rx) = mpsc::channel(relay.config().outgoing_queue);
    let ended = if relay.send(Command::Register { conn, out: out_tx }).await
        && relay.send(Command::Event(Event::Connected { conn, access })).await
    {
        serve(socket, &relay, conn, &mut out_rx).await
    } else {
        Cow::Borrowed("relay stopping")
    };
    relay.send(Command::Event(Event::Disconnected { conn })).await;
    relay.track_token(conn, None);
    drop(slot);
    tracing::info!(conn, token = ?token, reason = %ended, "connection closed");
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

/// Sends a frame, giving up after `within`: a peer that stops reading must not hold its task
/// (and its token's connection slot) forever.
async fn send(sink: &mut Sink, frame: WsMessage, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, sink.send(frame)).await, Ok(Ok(())))
}

fn close(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame { code, reason: truncate(reason).into() }))
}

/// Serves the connection; returns why it ended.
async fn serve(
    socket: WebSocket,
    relay: &Relay,
    conn: ConnId,
    out_rx: &mut mpsc::Receiver<Outgoing>,
) -> Cow<'static, str> {
    let config = relay.config();
    let write_timeout = config.write_timeout;
    let (mut sink, mut stream) = socket.split();
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
    ping.tick().await;
    let refuse = |reason: String| {
        Metrics::add(&relay.metrics().closed_protocol, 1);
        reason
    };
    let ended: Cow<'static, str> = loop {
        tokio::select! {
            // Frames from the peer go to the hub; the hub's inbox is bounded in messages and in
            // bytes, so a flood of frames waits here instead of piling up in memory.
            incoming = stream.next() => {
                last_heard = Instant::now();
                // Every frame counts against the rate, control frames too.
                if matches!(incoming, Some(Ok(_))) && !bucket.take() {
                    let reason = refuse(format!("message rate above {} per second; slow down", config.messages_per_second));
                    let _ = send(&mut sink, close(code::POLICY, &reason), write_timeout).await;
                    break reason.into();
                }
                let frame = match incoming {
                    Some(Ok(WsMessage::Binary(bytes))) => bytes,
                    Some(Ok(WsMessage::Text(_))) => {
                        let reason = refuse("text frames are not part of the protocol; send CBOR in binary frames".into());
                        let _ = send(&mut sink, close(code::UNSUPPORTED, &reason), write_timeout).await;
                        break reason.into();
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) | None => break "closed by the peer".into(),
                    Some(Err(e)) => {
                        let text = e.to_string();
                        let too_big = text.contains("too long") || text.contains("too big");
                        let reason = refuse(format!("bad frame: {text}"));
                        let code = if too_big { code::TOO_BIG } else { code::PROTOCOL };
                        let _ = send(&mut sink, close(code, &reason), write_timeout).await;
                        break reason.into();
                    }
                };
                Metrics::add(&relay.metrics().messages_in, 1);
                Metrics::add(&relay.metrics().bytes_in, frame.len() as u64);
                match Message::decode(&frame) {
                    Ok(message) => {
                        joined = true;
                        let Some(permit) = relay.reserve(frame.len()).await else { break "relay stopping".into() };
                        if !relay.send(Command::Received { event: Event::Received { conn, message }, _permit: permit }).await {
                            break "relay stopping".into();
                        }
                    }
                    Err(e) => {
                        let reason = refuse(format!("malformed message: {e}"));
                        let reply = Message::Error { sender: Some(config.hub.peer_id.clone()), target: None, message: reason.clone() };
                        let _ = send(&mut sink, WsMessage::Binary(reply.encode().into()), write_timeout).await;
                        let _ = send(&mut sink, close(code::PROTOCOL, &reason), write_timeout).await;
                        break reason.into();
                    }
                }
            }
            // Frames from the hub go to the peer.
            outgoing = out_rx.recv() => match outgoing {
                Some(Outgoing::Frame(bytes)) => {
                    if !send(&mut sink, WsMessage::Binary(bytes.into()), write_timeout).await {
                        break format!("the peer did not take a frame within {write_timeout:?}").into();
                    }
                }
                Some(Outgoing::Close { code, reason }) => {
                    let _ = send(&mut sink, close(code, &reason), write_timeout).await;
                    break reason.into();
                }
                // The hub dropped this connection (too slow a reader).
                None => {
                    let reason = "too slow: the outgoing queue is full";
                    let _ = send(&mut sink, close(code::POLICY, reason), write_timeout).await;
                    break reason.into();
                }
            },
            // Keep-alive, idle and handshake deadlines.
            _ = ping.tick() => {
                if !joined && opened.elapsed() >= config.handshake_timeout {
                    let reason = refuse(format!("no join within {:?}", config.handshake_timeout));
                    let _ = send(&mut sink, close(code::POLICY, &reason), write_timeout).await;
                    break reason.into();
                }
                if last_heard.elapsed() >= config.idle_timeout {
                    let _ = send(&mut sink, close(code::NORMAL, "idle timeout"), write_timeout).await;
                    break "idle timeout".into();
                }
                if !send(&mut sink, WsMessage::Ping(Vec::new().into()), write_timeout).await {
                    break "the peer stopped reading".into();
                }
            }
            _ = shutdown.changed() => {
                let _ = send(&mut sink, close(code::GOING_AWAY, "relay shutting down"), write_timeout).await;
                break "relay shutting down".into();
            }
        }
    };
    // Give the close frame a moment to leave; the peer's reply does not matter.
    let _ = tokio::time::timeout(Duration::from_millis(100), sink.close()).await;
    ended
}

/// Close-frame reasons are limited to 123 bytes.
fn truncate(reason: &str) -> String {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
