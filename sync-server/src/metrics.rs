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
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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
        out
    }
}
