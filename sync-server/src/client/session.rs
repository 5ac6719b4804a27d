//! One connection: feeds the driver what arrives, what this process and others write, and a
//! tick; sends what it says to send; counts the traffic.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use cairn::sync::wire::Message;
use cairn::sync::{Driver, Effect, Input, ReplicaDocs, SessionConfig};
use cairn::{DocId, Replica, now_millis};

use super::dial::{ConnectError, Ws, redacted_url};
use super::{ClientOptions, RemoteHeadsMap, Traffic};

/// Why a connection ended.
pub(super) enum End {
    Stopped,
    Lost(ConnectError),
}

impl From<String> for End {
    fn from(why: String) -> Self {
        End::Lost(ConnectError::Failed(why))
    }
}

/// A new driver on `replica` (offline until its first connection), syncing with `url` (its
/// freshness is listed under the URL without its query).
pub(super) fn attach(replica: &Arc<Replica>, url: &str) -> Driver {
    let docs = ReplicaDocs::new(replica.clone());
    let config = session_config(&docs);
    Driver::attach_to(docs, config, now_millis(), redacted_url(url))
}

/// Runs one driver step on tokio's blocking pool (it does SQLite work). A step that panics (a
/// bug) takes its driver with it, which detaches; the next step attaches a fresh one.
pub(super) async fn step<T: Send + 'static>(
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

pub(super) async fn session(
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
