//! Peer-to-peer: a replica that listens. Peers (other replicas, stock automerge-repo clients)
//! connect to it over the relay's protocol and sync its graph, with no relay anywhere; the
//! replica may also dial other peers with [`crate::SyncClient`], which is how changes travel
//! across several hops (`docs/peer-to-peer.md`).
//!
//! A listening replica is a relay whose storage is the replica itself ([`crate::serve_replica`]):
//! the same hub, the same door for changes (the schema check, actor ids bound to the token that
//! first wrote under them), the same limits. Who may connect is decided as at a relay, by a
//! token, kept in a small relay file beside the replica's database ([`peer_tokens_file`]),
//! managed with `cairn peer token create|list|revoke`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::{Auth, Relay, RelayConfig, StartError};
use crate::tokens::{TokenError, Tokens};

/// Where a replica keeps the tokens its peers present: `<name>.peers.db` beside its database
/// (`memory.db` → `memory.peers.db`), a relay file holding only tokens.
pub fn peer_tokens_file(db: &Path) -> PathBuf {
    let stem = db.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "memory".into());
    db.with_file_name(format!("{stem}.peers.db"))
}

/// Who may connect to a listening replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAuth {
    /// A token from the replica's [`peer_tokens_file`].
    Tokens,
    /// Anyone who can reach the address; refused on any address but loopback.
    InsecureNoAuth,
}

/// Why a replica could not listen for peers.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// `--insecure-no-auth` on an address other machines can reach.
    #[error(
        "--insecure-no-auth is for loopback only (127.0.0.1, ::1), not {0}: anyone on the network could read and write \
         the graph; create a token with `cairn peer token create --graph <name> --role write` instead"
    )]
    InsecureNotLoopback(SocketAddr),
    /// The peer tokens would not open.
    #[error("cannot open the peer tokens in {path}: {source}")]
    Tokens {
        /// The tokens file.
        path: PathBuf,
        /// Why.
        source: TokenError,
    },
    /// The hub would not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The address could not be bound.
    #[error("cannot listen for peers on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A replica listening for peers. Dropping it stops accepting; [`Listening::stop`] also closes
/// open connections and waits (bounded) for them to end.
#[derive(Debug)]
pub struct Listening {
    local: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Listening {
    /// The address it listens on (the port the system chose, for a port of 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The URL a peer dials: `ws://ADDR`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.local)
    }

    /// Stops accepting, closes every connection with "going away", and waits for the server
    /// to end (bounded by the relay's own shutdown limits).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the peer listener failed while stopping"),
                Err(e) => tracing::warn!(error = %e, "the peer listener's task failed"),
            }
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `replica`'s graph to peers on `addr` (a port of 0 picks one) until stopped, on the
/// current tokio runtime. With [`PeerAuth::Tokens`], a connection must present a token from
/// [`peer_tokens_file`] of the replica's database; with none created yet, nobody can connect
/// (and a warning says how to create one).
pub async fn listen(replica: Arc<cairn::Replica>, addr: SocketAddr, auth: PeerAuth) -> Result<Listening, ListenError> {
    if auth == PeerAuth::InsecureNoAuth && !addr.ip().is_loopback() {
        return Err(ListenError::InsecureNotLoopback(addr));
    }
    let auth = match auth {
        PeerAuth::InsecureNoAuth => Auth::InsecureNoAuth,
        PeerAuth::Tokens => {
            let path = peer_tokens_file(replica.path());
            // Opening the tokens file is SQLite work (a first open creates it): off the runtime.
            let opened = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let tokens = Tokens::open(&path)?;
                    let none = tokens.list()?.is_empty();
                    Ok::<_, TokenError>((tokens, none))
                })
                .await
                .map_err(|e| ListenError::Bind { addr, source: std::io::Error::other(e) })?
            };
            let (tokens, none) = opened.map_err(|source| ListenError::Tokens { path: path.clone(), source })?;
            if none {
                tracing::warn!(
                    tokens = %path.display(),
                    "no peer tokens yet, so no peer can connect: create one with `cairn peer token create --db {} --graph {} --role write`",
                    replica.path().display(),
                    replica.graph()
                );
            }
            Auth::Tokens(tokens)
        }
    };
    let storage_id = cairn::sync::ReplicaDocs::new(replica.clone()).storage_id();
    let hub = crate::HubConfig::new(format!("cairn-peer-{storage_id}"), storage_id);
    let relay: Relay = crate::serve_replica(replica, RelayConfig::new(hub, auth))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ListenError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| ListenError::Bind { addr, source })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(relay.serve(listener, async move {
        // Either a stop or the handle dropped ends serving.
        let _ = stopped.await;
    }));
    tracing::info!(%local, "listening for peers (ws://{local})");
    Ok(Listening { local, stop: Some(stop), task: Some(task) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tokens_file_sits_beside_the_database() {
        assert_eq!(peer_tokens_file(Path::new("/a/memory.db")), Path::new("/a/memory.peers.db"));
        assert_eq!(peer_tokens_file(Path::new("agent")), Path::new("agent.peers.db"));
    }
}
