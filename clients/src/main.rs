//! `cairn`: shared memory for AI agents, from the command line.
//!
//! Every command that opens a replica takes `--db`, `--agent`, `--graph`, `--relay`, `--token`
//! (or `CAIRN_DB`, `CAIRN_AGENT`, `CAIRN_GRAPH`, `CAIRN_RELAY`, `CAIRN_TOKEN`) and `--json`.

mod commands;
mod locate;
mod mcp;
mod options;
mod output;
mod shape;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use options::ReplicaOpts;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Shared memory for AI agents: a knowledge graph every agent holds locally and syncs through a relay",
    long_about = "Shared memory for AI agents: a knowledge graph (entities, observations, relations) that every agent \
holds as a local replica in SQLite, merges without conflict, and syncs through a relay. Every read says how fresh it is.\n\n\
Every command that opens a replica takes --db, --agent, --graph, --relay, --token, --durability and --json (or \
CAIRN_DB, CAIRN_AGENT, CAIRN_GRAPH, CAIRN_RELAY, CAIRN_TOKEN, CAIRN_DURABILITY).\n\n\
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
        /// Entity names (exact)
        #[arg(required = true)]
        names: Vec<String>,
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
        /// Include facts whose validity has ended
        #[arg(long)]
        all: bool,
    },
    /// Freshness, relay connection, pending changes and database size
    Status {
        #[command(flatten)]
        opts: ReplicaOpts,
    },
    /// List the changes kept out of the graph: what an older version stored that breaks the schema
    Check {
        #[command(flatten)]
        opts: ReplicaOpts,
    },
    /// Sync with the relay once and exit, or keep syncing with --watch
    Sync {
        #[command(flatten)]
        opts: ReplicaOpts,
        /// Keep syncing until interrupted
        #[arg(long)]
        watch: bool,
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
    },
    /// Run a relay (clients need a token: see `cairn relay token create --help`)
    Relay(commands::relay::RelayArgs),
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
    },
    /// Relate two existing entities: FROM RELATION_TYPE TO
    Relation {
        /// Source entity
        from: String,
        /// Relation type, in active voice (works_at)
        relation_type: String,
        /// Target entity
        to: String,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One-shot commands explain sync trouble in their own one-line warning; long-running ones
    // (a host's log, a terminal watching) want the client's log of each refusal too.
    let long_running = matches!(cli.command, Command::Mcp { .. } | Command::Sync { .. } | Command::Relay(_));
    let default = if long_running { "warn" } else { "warn,cairn_sync::client=error" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what went wrong, and (in the error's own words) what to do.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            output::error(&chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
