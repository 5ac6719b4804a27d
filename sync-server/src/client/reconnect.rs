//! The client task: attempts, backoff, failover between relay nodes, and what each end of a
//! connection means for the handle ([`super::SyncClient`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use cairn::sync::Input;
use cairn::{DocId, Replica};

use super::dial::{ConnectError, connect, redacted_url};
use super::session::{End, attach, session, step};
use super::{ClientOptions, Shared};
use crate::backoff::Backoff;

/// A little randomness for jitter, without a dependency: std's per-process random hash keys.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let frac = (h.finish() % 1000) as f64 / 1000.0;
    // Somewhere in [d/2, d): peers that lost the relay together do not all return together.
    d.mul_f64(0.5 + frac / 2.0)
}

pub(super) async fn run(
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
