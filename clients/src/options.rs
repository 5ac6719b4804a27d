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
    /// A relay to sync with (ws://host:port); nodes of one relay as URL1,URL2, failed over in turn
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
    /// How long to wait for a relay that answers slowly before carrying on locally (0: do not
    /// wait). A relay that refuses the connection or whose name does not resolve is not waited
    /// for at all [default: 1, for `cairn sync` 30]
    #[arg(long, env = "CAIRN_SYNC_TIMEOUT", global = true, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) sync_timeout: Option<Duration>,
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
        // `--relay URL1,URL2`: nodes of one relay, failed over in turn (docs/scaling.md).
        let mut options = ClientOptions::for_relays(url).token(self.token.clone());
        options.ca_file = self.ca_file.clone();
        options
    }
}

/// How long a one-shot command waits for a reachable relay before carrying on locally.
pub(crate) const ONE_SHOT_WAIT: Duration = Duration::from_secs(1);

/// How long `cairn sync` waits, its job being to sync.
pub(crate) const SYNC_COMMAND_WAIT: Duration = Duration::from_secs(30);

/// `--sync-timeout SECS`: a non-negative number of seconds (fractions allowed).
fn parse_secs(s: &str) -> std::result::Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?}: give 0 or more seconds (0: do not wait)"))
}

/// How a session's link with its relay stands after its first wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No relay configured, or not waited on yet.
    Unknown,
    /// In step with the relay.
    Settled,
    /// Connected (or connecting) but not in step within the wait: worth waiting for again.
    Slow,
    /// Unreachable, refused the token, or silent through the whole wait: the session does not
    /// wait again, and says so once.
    Offline,
}

/// A replica, synced with the relay (if one is configured) for the length of a command: it pulls
/// before the command reads, and pushes after it writes. It never waits for a relay that cannot
/// be reached (a refused connection, a name that does not resolve) and waits at most the sync
/// timeout for one that is slow; then the command carries on locally and says so on stderr.
pub(crate) struct Session {
    pub(crate) replica: Arc<Replica>,
    client: Option<SyncClient>,
    relay: Option<String>,
    wait: Duration,
    link: std::sync::Mutex<Link>,
    /// The command reports sync trouble itself (`cairn sync`): no warning from here.
    quiet: bool,
}

impl Session {
    /// Opens the replica and, with a relay, syncs until both sides agree or the one-shot wait
    /// ([`ONE_SHOT_WAIT`], or `--sync-timeout`) ends.
    pub(crate) async fn open(opts: &ReplicaOpts) -> Result<Session> {
        Self::open_waiting(opts, ONE_SHOT_WAIT, false).await
    }

    /// [`Session::open`] with another default wait (`--sync-timeout` still wins); `quiet` when
    /// the command reports sync trouble itself.
    pub(crate) async fn open_waiting(opts: &ReplicaOpts, default_wait: Duration, quiet: bool) -> Result<Session> {
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
        let wait = opts.sync_timeout.unwrap_or(default_wait);
        let session = Session { replica, client, relay: opts.relay.clone(), wait, link: Link::Unknown.into(), quiet };
        session.settle().await;
        Ok(session)
    }

    /// Waits until everything is pushed and pulled, unless the session already found the relay
    /// out of reach; warns once on stderr when it is not in step. Returns whether it is.
    async fn settle(&self) -> bool {
        let Some(client) = &self.client else { return true };
        if self.link() == Link::Offline {
            return false;
        }
        let settled = client.wait_settled(self.wait).await;
        let link = match settled {
            true => Link::Settled,
            false if client.is_connected() => Link::Slow,
            false => Link::Offline,
        };
        let before = std::mem::replace(&mut *self.link.lock().unwrap_or_else(|p| p.into_inner()), link);
        if !settled && !self.quiet && !matches!(before, Link::Slow | Link::Offline) {
            crate::output::warn(&self.trouble(client, link));
        }
        settled
    }

    fn link(&self) -> Link {
        *self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How the link with the relay stands, for `--json` (`None` without a relay): `in_step`,
    /// `offline` (unreachable, token refused, or silent through the wait) or `not_in_step`
    /// (connected, still exchanging).
    pub(crate) fn relay_state(&self) -> Option<&'static str> {
        self.client.as_ref()?;
        Some(match self.link() {
            Link::Settled => "in_step",
            Link::Offline => "offline",
            Link::Slow | Link::Unknown => "not_in_step",
        })
    }

    /// Why the session is not in step with the relay, in one line.
    fn trouble(&self, client: &SyncClient, link: Link) -> String {
        let relay = cairn_sync::redacted_url(self.relay.as_deref().unwrap_or("the relay"));
        let wait = humantime(self.wait);
        match (client.last_error(), link) {
            (Some(e @ ConnectError::Unauthorized { .. }), _) => {
                format!("offline: {relay}: {e}; check --token / CAIRN_TOKEN. Working locally")
            }
            (Some(e @ ConnectError::Unreachable(_)), _) => {
                format!("offline: could not sync with {relay}: unreachable ({e}); working locally")
            }
            (Some(e), Link::Offline) => {
                format!("offline: could not sync with {relay} within {wait} ({e}); working locally")
            }
            (None, Link::Offline) => {
                format!("offline: could not sync with {relay}: no answer within {wait}; working locally")
            }
            (_, _) => format!(
                "could not sync with {relay} within {wait}: connected, not yet in step; working locally \
                 (--sync-timeout waits longer)"
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

    /// Pushes what was written (unless the relay was found out of reach) and detaches. Returns
    /// whether the replica ended in step with the relay (true without a relay).
    pub(crate) async fn close(self) -> bool {
        let settled = self.settle().await;
        if let Some(c) = self.client {
            c.stop().await;
        }
        settled
    }

    /// Runs `write` on tokio's blocking pool, then pushes what it logged and detaches. When the
    /// relay could not take it, says how many changes are saved here and not on the relay yet,
    /// and what will push them.
    pub(crate) async fn write<T: Send + 'static>(
        self,
        write: impl FnOnce(&Arc<Replica>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let replica = self.replica.clone();
        let (changes, out) = tokio::task::spawn_blocking(move || {
            let position = || cairn::sync::ReplicaDocs::new(replica.clone()).log_position();
            let before = position()?;
            let out = write(&replica)?;
            anyhow::Ok((position()?.get() - before.get(), out))
        })
        .await??;
        let db = self.replica.path().to_owned();
        let has_relay = self.client.is_some();
        if !self.close().await && has_relay && changes > 0 {
            crate::output::warn(&format!(
                "{changes} change(s) from this command are saved in {} and not on the relay yet; `cairn sync`, \
                 a running `cairn sync --watch` or `cairn mcp` (same --db and --relay) will push them",
                db.display()
            ));
        }
        Ok(out)
    }
}

/// "1s", "0.5s", "30s".
fn humantime(d: Duration) -> String {
    format!("{}s", (d.as_secs_f64() * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_timeout_is_a_number_of_seconds() {
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_secs(" 30 "), Ok(Duration::from_secs(30)));
        for bad in ["-1", "abc", "", "NaN", "inf", "1e300"] {
            assert!(parse_secs(bad).is_err(), "{bad:?} is refused");
        }
        assert_eq!(humantime(Duration::from_millis(500)), "0.5s");
        assert_eq!(humantime(ONE_SHOT_WAIT), "1s");
    }
}
