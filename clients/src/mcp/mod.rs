//! `cairn mcp`: an MCP server over stdio that is a drop-in replacement for the reference memory
//! server (`@modelcontextprotocol/server-memory`), plus Cairn's freshness, history and
//! conditional-write tools. Differences from the reference are listed in `docs/mcp.md`.
//!
//! Stdout is the protocol channel: nothing in this module prints; logs go to stderr.

mod import;
mod reply;
mod resources;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::json;
use tokio::sync::OnceCell;

use cairn::{OpenOptions, Replica};
use cairn_sync::SyncClient;
use cairn_tools::reply::{conflict_notice, conflicts, notice, success};
use cairn_tools::schema as tools;

use crate::locate::{self, ImportReference};
use crate::options::{ReplicaOpts, default_agent};
use crate::output;
use crate::peer::{PeerArgs, Peering};

use import::{beside, import_reference_file};
use reply::ToolError;

const INSTRUCTIONS: &str = "Cairn is shared memory: other agents may read and write the same knowledge graph. \
Read results end with a [cairn] line when your view is behind the relay or when other agents changed things since \
your last read; call memory_status for the current version and freshness, memory_changes_since to see what changed, \
memory_history for everything that ever happened to an entity. \
To update safely after reading, pass `expect` (the version you read) to a write: it is refused, with the \
conflicting changes, if someone changed those entities since. \
When a fact stops being true, use supersede_observations or supersede_relations instead of deleting it: reads return \
current facts (and say how many older ones they left out); asOf, atVersion and includeSuperseded read the past.";

/// What a `cairn mcp` session opens on its first tool call (when the client's name is known).
struct Live {
    replica: Arc<Replica>,
    sync: Option<SyncClient>,
    /// The peers it listens for and dials (`--listen`, `--peer`, `--discover`), if any.
    peering: Option<Peering>,
}

/// The MCP server.
pub(crate) struct MemoryServer {
    opts: ReplicaOpts,
    peer: PeerArgs,
    db: PathBuf,
    live: OnceCell<Live>,
    resources: resources::Resources,
}

/// Runs `cairn mcp` until the client closes stdin.
pub(crate) async fn serve(opts: ReplicaOpts, import_reference: ImportReference, peer: PeerArgs) -> Result<()> {
    // Compatibility: MEMORY_FILE_PATH (a database beside it), or the reference's default file.
    let env = locate::Env::from_process(false);
    let cwd = std::env::current_dir().unwrap_or_default();
    let locate::Start { db, import } = locate::on_start(&opts, import_reference, &env, &cwd, beside);
    if let Some(file) = import {
        import_reference_file(&opts, &db, &file).await?;
    }
    let server = MemoryServer { opts, peer, db, live: OnceCell::new(), resources: Default::default() };
    // Non-blocking pipes when the host launched us with pipes (the usual case): no hand-off to a
    // blocking thread per message.
    let running = server.serve(rmcp::transport::stdio_pipes()).await.context("the MCP client did not initialise")?;
    running.waiting().await.context("the MCP session failed")?;
    Ok(())
}

impl MemoryServer {
    /// Opens the replica on the first tool call: the agent defaults to the MCP client's name.
    async fn live(&self, ctx: &RequestContext<RoleServer>) -> Result<&Live, ToolError> {
        self.open_live(ctx.client_info().map(|i| i.name)).await
    }

    /// Opens the replica (once), as `client`'s agent unless --agent names one, and starts
    /// syncing with the relay and the peers.
    async fn open_live(&self, client: Option<String>) -> Result<&Live, ToolError> {
        self.live
            .get_or_try_init(|| async {
                let host = default_agent().rsplit('@').next().unwrap_or("localhost").to_owned();
                let agent = self.opts.agent.clone().unwrap_or_else(|| {
                    let client = client.filter(|n| !n.trim().is_empty());
                    format!("{}@{host}", client.unwrap_or_else(|| "mcp".into()))
                });
                let options =
                    OpenOptions::new(agent.parse().map_err(|e: cairn::InvalidInput| ToolError(e.to_string()))?)
                        .graph(self.opts.graph.parse().map_err(|e: cairn::InvalidInput| ToolError(e.to_string()))?)
                        .durability(self.opts.durability.into());
                let db = self.db.clone();
                let replica = tokio::task::spawn_blocking(move || Replica::open_with(db, options))
                    .await
                    .map_err(|e| ToolError(e.to_string()))??;
                let replica = Arc::new(replica);
                // Later calls should not wait for a shard to load (30-50 ms at 100k entities):
                // the graph loads on a thread of its own. Failing to start it costs only that.
                if let Err(e) = replica.warm_up() {
                    tracing::warn!(error = %e, "could not start loading the graph in the background");
                }
                let sync = self
                    .opts
                    .relay
                    .as_deref()
                    .map(|url| SyncClient::spawn(replica.clone(), self.opts.client_options(url)));
                let peering = match self.peer.configured() {
                    true => Some(
                        Peering::start(&replica, &self.peer, &self.opts)
                            .await
                            .map_err(|e| ToolError(format!("cannot sync with peers: {e:#}")))?,
                    ),
                    false => None,
                };
                Ok(Live { replica, sync, peering })
            })
            .await
    }

    /// Runs a tool on tokio's blocking pool, never on this runtime's worker: a call is usually
    /// well under a millisecond, but it may wait up to 30 s for another process's write lock (a
    /// long import), and the sync client shares this runtime (ARCHITECTURE.md).
    async fn off_runtime(replica: &Arc<Replica>, tool: String, args: JsonObject) -> Result<CallToolResult, ToolError> {
        let reply = cairn_sync::off_runtime(replica, move |r| Ok(cairn_tools::call(r, &tool, args))).await??;
        Ok(reply::result(reply))
    }

    async fn call(
        &self,
        tool: &str,
        args: JsonObject,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ToolError> {
        let live = self.live(ctx).await?;
        let replica = &live.replica;
        match tool {
            "memory_status" => {
                let status = cairn_sync::off_runtime(replica, |r| r.status()).await?;
                let pending = match &live.sync {
                    Some(s) => s.pending().await.ok(),
                    None => None,
                };
                let relay_error = live.sync.as_ref().and_then(|s| s.last_error()).map(|e| e.to_string());
                let value = json!({
                    "version": status.version,
                    "freshness": status.freshness,
                    "summary": output::freshness(&status.freshness),
                    "unseen": status.unseen,
                    "entities": status.entities,
                    "observations": status.observations,
                    "relations": status.relations,
                    "relay": self.opts.relay.as_deref().map(cairn_sync::redacted_url),
                    "pending": pending,
                    "relay_error": relay_error,
                    "listening": live.peering.as_ref().and_then(Peering::listening),
                    "dialing": live.peering.as_ref().map(|p| {
                        p.dialed().into_iter().map(|(peer, error)| json!({ "peer": peer, "error": error })).collect::<Vec<_>>()
                    }),
                    "peers": status.peers,
                    "conflicts": conflicts(&status.conflicts),
                });
                let mut r =
                    success(&value, None, notice(&status.freshness, &status.peers, &status.unseen, status.read_only));
                r.texts.extend(conflict_notice(&status.conflicts));
                Ok(reply::result(r))
            }
            // Every other tool is the same call the Python package makes.
            _ => Self::off_runtime(replica, tool.to_owned(), args).await,
        }
    }
}

impl ServerHandler for MemoryServer {
    /// With peers, the replica opens (and listens) as soon as the session starts, not on the
    /// first tool call: a peer serves the others even while its own agent is idle.
    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        if self.peer.configured() {
            let client = context.peer.peer_info().map(|i| i.client_info.name.clone());
            if let Err(ToolError(why)) = self.open_live(client).await {
                tracing::error!("{why}");
            }
        }
    }

    fn get_info(&self) -> ServerConfig {
        // Resources as the reference SDK declares them (`listChanged` included, though the one
        // resource never comes or goes).
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("cairn", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools::all()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let args = request.arguments.unwrap_or_default();
        let result = match self.call(&name, args, &context).await {
            Ok(r) => r,
            Err(ToolError(message)) => CallToolResult::error(vec![ContentBlock::text(message)]),
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(resources::list())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        Ok(self.read_resource_at(&request.uri, &context).await?.into())
    }

    /// Legacy in rmcp (2026-07-28 has `subscriptions/listen`), but what hosts up to protocol
    /// 2025-11-25, and the reference, use.
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscribe_to(request.uri, &context).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.unsubscribe_from(&request.uri);
        Ok(())
    }
}
