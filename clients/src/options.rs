//! Options every command that opens a replica shares, and their defaults.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use cairn::{Access, GraphName, OpenOptions, Replica};
use cairn_sync::{ClientOptions, ConnectError, SyncClient};

/// Where the replica lives, who writes, which graph, and where to sync.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReplicaOpts {
    /// The replica's database file [default: <data dir>/cairn/memory.db]
    #[arg(long, env = "CAIRN_DB", global = true, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,
    /// Who is writing, recorded with every change [default: <user>@<host>]
    #[arg(long, env = "CAIRN_AGENT", global = true, value_name = "NAME")]
    pub(crate) agent: Option<String>,
    /// The graph (a memory space shared by a team of agents)
    #[arg(long, env = "CAIRN_GRAPH", global = true, value_name = "NAME", default_value = "default")]
    pub(crate) graph: String,
    /// A relay to sync with (ws://host:port)
    #[arg(long, env = "CAIRN_RELAY", global = true, value_name = "URL")]
    pub(crate) relay: Option<String>,
    /// The relay access token
    #[arg(long, env = "CAIRN_TOKEN", global = true, value_name = "TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Extra certificate authorities (PEM) to trust for a wss:// relay with a private CA
    #[arg(long, env = "CAIRN_CA_FILE", global = true, value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// full: a returned write survives power loss (synchronous=FULL); normal: it survives a
    /// crash of the process, not of the machine (synchronous=NORMAL), about twice as fast
    #[arg(long, env = "CAIRN_DURABILITY", global = true, value_enum, default_value_t = DurabilityArg::Full)]
    pub(crate) durability: DurabilityArg,
    /// Open the replica read-only: write nothing, not even what reads mark as seen, and refuse
    /// writes. Without it, a file this user may not write (or on a read-only mount) is opened
    /// read-only anyway, and every read says so
    #[arg(long, env = "CAIRN_READ_ONLY", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) read_only: bool,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DurabilityArg {
    /// synchronous=FULL
    Full,
    /// synchronous=NORMAL
    Normal,
}

impl From<DurabilityArg> for cairn::Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Full => cairn::Durability::Full,
            DurabilityArg::Normal => cairn::Durability::Normal,
        }
    }
}

/// The per-user data directory: `$XDG_DATA_HOME/cairn`, else `~/.local/share/cairn`.
pub(crate) fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("cairn");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/cairn"),
        None => PathBuf::from(".cairn"),
    }
}

/// `<user>@<host>`, from the environment and `/etc/hostname`.
pub(crate) fn default_agent() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "agent".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

impl ReplicaOpts {
    pub(crate) fn db_path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(|| data_dir().join("memory.db"))
    }

    pub(crate) fn agent_name(&self) -> String {
        self.agent.clone().unwrap_or_else(default_agent)
    }

    pub(crate) fn open(&self) -> Result<Arc<Replica>> {
        let graph: GraphName = self.graph.parse()?;
        let agent = self.agent_name().parse().with_context(|| "invalid --agent".to_string())?;
        let path = self.db_path();
        let access = if self.read_only { Access::ReadOnly } else { Access::Auto };
        let options = OpenOptions::new(agent).graph(graph).durability(self.durability.into()).access(access);
        Ok(Arc::new(Replica::open_with(&path, options)?))
    }

    pub(crate) fn client_options(&self, url: &str) -> ClientOptions {
        let mut options = ClientOptions::new(url).token(self.token.clone());
        options.ca_file = self.ca_file.clone();
        options
    }
}

/// How long a one-shot command waits for a relay before carrying on locally.
pub(crate) const SYNC_WAIT: Duration = Duration::from_secs(10);

/// A replica, synced with the relay (if one is configured) for the length of a command: it pulls
/// before the command reads, and pushes after it writes.
pub(crate) struct Session {
    pub(crate) replica: Arc<Replica>,
    client: Option<SyncClient>,
    relay: Option<String>,
    /// Whether the user was already told why syncing fails (say it once per command).
    warned: std::sync::atomic::AtomicBool,
}

impl Session {
    /// Opens the replica and, with a relay, syncs until both sides agree (or the wait ends).
    pub(crate) async fn open(opts: &ReplicaOpts) -> Result<Session> {
        // Opening may wait for another process's write lock (a first open, a migration).
        let o = opts.clone();
        let replica = tokio::task::spawn_blocking(move || o.open()).await??;
        // A read-only replica cannot take in what a relay would send: it reads the file as it is.
        let relay = opts.relay.as_deref().filter(|_| replica.read_only().is_none());
        if let (Some(url), Some(cause)) = (opts.relay.as_deref(), replica.read_only()) {
            crate::output::warn(&format!(
                "not syncing with {}: {} is read-only ({cause}); reading what the file holds",
                cairn_sync::redacted_url(url),
                replica.path().display()
            ));
        }
        let client = relay.map(|url| SyncClient::spawn(replica.clone(), opts.client_options(url)));
        let session = Session { replica, client, relay: opts.relay.clone(), warned: Default::default() };
        session.settle().await;
        Ok(session)
    }

    /// Waits until everything is pushed and pulled; warns on stderr if the relay cannot be reached
    /// or refuses the token (then it does not wait the full time: retrying will not help).
    pub(crate) async fn settle(&self) -> bool {
        let Some(client) = &self.client else { return true };
        let settled = client.wait_settled(SYNC_WAIT).await;
        if !settled && !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            crate::output::warn(&self.trouble(client));
        }
        settled
    }

    /// Why the session is not in step with the relay, in one line.
    fn trouble(&self, client: &SyncClient) -> String {
        let relay = cairn_sync::redacted_url(self.relay.as_deref().unwrap_or("the relay"));
        match client.last_error() {
            Some(e @ ConnectError::Unauthorized { .. }) => {
                format!("{relay}: {e}; check --token / CAIRN_TOKEN. Working locally, changes will sync later")
            }
            Some(e) => format!(
                "could not sync with {relay} within {}s ({e}); working locally, changes will sync later",
                SYNC_WAIT.as_secs()
            ),
            None => format!(
                "could not sync with {relay} within {}s; working locally, changes will sync later",
                SYNC_WAIT.as_secs()
            ),
        }
    }

    /// Why the session is not in step, if it has a relay and is not.
    pub(crate) fn last_error(&self) -> Option<ConnectError> {
        self.client.as_ref().and_then(|c| c.last_error())
    }

    /// What the relay lacks, if a relay is configured.
    pub(crate) async fn pending(&self) -> Option<cairn_sync::Pending> {
        match &self.client {
            Some(c) => c.pending().await.ok(),
            None => None,
        }
    }

    /// Pushes what was written and detaches.
    pub(crate) async fn close(self) {
        self.settle().await;
        if let Some(c) = self.client {
            c.stop().await;
        }
    }
}
