//! The relay's counters, served at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters and gauges of a running relay. Every field only grows, except the gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open websocket connections (gauge).
    pub connections: AtomicU64,
    /// Documents some connection has open (gauge).
    pub open_docs: AtomicU64,
    /// Changes held because their dependencies have not arrived, over all connections (gauge).
    pub pending_changes: AtomicU64,
    /// What those changes cost, in bytes as the per-message budget counts them (gauge).
    pub pending_bytes: AtomicU64,
    /// Connections accepted.
    pub connections_total: AtomicU64,
    /// Protocol messages received.
    pub messages_in: AtomicU64,
    /// Protocol messages sent.
    pub messages_out: AtomicU64,
    /// Bytes received in protocol messages.
    pub bytes_in: AtomicU64,
    /// Bytes sent in protocol messages.
    pub bytes_out: AtomicU64,
    /// Handshakes refused: no token.
    pub refused_no_token: AtomicU64,
    /// Handshakes refused: unknown, revoked or expired token.
    pub refused_bad_token: AtomicU64,
    /// Handshakes refused: the token already has as many connections as it may.
    pub refused_too_many: AtomicU64,
    /// Connections closed for breaking the protocol or a limit.
    pub closed_protocol: AtomicU64,
    /// Connections closed for reading too slowly.
    pub closed_slow: AtomicU64,
    /// Time the hub spent handling events, in microseconds.
    pub hub_busy_micros: AtomicU64,
    /// Storage writes (changes persisted) and their total latency.
    pub storage_writes: AtomicU64,
    /// Total storage write latency, in microseconds.
    pub storage_write_micros: AtomicU64,
    /// 1 when this node is one of several on a shared store and bus (`cluster.rs`).
    pub clustered: AtomicU64,
    /// 1 when a clustered node was given a bus (without one, it reconciles only).
    pub has_bus: AtomicU64,
    /// 1 while the bus is connected (gauge; clustered nodes only).
    pub bus_up: AtomicU64,
    /// 1 while the last reconciliation reached the store (gauge; clustered nodes only).
    pub store_up: AtomicU64,
    /// Announcements published on the bus.
    pub bus_published: AtomicU64,
    /// Announcements that could not be published.
    pub bus_publish_failed: AtomicU64,
    /// Announcements received from the bus (this node's own included).
    pub bus_received: AtomicU64,
    /// Reconciliations run, and their total latency in microseconds.
    pub reconciles: AtomicU64,
    /// Total reconciliation latency, in microseconds.
    pub reconcile_micros: AtomicU64,
    /// Documents reconciliation found behind the store (announcements this node missed).
    pub reconciled_docs: AtomicU64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// What `/healthz` answers: `ok`, or for a clustered node whether it reaches its store and
    /// its bus (503 when it reaches either not).
    pub fn health(&self) -> (axum::http::StatusCode, String) {
        if self.clustered.load(Ordering::Relaxed) == 0 {
            return (axum::http::StatusCode::OK, "ok\n".into());
        }
        let word = |c: &AtomicU64| if c.load(Ordering::Relaxed) == 1 { "ok" } else { "unreachable" };
        let store = word(&self.store_up);
        let bus = if self.has_bus.load(Ordering::Relaxed) == 1 { word(&self.bus_up) } else { "ok" };
        let status = if store == "ok" && bus == "ok" {
            axum::http::StatusCode::OK
        } else {
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        };
        let bus = if self.has_bus.load(Ordering::Relaxed) == 1 { bus } else { "none (reconciliation only)" };
        (status, format!("store: {store}\nbus: {bus}\n"))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut put = |name: &str, kind: &str, help: &str, value: u64, labels: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        put("cairn_relay_connections", "gauge", "Open websocket connections.", get(&self.connections), "");
        put("cairn_relay_open_documents", "gauge", "Documents open on some connection.", get(&self.open_docs), "");
        put(
            "cairn_relay_pending_changes",
            "gauge",
            "Changes held because their dependencies have not arrived.",
            get(&self.pending_changes),
            "",
        );
        put(
            "cairn_relay_pending_bytes",
            "gauge",
            "What the changes held for their dependencies cost, in bytes.",
            get(&self.pending_bytes),
            "",
        );
        put("cairn_relay_connections_total", "counter", "Connections accepted.", get(&self.connections_total), "");
        put("cairn_relay_messages_in_total", "counter", "Protocol messages received.", get(&self.messages_in), "");
        put("cairn_relay_messages_out_total", "counter", "Protocol messages sent.", get(&self.messages_out), "");
        put("cairn_relay_bytes_in_total", "counter", "Bytes received in protocol messages.", get(&self.bytes_in), "");
        put("cairn_relay_bytes_out_total", "counter", "Bytes sent in protocol messages.", get(&self.bytes_out), "");
        let _ = writeln!(
            out,
            "# HELP cairn_relay_rejected_handshakes_total Handshakes refused, by reason.\n# TYPE cairn_relay_rejected_handshakes_total counter"
        );
        for (reason, c) in [
            ("no_token", &self.refused_no_token),
            ("bad_token", &self.refused_bad_token),
            ("too_many", &self.refused_too_many),
        ] {
            let _ = writeln!(out, "cairn_relay_rejected_handshakes_total{{reason=\"{reason}\"}} {}", get(c));
        }
        let _ = writeln!(
            out,
            "# HELP cairn_relay_closed_total Connections closed by the relay, by reason.\n# TYPE cairn_relay_closed_total counter"
        );
        for (reason, c) in [("protocol", &self.closed_protocol), ("slow", &self.closed_slow)] {
            let _ = writeln!(out, "cairn_relay_closed_total{{reason=\"{reason}\"}} {}", get(c));
        }
        let mut put = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        put(
            "cairn_relay_hub_busy_seconds_total",
            "counter",
            "Time the hub spent handling events.",
            get(&self.hub_busy_micros) as f64 / 1e6,
        );
        put(
            "cairn_relay_storage_writes_total",
            "counter",
            "Storage write transactions.",
            get(&self.storage_writes) as f64,
        );
        put(
            "cairn_relay_storage_write_seconds_total",
            "counter",
            "Total latency of storage write transactions (divide by writes for the mean).",
            get(&self.storage_write_micros) as f64 / 1e6,
        );
        if get(&self.clustered) == 1 {
            for (name, kind, help, value) in [
                ("cairn_relay_bus_up", "gauge", "1 while the bus is connected.", get(&self.bus_up)),
                (
                    "cairn_relay_store_up",
                    "gauge",
                    "1 while the last reconciliation reached the store.",
                    get(&self.store_up),
                ),
                (
                    "cairn_relay_bus_published_total",
                    "counter",
                    "Announcements published on the bus.",
                    get(&self.bus_published),
                ),
                (
                    "cairn_relay_bus_publish_failed_total",
                    "counter",
                    "Announcements that could not be published.",
                    get(&self.bus_publish_failed),
                ),
                (
                    "cairn_relay_bus_received_total",
                    "counter",
                    "Announcements received from the bus.",
                    get(&self.bus_received),
                ),
                (
                    "cairn_relay_reconciles_total",
                    "counter",
                    "Reconciliations of loaded documents with the store.",
                    get(&self.reconciles),
                ),
                (
                    "cairn_relay_reconciled_documents_total",
                    "counter",
                    "Documents reconciliation found behind the store.",
                    get(&self.reconciled_docs),
                ),
            ] {
                put(name, kind, help, value as f64);
            }
            put(
                "cairn_relay_reconcile_seconds_total",
                "counter",
                "Total latency of reconciliation queries (divide by reconciliations for the mean).",
                get(&self.reconcile_micros) as f64 / 1e6,
            );
        }
        out
    }
}
