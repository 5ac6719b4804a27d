//! `cairn relay`: run a relay, and manage its tokens.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use cairn_sync::tokens::{Graphs, Role, parse_duration};
use cairn_sync::{RelayStore, Tokens};

use crate::options::DurabilityArg;
use crate::output;

/// Options of `cairn relay`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RelayArgs {
    #[command(subcommand)]
    command: Option<RelayCommand>,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the relay stores graphs and tokens [default: <data dir>/cairn/relay]
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// How hard a commit works to survive power loss: full (synchronous=FULL), or normal (survives
    /// a crash of the relay, not a power loss); the same setting replicas take
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    durability: DurabilityArg,
    /// The old name of --durability normal, kept so existing service files still start
    #[arg(long, hide = true)]
    fast_commits: bool,
    /// Let anyone who can reach the relay read and write every graph (local development only)
    #[arg(long)]
    insecure_no_auth: bool,
    /// Serve wss:// with this PEM certificate chain (with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Keep graphs, tokens and actor bindings in this PostgreSQL database instead of --data, as
    /// one of several relay nodes (docs/scaling.md)
    #[arg(long, global = true, value_name = "postgres://...", conflicts_with = "data", value_parser = store_url)]
    store: Option<String>,
    /// With --store: hear of other nodes' writes over this NATS server
    #[arg(long, value_name = "nats://HOST:PORT", requires = "store", value_parser = bus_url)]
    bus: Option<String>,
}

/// `--store`: a PostgreSQL URL (the only shared store there is).
fn store_url(s: &str) -> Result<String, String> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_owned())
    } else {
        Err("expected a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE (without --store, the relay keeps its data in --data)".into())
    }
}

/// `--bus`: a NATS URL.
fn bus_url(s: &str) -> Result<String, String> {
    if s.starts_with("nats://") { Ok(s.to_owned()) } else { Err("expected a NATS URL, nats://HOST:PORT".into()) }
}

#[derive(Debug, Clone, Subcommand)]
enum RelayCommand {
    /// Manage access tokens (works on the data directory, also while the relay runs)
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; it is printed once, on the last line (only its hash is kept)
    Create {
        /// A graph the token may use (repeatable; `*` for every graph)
        #[arg(long = "graph", required = true, value_name = "NAME")]
        graphs: Vec<String>,
        /// read, or write (read and write)
        #[arg(long, value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Role>()))]
        role: Role,
        /// Expire after this long (30d, 12h, 90m, 3600s)
        #[arg(long, value_name = "DURATION", value_parser = clap::builder::ValueParser::new(|s: &str| parse_duration(s)))]
        expires: Option<i64>,
        /// A note for humans (who it is for)
        #[arg(long)]
        label: Option<String>,
        /// An agent name the token's changes may claim (repeatable; `*` matches any run of
        /// characters, as in `planner@*`). Without it, any name (self-declared)
        #[arg(long = "agent", value_name = "PATTERN")]
        agents: Vec<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets)
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: new connections are refused and open ones closed
    Revoke {
        /// The token's id (from `list`)
        id: String,
    },
}

pub(crate) async fn run(args: RelayArgs) -> Result<()> {
    let data = args.data.clone().unwrap_or_else(|| crate::options::data_dir().join("relay"));
    match args.command {
        Some(RelayCommand::Token(t)) if args.store.is_some() => {
            let url = args.store.unwrap_or_default();
            tokio::task::spawn_blocking(move || {
                let store = cairn_sync::PgTokens::open(&url).context("cannot open the relay's PostgreSQL store")?;
                run_tokens(Tokens::new(std::sync::Arc::new(store)), "--token or CAIRN_TOKEN", t)
            })
            .await?
        }
        Some(RelayCommand::Token(t)) => {
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
                tokens(&RelayStore::file_in(&data), "--token or CAIRN_TOKEN", t)
            })
            .await?
        }
        None => {
            let durability = if args.fast_commits {
                tracing::warn!("--fast-commits is deprecated: use --durability normal");
                cairn::Durability::Normal
            } else {
                args.durability.into()
            };
            let tls = args.tls_cert.zip(args.tls_key);
            let options = cairn_sync::RelayOptions {
                durability,
                insecure_no_auth: args.insecure_no_auth,
                tls,
                store: args.store,
                bus: args.bus,
            };
            cairn_sync::run_relay(args.listen, &data, options).await?;
            Ok(())
        }
    }
}

/// Runs a token command on the tokens in `file` (a relay's data file, or a replica's peer
/// tokens); `pass_as` says how a client presents the token it creates.
pub(crate) fn tokens(file: &std::path::Path, pass_as: &str, command: TokenCommand) -> Result<()> {
    run_tokens(Tokens::open(file)?, pass_as, command)
}

fn run_tokens(tokens: Tokens, pass_as: &str, command: TokenCommand) -> Result<()> {
    let now = cairn::now_millis();
    match command {
        TokenCommand::Create { graphs, role, expires, label, agents, json } => {
            let expires_at = expires.map(|d| now.saturating_add(d));
            let bound = if agents.is_empty() { None } else { Some(cairn_sync::tokens::AgentPatterns::new(&agents)?) };
            let (id, token) = tokens.create_bound(&graphs, role, expires_at, label.as_deref(), bound.as_ref(), now)?;
            if json {
                output::json(&json!({
                    "id": id, "graphs": graphs, "role": role, "expires_at": expires_at, "agents": bound, "token": token
                }));
            } else {
                let until = expires_at.map(|t| format!(", expires {}", output::time(t))).unwrap_or_default();
                let writes_as = bound.map(|a| format!(", writing as {}", a.as_slice().join(", "))).unwrap_or_default();
                output::text(&format!("created token {id}: {role:?} on {}{until}{writes_as}", graphs.join(", ")));
                output::text(&format!("it is shown only now; pass it as {pass_as}:"));
                output::text(&token);
            }
        }
        TokenCommand::List { json } => {
            let list = tokens.list()?;
            if json {
                output::json(&list);
            } else if list.is_empty() {
                output::text("(no tokens)");
            } else {
                for t in list {
                    let graphs = match &t.graphs {
                        Graphs::All(_) => "*".to_string(),
                        Graphs::Only(g) => g.join(","),
                    };
                    let state = match (t.revoked_at, t.expires_at) {
                        (Some(r), _) => format!("revoked {}", output::time(r)),
                        (None, Some(e)) if e <= now => format!("expired {}", output::time(e)),
                        (None, Some(e)) => format!("expires {}", output::time(e)),
                        (None, None) => "no expiry".into(),
                    };
                    output::text(&format!(
                        "{}  {:<5}  {:<24}  {}  {}",
                        t.id,
                        format!("{:?}", t.role).to_lowercase(),
                        graphs,
                        state,
                        output::safe(&t.label.unwrap_or_default())
                    ));
                }
            }
        }
        TokenCommand::Revoke { id } => {
            tokens.revoke(&id, now)?;
            output::text(&format!("revoked {id}; open connections using it close within seconds"));
        }
    }
    Ok(())
}
