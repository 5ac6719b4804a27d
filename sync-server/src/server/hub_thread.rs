//! The hub thread: one thread of its own runs the [`Hub`] over the relay's storage, because every
//! step does synchronous storage work, which must not run on the async runtime's workers. It takes
//! connections' messages in batches, handles them, fans their changes out once per batch, and
//! hands each connection task its frames.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use cairn::sync::SyncDocs;

use super::queue::{Outbox, Refused};
use crate::connection::code;
use crate::hub::{Action, ConnId, Event, Hub};
use crate::metrics::Metrics;

/// What a connection task hands the hub thread.
pub(crate) enum Command {
    Register {
        conn: ConnId,
        out: Outbox,
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

/// How many queued events the hub handles before it fans their changes out.
const BATCH: usize = 256;

pub(super) fn run_hub<D: SyncDocs + crate::hub::ActorBook>(
    mut hub: Hub,
    mut docs: D,
    mut inbox: mpsc::Receiver<Command>,
    metrics: &Metrics,
) {
    let mut conns: HashMap<ConnId, Outbox> = HashMap::new();
    let mut stopping = false;
    // The hub's own clock, for waiting on the inbox until its next flush falls due.
    let timer = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(timer) => timer,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the hub's timer; the hub stops");
            return;
        }
    };
    loop {
        // The next command, or none when the hub's next flush falls due first.
        let first = match hub.next_flush() {
            None => inbox.blocking_recv().map(Some),
            Some(at) => {
                let wait = Duration::from_millis(at.saturating_sub(cairn::now_millis()).max(0) as u64);
                timer
                    .block_on(async { tokio::time::timeout(wait, inbox.recv()).await })
                    .map_or(Some(None), |c| c.map(Some))
            }
        };
        // Every sender is gone.
        let Some(first) = first else { break };
        let started = Instant::now();
        // Take whatever else is already waiting, handle it all, then fan out once: under load,
        // one message per connection carries the changes of many writers.
        let mut batch: Vec<Command> = first.into_iter().collect();
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
        // Connections dropped for reading too slowly (or gone): the hub forgets them below.
        let mut dropped = Vec::new();
        for action in actions {
            match action {
                Action::Send { conn, message } => {
                    let Some(out) = conns.get(&conn) else { continue };
                    let frame = message.encode();
                    Metrics::add(&metrics.messages_out, 1);
                    Metrics::add(&metrics.bytes_out, frame.len() as u64);
                    match out.push(frame) {
                        Ok(()) => {}
                        Err(refused) => {
                            let out = conns.remove(&conn).expect("just found");
                            if let Refused::TooSlow(reason) = refused {
                                // Counted first, so a peer that sees its close also sees it in
                                // /metrics. The connection task closes with the reason (and
                                // logs it) before the next frame it would write.
                                Metrics::add(&metrics.closed_slow, 1);
                                out.give_up(reason);
                            }
                            dropped.push(conn);
                        }
                    }
                }
                Action::Close { conn, reason, protocol_error } => {
                    if protocol_error {
                        Metrics::add(&metrics.closed_protocol, 1);
                    }
                    // The connection's task logs the reason when it ends.
                    if let Some(out) = conns.remove(&conn) {
                        let code = if protocol_error { code::PROTOCOL } else { code::POLICY };
                        out.close(code, reason);
                    }
                }
            }
        }
        for conn in dropped {
            let _ = hub.handle(cairn::now_millis(), Event::Disconnected { conn }, &mut docs);
        }
        metrics.connections.store(hub.connections() as u64, Ordering::Relaxed);
        metrics.open_docs.store(hub.open_docs() as u64, Ordering::Relaxed);
        metrics.pending_changes.store(hub.pending_changes() as u64, Ordering::Relaxed);
        metrics.pending_bytes.store(hub.pending_bytes(), Ordering::Relaxed);
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
