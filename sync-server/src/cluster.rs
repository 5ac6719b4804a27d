//! Several relay nodes on one PostgreSQL store, told of each other's writes over NATS.
//!
//! A node that commits a change publishes the document, its new version and heads on the bus;
//! every other node that has the document loaded at an older version marks it stale (its next
//! use loads what it lacks from PostgreSQL, `storage/postgres`) and tells its hub, which offers
//! the new changes to its own connections. The bus is only a hint: a node that misses messages
//! (it was restarted, NATS was, or the link dropped) finds out by **reconciliation**, which
//! compares the versions of every loaded document with PostgreSQL's, every
//! [`ClusterOptions::reconcile_every`] and at once when the bus reconnects. So a node serves a
//! document at most one reconciliation interval behind what another node committed, whatever
//! NATS does, and never anything that is not committed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use cairn::DocId;
use cairn::automerge::ChangeHash;

use crate::metrics::Metrics;
use crate::server::Notifier;
use crate::storage::{Committed, Versions};

/// Where the nodes meet.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The PostgreSQL URL (for reconciliation's own connection).
    pub store: String,
    /// The NATS URL (`nats://host:port`); empty: no bus, reconciliation only.
    pub bus: String,
    /// The subject announcements go to; nodes of one cluster share it.
    pub subject: String,
    /// How often loaded documents' versions are compared with PostgreSQL's.
    pub reconcile_every: Duration,
}

impl ClusterOptions {
    /// No bus: other nodes' writes are seen only by reconciliation, so every interval.
    pub fn bus_off(&mut self) {
        self.bus.clear();
    }

    /// Defaults: subject `cairn.relay.changed`, reconciliation every 2 s.
    pub fn new(store: impl Into<String>, bus: impl Into<String>) -> Self {
        ClusterOptions {
            store: store.into(),
            bus: bus.into(),
            subject: "cairn.relay.changed".into(),
            reconcile_every: Duration::from_secs(2),
        }
    }
}

/// An announcement on the bus: document id (16 bytes), version (8 bytes, big-endian), heads
/// (32 bytes each).
fn encode(c: &Committed) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + 32 * c.heads.len());
    out.extend_from_slice(c.doc.as_bytes());
    out.extend_from_slice(&c.version.to_be_bytes());
    for h in &c.heads {
        out.extend_from_slice(&h.0);
    }
    out
}

/// Reads an announcement; `None` for anything malformed (ignored: reconciliation covers it).
fn decode(bytes: &[u8]) -> Option<Committed> {
    if bytes.len() < 24 || !(bytes.len() - 24).is_multiple_of(32) {
        return None;
    }
    let doc = DocId::from_bytes(bytes[..16].try_into().ok()?);
    let version = i64::from_be_bytes(bytes[16..24].try_into().ok()?);
    let heads = bytes[24..].chunks_exact(32).map(|h| h.try_into().map(ChangeHash)).collect::<Result<_, _>>().ok()?;
    Some(Committed { doc, version, heads })
}

/// Starts the bus (a task on the current runtime) and reconciliation (a thread of its own: it
/// does synchronous PostgreSQL work). Both end when the relay's hub does.
pub(crate) fn start(
    options: ClusterOptions,
    versions: Arc<Versions>,
    committed: mpsc::UnboundedReceiver<Committed>,
    notifier: Notifier,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    metrics.clustered.store(1, Ordering::Relaxed);
    metrics.has_bus.store(u64::from(!options.bus.is_empty()), Ordering::Relaxed);
    let (wake, woken) = std::sync::mpsc::channel::<()>();
    {
        let (versions, notifier, metrics, options) =
            (versions.clone(), notifier.clone(), metrics.clone(), options.clone());
        std::thread::Builder::new()
            .name("cairn-reconcile".into())
            .spawn(move || reconcile_loop(&options, &versions, &notifier, &metrics, &woken))?;
    }
    tokio::spawn(bus(options, versions, committed, notifier, metrics, wake));
    Ok(())
}

async fn bus(
    options: ClusterOptions,
    versions: Arc<Versions>,
    mut committed: mpsc::UnboundedReceiver<Committed>,
    notifier: Notifier,
    metrics: Arc<Metrics>,
    wake: std::sync::mpsc::Sender<()>,
) {
    if options.bus.is_empty() {
        return drain(committed).await;
    }
    let events = {
        let (metrics, wake) = (metrics.clone(), std::sync::Mutex::new(wake.clone()));
        move |event: async_nats::Event| {
            match event {
                async_nats::Event::Connected => {
                    metrics.bus_up.store(1, Ordering::Relaxed);
                    // Messages may have been missed while away: compare versions now.
                    let _ = wake.lock().unwrap_or_else(|p| p.into_inner()).send(());
                    tracing::info!("bus connected");
                }
                async_nats::Event::Disconnected => {
                    metrics.bus_up.store(0, Ordering::Relaxed);
                    tracing::warn!("bus disconnected; reconciling with the store until it is back");
                }
                other => tracing::debug!(event = %other, "bus event"),
            }
            async {}
        }
    };
    let connecting = async_nats::ConnectOptions::new()
        .event_callback(events)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| Duration::from_millis((100 * attempt as u64).min(2000)))
        .connect(options.bus.as_str());
    let client = match connecting.await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the bus; nodes learn of each other's writes by reconciliation only");
            return drain(committed).await;
        }
    };
    let mut subscription = match client.subscribe(options.subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe on the bus; nodes learn of each other's writes by reconciliation only");
            return drain(committed).await;
        }
    };
    loop {
        tokio::select! {
            c = committed.recv() => {
                // The store is gone: the hub stopped.
                let Some(c) = c else { break };
                match client.publish(options.subject.clone(), encode(&c).into()).await {
                    Ok(()) => Metrics::add(&metrics.bus_published, 1),
                    // Reconciliation on the other nodes finds it.
                    Err(e) => {
                        Metrics::add(&metrics.bus_publish_failed, 1);
                        tracing::debug!(error = %e, "could not announce a change");
                    }
                }
            }
            m = subscription.next() => {
                let Some(m) = m else { break };
                Metrics::add(&metrics.bus_received, 1);
                let Some(c) = decode(&m.payload) else { continue };
                if versions.saw(&c.doc, c.version) && !notifier.changed_elsewhere(vec![c.doc]).await {
                    break;
                }
            }
        }
    }
    drop(client);
}

/// Without a bus: take commits and drop them until the hub stops.
async fn drain(mut committed: mpsc::UnboundedReceiver<Committed>) {
    while committed.recv().await.is_some() {}
}

fn reconcile_loop(
    options: &ClusterOptions,
    versions: &Versions,
    notifier: &Notifier,
    metrics: &Metrics,
    woken: &std::sync::mpsc::Receiver<()>,
) {
    let mut link: Option<crate::storage::PgLink> = None;
    loop {
        match woken.recv_timeout(options.reconcile_every) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // The bus task ended: the relay is stopping.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if !notifier.alive() {
            return;
        }
        let started = Instant::now();
        match reconcile(&options.store, &mut link, versions) {
            Ok(behind) => {
                metrics.store_up.store(1, Ordering::Relaxed);
                Metrics::add(&metrics.reconciles, 1);
                Metrics::add(&metrics.reconcile_micros, started.elapsed().as_micros() as u64);
                if !behind.is_empty() {
                    Metrics::add(&metrics.reconciled_docs, behind.len() as u64);
                    tracing::info!(documents = behind.len(), "reconciliation found documents behind the store");
                    if !notifier.changed_elsewhere_blocking(behind) {
                        return;
                    }
                }
            }
            Err(e) => {
                metrics.store_up.store(0, Ordering::Relaxed);
                link = None;
                tracing::warn!(error = %e, "cannot reach the store to reconcile");
            }
        }
    }
}

/// The loaded documents PostgreSQL holds a newer version of (marked stale).
fn reconcile(
    url: &str,
    link: &mut Option<crate::storage::PgLink>,
    versions: &Versions,
) -> Result<Vec<DocId>, postgres::Error> {
    let client = match link {
        Some(l) => l,
        None => link.insert(crate::storage::PgLink::open(url)?),
    }
    .get()?;
    versions.prune();
    let known = versions.all();
    if known.is_empty() {
        client.simple_query("SELECT 1")?;
        return Ok(Vec::new());
    }
    let ids: Vec<&[u8]> = known.iter().map(|(d, _)| &d.as_bytes()[..]).collect();
    let rows = client.query("SELECT doc, version FROM cairn_docs WHERE doc = ANY($1)", &[&ids])?;
    let mut behind = Vec::new();
    for row in rows {
        let doc: Vec<u8> = row.get(0);
        let Ok(doc) = <[u8; 16]>::try_from(doc.as_slice()) else { continue };
        let doc = DocId::from_bytes(doc);
        if versions.saw(&doc, row.get(1)) {
            behind.push(doc);
        }
    }
    Ok(behind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_malformed_ones_are_ignored() {
        let c = Committed {
            doc: DocId::from_bytes([7; 16]),
            version: 42,
            heads: vec![ChangeHash([1; 32]), ChangeHash([2; 32])],
        };
        assert_eq!(decode(&encode(&c)), Some(c.clone()));
        let bytes = encode(&c);
        assert_eq!(decode(&bytes[..23]), None);
        assert_eq!(decode(&bytes[..30]), None);
    }
}
