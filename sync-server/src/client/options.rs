//! How a sync client connects, and what it counts.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

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
