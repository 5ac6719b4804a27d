//! Peer-to-peer for `cairn sync --watch` and `cairn mcp`: listening for peers (`--listen`),
//! dialing them (`--peer`, `CAIRN_PEERS`), finding them on the LAN (`--discover`), and
//! `cairn peer token`, which manages the tokens peers present (`docs/peer-to-peer.md`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use cairn::Replica;
use cairn_sync::{ClientOptions, Listening, PeerAuth, SyncClient};

use crate::commands::relay::TokenCommand;
use crate::options::ReplicaOpts;

/// How a long-running replica meets its peers.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PeerArgs {
    /// Listen for peers on this address (127.0.0.1:7879; port 0 picks a free one): they sync
    /// this replica's graph over the relay's protocol, presenting a token from `cairn peer token
    /// create` (or none with --insecure-no-auth)
    #[arg(long, env = "CAIRN_LISTEN", value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// A peer to sync with, ws://HOST:PORT (repeatable; CAIRN_PEERS takes a comma-separated list)
    #[arg(long = "peer", env = "CAIRN_PEERS", value_delimiter = ',', value_name = "URL")]
    pub(crate) peers: Vec<String>,
    /// The token to present to peers (one their side created with `cairn peer token create`).
    /// The relay's --token is never sent to peers
    #[arg(long, env = "CAIRN_PEER_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub(crate) peer_token: Option<String>,
    /// With --listen on a loopback address: let any local process connect with no token (for
    /// experiments; refused on any other address)
    #[arg(long, requires = "listen")]
    pub(crate) insecure_no_auth: bool,
    /// Announce this replica on the LAN with mDNS/DNS-SD (its --listen port and graph) and dial
    /// the peers of the same graph found so, presenting --peer-token
    #[arg(long, env = "CAIRN_DISCOVER", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) discover: bool,
}

impl PeerArgs {
    /// Whether any peer-to-peer option is given.
    pub(crate) fn configured(&self) -> bool {
        self.listen.is_some() || !self.peers.is_empty() || self.discover
    }
}

/// A replica's peers: the listener, and a sync client per peer it dials. Ends with
/// [`Peering::stop`] (or, less gracefully, when dropped).
pub(crate) struct Peering {
    listening: Option<Listening>,
    dialing: Vec<(String, SyncClient)>,
    discovery: Option<crate::discover::Discovery>,
}

impl Peering {
    /// Starts listening and dialing as `args` say, on the current runtime.
    pub(crate) async fn start(replica: &Arc<Replica>, args: &PeerArgs, opts: &ReplicaOpts) -> Result<Peering> {
        if let Some(cause) = replica.read_only() {
            bail!(
                "cannot sync with peers: {} is read-only ({cause}); it could not take in what they send",
                replica.path().display()
            );
        }
        if args.discover && args.listen.is_none() {
            bail!("--discover announces this replica's --listen address: add --listen ADDR");
        }
        let listening = match args.listen {
            Some(addr) => {
                let auth = if args.insecure_no_auth { PeerAuth::InsecureNoAuth } else { PeerAuth::Tokens };
                Some(cairn_sync::listen(replica.clone(), addr, auth).await?)
            }
            None => None,
        };
        let mut peering = Peering { listening, dialing: Vec::new(), discovery: None };
        for url in &args.peers {
            peering.dial(replica, url, args, opts)?;
        }
        if args.discover
            && let Some(listening) = &peering.listening
        {
            peering.discovery = Some(crate::discover::Discovery::start(replica, listening.local_addr(), args, opts)?);
        }
        Ok(peering)
    }

    /// Starts syncing with the peer at `url`.
    fn dial(&mut self, replica: &Arc<Replica>, url: &str, args: &PeerArgs, opts: &ReplicaOpts) -> Result<()> {
        let url = url.trim();
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            bail!("--peer {url:?}: give a websocket URL, ws://HOST:PORT");
        }
        let options = peer_options(url, args, opts);
        self.dialing.push((cairn_sync::redacted_url(url).to_owned(), SyncClient::spawn(replica.clone(), options)));
        Ok(())
    }

    /// The URL peers dial to reach this replica, if it listens.
    pub(crate) fn listening(&self) -> Option<String> {
        self.listening.as_ref().map(Listening::url)
    }

    /// The peers dialed (`--peer`; discovered ones are in [`Replica::peers`] too), each with why
    /// its last connection failed, if it did.
    pub(crate) fn dialed(&self) -> Vec<(String, Option<String>)> {
        self.dialing.iter().map(|(url, c)| (url.clone(), c.last_error().map(|e| e.to_string()))).collect()
    }

    /// Stops discovery, every sync client and the listener.
    pub(crate) async fn stop(self) {
        if let Some(d) = self.discovery {
            d.stop().await;
        }
        for (_, client) in self.dialing {
            client.stop().await;
        }
        if let Some(l) = self.listening {
            l.stop().await;
        }
    }
}

/// How a peer at `url` is dialed: with --peer-token (never the relay's token) and --ca-file.
pub(crate) fn peer_options(url: &str, args: &PeerArgs, opts: &ReplicaOpts) -> ClientOptions {
    let mut options = ClientOptions::new(url).token(args.peer_token.clone());
    options.ca_file = opts.ca_file.clone();
    options
}

/// `cairn peer`.
#[derive(Debug, Clone, Args)]
pub(crate) struct PeerCommandArgs {
    /// The replica's database file whose peer tokens these are (they live beside it, in
    /// <name>.peers.db) [default: <data dir>/cairn/memory.db]
    #[arg(long, env = "CAIRN_DB", global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: PeerCommand,
}

#[derive(Debug, Clone, Subcommand)]
enum PeerCommand {
    /// Manage the tokens peers present to this replica when it listens (works while it runs)
    #[command(subcommand)]
    Token(TokenCommand),
}

/// Runs `cairn peer`.
pub(crate) async fn run(args: PeerCommandArgs) -> Result<()> {
    let db = args.db.unwrap_or_else(|| crate::options::data_dir().join("memory.db"));
    let PeerCommand::Token(command) = args.command;
    tokio::task::spawn_blocking(move || {
        let file = cairn_sync::peer_tokens_file(&db);
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        crate::commands::relay::tokens(&file, "--peer-token or CAIRN_PEER_TOKEN on the dialing side", command)
    })
    .await?
}
