//! `cairn`: shared memory for AI agents, from the command line.
//!
//! Every command that opens a replica takes `--db`, `--agent`, `--graph`, `--relay`, `--token`
//! (or `CAIRN_DB`, `CAIRN_AGENT`, `CAIRN_GRAPH`, `CAIRN_RELAY`, `CAIRN_TOKEN`) and `--json`,
//! before or after the command's name.

mod commands;
mod discover;
mod locate;
mod mcp;
mod options;
mod output;
mod peer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
// World times as the MCP tools and the Python package read them.
use cairn_tools::when;

use options::ReplicaOpts;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Shared memory for AI agents: a knowledge graph every agent holds locally and syncs through a relay",
    long_about = "Shared memory for AI agents: a knowledge graph (entities, observations, relations) that every agent \
holds as a local replica in SQLite, merges without conflict, and syncs through a relay. Every read says how fresh it is.\n\n\
Every command that opens a replica takes --db, --agent, --graph, --relay, --token, --ca-file, --durability, \
--sync-timeout and --json (or CAIRN_DB, CAIRN_AGENT, CAIRN_GRAPH, CAIRN_RELAY, CAIRN_TOKEN, CAIRN_CA_FILE, \
CAIRN_DURABILITY, CAIRN_SYNC_TIMEOUT), before or after the command: `cairn --db F graph` is `cairn graph --db F`.\n\n\
With a relay, a command pulls before it reads and pushes after it writes, but never waits for a relay it cannot \
reach: refused or unresolvable, it says `offline` and works locally at once; slow, it waits --sync-timeout \
(1 s; `cairn sync`: 30 s). `cairn sync`, `cairn sync --watch` or `cairn mcp` push what is left.\n\n\
Logs go to stderr, filtered by CAIRN_LOG, else RUST_LOG (tracing's EnvFilter syntax, e.g. `info`, \
`cairn_sync=debug`); by default `cairn relay` logs at info (refused handshakes, closed connections, \
revocations), other commands warnings only.\n\n\
Start with `cairn demo` to see three agents write concurrently, offline and online, and converge."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add an entity, observations, or a relation
    Add {
        #[command(flatten)]
        opts: ReplicaOpts,
        #[command(subcommand)]
        what: AddCommand,
    },
    /// Delete an entity (with its observations and relations), observations, or a relation
    Delete {
        #[command(flatten)]
        opts: ReplicaOpts,
        #[command(subcommand)]
        what: DeleteCommand,
    },
    /// Set an entity's type (this also resolves a type conflict)
    SetType {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// The entity
        name: String,
        /// Its new type
        entity_type: String,
    },
    /// Find entities whose name, type or observations contain every word of the query
    ///
    /// Case-insensitive. Words match at the start of a word ("tea" finds "green tea" and
    /// "Teapot"); only when no entity matches that way, anywhere inside ("lic" finds "Alice").
    Search {
        #[command(flatten)]
        opts: ReplicaOpts,
        #[command(flatten)]
        when: WhenOpts,
        /// Words to look for
        query: String,
        /// At most this many entities
        #[arg(long, default_value_t = cairn::DEFAULT_SEARCH_LIMIT)]
        limit: usize,
    },
    /// Show entities by name, with the relations touching them
    Show {
        #[command(flatten)]
        opts: ReplicaOpts,
        #[command(flatten)]
        when: WhenOpts,
        /// Entity names (exact)
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Replace a fact that stopped being true, keeping it as history
    ///
    /// The old fact ends at --at (default now) and the new one holds from then, linked to it;
    /// nothing else is retired. Reads show current facts; --as-of and --all show the past.
    Supersede {
        #[command(flatten)]
        opts: ReplicaOpts,
        #[command(subcommand)]
        what: SupersedeCommand,
    },
    /// Everything that ever happened to an entity, deletes included
    History {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// The entity
        name: String,
    },
    /// Entity-level changes after a version (from a previous read)
    Changes {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// A version token, like v42.1f2e3d4c
        #[arg(long)]
        since: String,
        /// At most this many changes
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// The whole graph
    Graph {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// Output format (--json prints the reference memory server's read_graph shape)
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
        #[command(flatten)]
        when: WhenOpts,
    },
    /// Freshness, relay connection, pending changes and database size
    Status {
        #[command(flatten)]
        opts: ReplicaOpts,
    },
    /// Check the replica file: SQLite and search integrity, every logged change, derived tables
    ///
    /// Runs while writers carry on. Also lists the changes kept out of the graph (what an older
    /// version stored that breaks the schema). Exit code: 0 sound, 2 damage found (run
    /// `cairn repair`), 1 the check could not run. See docs/operations.md.
    Check {
        #[command(flatten)]
        opts: ReplicaOpts,
    },
    /// Repair the replica file: rebuild what is derived from the change log, set aside what cannot be read
    ///
    /// Stop every process using the file first. Nothing is dropped: unreadable log rows go to a
    /// set_aside table, and a file SQLite finds damaged is kept beside the new one
    /// (<file>.damaged-<unix time>). Exit code: 0 sound after, 3 sound but some logged changes are
    /// not in the graph (listed), 2 still damaged, 1 could not run.
    Repair {
        #[command(flatten)]
        opts: ReplicaOpts,
    },
    /// Copy the replica file consistently while writers run: the way to back up a replica
    ///
    /// A copy of the .db file alone misses what is still in its -wal. The copy is one
    /// self-contained file; restore it by putting it in place of the replica's file while no
    /// process uses it. See docs/operations.md.
    Backup {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// Where to write the copy
        dest: PathBuf,
        /// Replace DEST if it exists
        #[arg(long)]
        force: bool,
    },
    /// Sync with the relay once and exit, or keep syncing with --watch (also with peers)
    ///
    /// Once: waits up to --sync-timeout (default 30 s) to be in step with the relay, and exits 1
    /// when it is not, saying `offline` at once if the relay is unreachable or refuses the token,
    /// and how many changes are not confirmed on the relay. With --watch: keeps syncing and
    /// reconnecting until interrupted; with --listen, --peer or --discover it also syncs with
    /// peers, with or without a relay (docs/peer-to-peer.md).
    Sync {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// Keep syncing until interrupted
        #[arg(long)]
        watch: bool,
        /// Peer-to-peer (with --watch; see docs/peer-to-peer.md)
        #[command(flatten, next_help_heading = "Peers (with --watch)")]
        peer: peer::PeerArgs,
    },
    /// Import a reference memory.jsonl (or a `cairn export`): resumable, with a progress bar
    ///
    /// Every line is checked before anything is written: a line that cannot be imported stops
    /// the import whole, with its number and why. A relation whose endpoint no line defines gets
    /// that entity created, untyped (the reference server keeps such relations).
    ///
    /// With --from-reference, finds the reference server's own memory instead: MEMORY_FILE_PATH
    /// if set (relative to the reference's dist directory, as it resolves it), else memory.jsonl
    /// (or a legacy memory.json) beside the dist/index.js of every npx cache, pnpm dlx cache and
    /// global install of @modelcontextprotocol/server-memory. It lists them and imports the
    /// newest, or the one given by --pick.
    ///
    /// With --json, every committed batch is also reported on stderr, one JSON line each:
    /// {"committed":{"lines":N,"of":M}} says the first N of M lines are in the replica (a rerun
    /// resumes after them); stdout holds the final report.
    Import {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// The file
        #[arg(required_unless_present = "from_reference", conflicts_with = "from_reference")]
        file: Option<PathBuf>,
        /// Lines per transaction
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Import the other lines when some cannot be imported, and list those
        #[arg(long)]
        skip_bad_lines: bool,
        /// Find the reference server's memory file (see above) and import it
        #[arg(long)]
        from_reference: bool,
        /// With --from-reference: import this one (its number in the list, or a path)
        #[arg(long, value_name = "N|PATH", requires = "from_reference")]
        pick: Option<String>,
        /// With --from-reference: list what was found and what would be imported; write nothing
        #[arg(long, requires = "from_reference")]
        dry_run: bool,
    },
    /// Export the graph as memory.jsonl lines (the reference memory server's format)
    Export {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// Write here instead of stdout
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Run the MCP server on stdio: a drop-in replacement for @modelcontextprotocol/server-memory
    ///
    /// Configure it in an MCP host in place of the reference server. It honours MEMORY_FILE_PATH: a
    /// reference memory.jsonl there is imported once (never modified) into a database beside it
    /// (a relative one is resolved as the reference does, and imported into the usual database).
    /// Without MEMORY_FILE_PATH, see --import-reference.
    Mcp {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// Without MEMORY_FILE_PATH: import the reference server's default memory (the newest
        /// memory.jsonl of its npx caches and global installs, as `cairn import --from-reference`)
        /// into the database on start. The bare flag means "on"
        #[arg(long, env = "CAIRN_IMPORT_REFERENCE", value_enum, value_name = "WHEN",
              default_value_t = locate::ImportReference::Auto, num_args = 0..=1, default_missing_value = "on")]
        import_reference: locate::ImportReference,
        /// Peer-to-peer: agents syncing with no relay (docs/peer-to-peer.md)
        #[command(flatten, next_help_heading = "Peers")]
        peer: peer::PeerArgs,
    },
    /// Run a relay (clients need a token: see `cairn relay token create --help`)
    ///
    /// Logs to stderr at info: refused handshakes, closed connections and revocations, each with
    /// why. CAIRN_LOG, else RUST_LOG, sets another filter (`warn`, `cairn_sync=debug`).
    Relay(commands::relay::RelayArgs),
    /// Peer-to-peer: the tokens peers present when this replica listens (`--listen`)
    Peer(peer::PeerCommandArgs),
    /// Run three agents and a relay on loopback and show them converge
    Demo {
        /// Print a JSON summary instead of the story
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AddCommand {
    /// Create an entity (left as it is if it exists)
    Entity {
        /// Unique name
        name: String,
        /// Its type
        #[arg(long = "type", value_name = "TYPE")]
        entity_type: String,
        /// An observation (repeatable)
        #[arg(long = "observation", short = 'o', value_name = "TEXT")]
        observations: Vec<String>,
    },
    /// Add observations to an existing entity
    Observation {
        /// The entity
        name: String,
        /// The observations
        #[arg(required = true)]
        texts: Vec<String>,
        #[command(flatten)]
        valid: ValidOpts,
    },
    /// Relate two existing entities: FROM RELATION_TYPE TO
    Relation {
        /// Source entity
        from: String,
        /// Relation type, in active voice (works_at)
        relation_type: String,
        /// Target entity
        to: String,
        #[command(flatten)]
        valid: ValidOpts,
    },
}

/// When a fact holds in the world (`cairn add`).
#[derive(Debug, Clone, clap::Args)]
struct ValidOpts {
    /// When it became true: ISO 8601 (2024-03-01, 2024-03-01T09:30:00Z) or milliseconds since the epoch
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    valid_from: Option<cairn::Millis>,
    /// When it stopped being true (same forms)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    valid_to: Option<cairn::Millis>,
}

/// Which facts a read shows, on which clock (`cairn search`, `show`, `graph`).
#[derive(Debug, Clone, clap::Args)]
struct WhenOpts {
    /// Show what was true at this world time (ISO 8601 or milliseconds), not now
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    as_of: Option<cairn::Millis>,
    /// Show the graph as this replica held it at a version an earlier read printed (v42.1f2e3d4c)
    #[arg(long, value_name = "VERSION")]
    at_version: Option<cairn::Version>,
    /// Also show superseded, expired and not yet valid facts
    #[arg(long)]
    all: bool,
}

impl WhenOpts {
    fn options(&self) -> cairn::ReadOptions {
        cairn::ReadOptions { as_of: self.as_of, at_version: self.at_version, include_superseded: self.all }
    }
}

impl ValidOpts {
    fn validity(&self) -> cairn::Validity {
        cairn::Validity { valid_from: self.valid_from, valid_to: self.valid_to }
    }
}

fn parse_time(s: &str) -> Result<cairn::Millis, String> {
    when::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum SupersedeCommand {
    /// ENTITY OLD NEW: observation OLD of ENTITY stops being true, NEW replaces it
    Observation {
        /// The entity
        name: String,
        /// The observation that stopped being true (exact text)
        old: String,
        /// The observation that replaces it
        new: String,
        /// When the change happened in the world (ISO 8601 or milliseconds; default now)
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        at: Option<cairn::Millis>,
    },
    /// FROM RELATION_TYPE TO NEW_TO: the relation now points elsewhere (--new-from and --new-type change the rest)
    Relation {
        /// Source entity of the old relation
        from: String,
        /// Relation type of the old relation
        relation_type: String,
        /// Target entity of the old relation
        to: String,
        /// Target entity of the new relation
        new_to: String,
        /// Source entity of the new relation (default: FROM)
        #[arg(long, value_name = "ENTITY")]
        new_from: Option<String>,
        /// Relation type of the new relation (default: RELATION_TYPE)
        #[arg(long, value_name = "TYPE")]
        new_type: Option<String>,
        /// When the change happened in the world (ISO 8601 or milliseconds; default now)
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        at: Option<cairn::Millis>,
    },
}

#[derive(Debug, Subcommand)]
enum DeleteCommand {
    /// Delete entities, their observations and every relation from or to them
    Entity {
        /// Entity names
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete observations of an entity
    Observation {
        /// The entity
        name: String,
        /// The observations
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Delete a relation: FROM RELATION_TYPE TO
    Relation {
        /// Source entity
        from: String,
        /// Relation type
        relation_type: String,
        /// Target entity
        to: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    /// Indented text
    Text,
    /// The reference memory server's read_graph JSON, plus version and freshness
    Json,
    /// Graphviz
    Dot,
}

/// The command line: the derived tree, plus the replica options at the top level (before the
/// command's name). They are plain top-level options, not `global`: a global would reach
/// `cairn relay` and `cairn demo` too, whose own `--graph`, `--agent` and `--json` mean other
/// things. A value given before the command reaches the command's own options because those are
/// global within their command, and clap hands a global's value given at a higher level down to
/// it (a value given after the command's name wins over one given before).
fn command() -> clap::Command {
    use clap::{Args, CommandFactory};
    let leading = ReplicaOpts::augment_args(clap::Command::new("leading"));
    let mut cmd = Cli::command();
    for arg in leading.get_arguments() {
        cmd = cmd.arg(arg.clone().global(false).help_heading("Replica options (before or after the command)"));
    }
    cmd
}

/// A replica option given before a command that opens no replica (`cairn --db F relay`): an
/// error, rather than an option silently ignored. `cairn --json demo` is `cairn demo --json`.
fn misplaced(matches: &clap::ArgMatches, command: &Command) -> Option<String> {
    use clap::Args;
    let name = match command {
        Command::Relay(_) => "relay",
        Command::Peer(_) => "peer",
        Command::Demo { .. } => "demo",
        _ => return None,
    };
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let leading = ReplicaOpts::augment_args(clap::Command::new("leading"));
    let wrong = leading.get_arguments().find(|a| {
        let id = a.get_id().as_str();
        // `cairn peer` takes --db itself (whose peer tokens); `cairn demo` takes --json.
        given(id) && !(name == "demo" && id == "json") && !(name == "peer" && id == "db")
    })?;
    let long = wrong.get_long().unwrap_or(wrong.get_id().as_str());
    Some(format!(
        "`cairn {name}` opens no replica: --{long} does not apply to it (options of `cairn {name}` go after its name)"
    ))
}

/// The log filter: CAIRN_LOG, else RUST_LOG, else `default`. A variable that is not a valid
/// filter is reported, not silently dropped.
fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    for var in ["CAIRN_LOG", "RUST_LOG"] {
        let Some(value) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) else { continue };
        match tracing_subscriber::EnvFilter::try_new(&value) {
            Ok(filter) => return filter,
            Err(e) => output::warn(&format!("{var}={value:?} is not a log filter ({e}); logging at {default:?}")),
        }
    }
    default.into()
}

fn main() -> ExitCode {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(why) = misplaced(&matches, &cli.command) {
        output::error(&why);
        return ExitCode::from(2);
    }
    if let Command::Demo { json } = &mut cli.command {
        *json |= matches.get_flag("json");
    }
    // The relay logs what docs/security.md says it logs (refused handshakes, closed connections,
    // revocations: `info`). One-shot commands explain sync trouble in their own one-line warning;
    // long-running ones (a host's log, a terminal watching) want the client's log of each refusal too.
    let default = match &cli.command {
        Command::Relay(_) => "info",
        // The address a listening replica took is worth a line (port 0 picks one).
        Command::Mcp { .. } | Command::Sync { .. } => "warn,cairn_sync::peer=info",
        _ => "warn,cairn_sync::client=error",
    };
    tracing_subscriber::fmt().with_env_filter(log_filter(default)).with_writer(std::io::stderr).init();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<commands::Exit>() {
                output::error(&exit.message);
                return ExitCode::from(exit.code);
            }
            // One line: what went wrong, and (in the error's own words) what to do. A cause
            // whose words the line already holds is not said again.
            let mut line = String::new();
            for cause in e.chain().map(|c| c.to_string()) {
                if !line.contains(&cause) {
                    if !line.is_empty() {
                        line.push_str(": ");
                    }
                    line.push_str(&cause);
                }
            }
            output::error(&line);
            ExitCode::FAILURE
        }
    }
}
