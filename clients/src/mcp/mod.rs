//! `cairn mcp`: an MCP server over stdio that is a drop-in replacement for the reference memory
//! server (`@modelcontextprotocol/server-memory`), plus Cairn's freshness, history and
//! conditional-write tools. Differences from the reference are listed in `docs/mcp.md`.
//!
//! Stdout is the protocol channel: nothing in this module prints; logs go to stderr.

mod args;
mod import;
mod reply;
mod resources;
mod tools;

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

use cairn::{DEFAULT_SEARCH_LIMIT, Graph, Op, OpenOptions, Outcome, Read, Receipt, Replica, Version};
use cairn_sync::SyncClient;

use crate::locate::{self, ImportReference};
use crate::options::{ReplicaOpts, default_agent};
use crate::output;
use crate::peer::{PeerArgs, Peering};
use crate::shape::RefRelation;

use args::*;
use import::{beside, import_reference_file};
use reply::{ToolError, done, notice, success};

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

    /// Runs replica work on tokio's blocking pool, never on this runtime's worker: a call is
    /// usually well under a millisecond, but it may wait up to 30 s for another process's write
    /// lock (a long import), and the sync client shares this runtime (ARCHITECTURE.md).
    async fn off_runtime<T: Send + 'static>(
        replica: &Arc<Replica>,
        f: impl FnOnce(&Replica) -> cairn::Result<T> + Send + 'static,
    ) -> Result<T, ToolError> {
        Ok(cairn_sync::off_runtime(replica, move |r| f(r)).await?)
    }

    async fn write(replica: &Arc<Replica>, ops: Vec<Op>, expect: Option<String>) -> Result<Receipt, ToolError> {
        let expect: Option<Version> = expect
            .map(|e| e.parse().map_err(|e: cairn::ParseIdError| ToolError(format!("invalid expect: {e}"))))
            .transpose()?;
        let touched = touched_entities(&ops);
        Self::off_runtime(replica, move |r| match expect {
            Some(v) => r.write_if(&ops, v, &touched),
            None => r.write(&ops),
        })
        .await
    }

    async fn graph_read(
        replica: &Arc<Replica>,
        f: impl FnOnce(&Replica) -> cairn::Result<Read<Graph>> + Send + 'static,
    ) -> Result<CallToolResult, ToolError> {
        let read = Self::off_runtime(replica, f).await?;
        let peers = replica.peers();
        let mut r =
            success(&reply::graph(&read.data), None, notice(&read.freshness, &peers, &read.unseen, read.read_only));
        if let Some(line) = reply::conflict_notice(&read.data.conflicts) {
            r.content.push(ContentBlock::text(line));
        }
        Ok(r)
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
            "create_entities" => {
                let a: CreateEntities = arguments(tool, args)?;
                let ops = a
                    .entities
                    .iter()
                    .map(|e| Op::CreateEntity {
                        name: e.name.clone(),
                        entity_type: e.entity_type.clone(),
                        observations: e.observations.clone(),
                    })
                    .collect();
                let receipt = Self::write(replica, ops, a.expect).await?;
                let (mut created, mut skipped) = (Vec::new(), Vec::new());
                for (entity, outcome) in a.entities.into_iter().zip(&receipt.outcomes) {
                    match outcome {
                        Outcome::Applied => created.push(entity.stored()),
                        _ => skipped.push(entity.name),
                    }
                }
                Ok(reply::created_entities(&created, skipped))
            }
            "create_relations" => {
                let a: CreateRelations = arguments(tool, args)?;
                let ops = a
                    .relations
                    .iter()
                    .map(|r| Op::CreateRelation { relation: r.relation.to_cairn(), validity: r.validity.validity() })
                    .collect();
                let receipt = Self::write(replica, ops, a.expect).await?;
                let created: Vec<&RefRelation> = a
                    .relations
                    .iter()
                    .zip(&receipt.outcomes)
                    .filter(|(_, o)| **o == Outcome::Applied)
                    .map(|(r, _)| &r.relation)
                    .collect();
                Ok(success(&created, Some("relations"), None))
            }
            "add_observations" => {
                let a: AddObservations = arguments(tool, args)?;
                let mut ops = Vec::new();
                for item in &a.observations {
                    for content in &item.contents {
                        ops.push(Op::AddObservation {
                            entity: item.entity_name.clone(),
                            text: content.text().to_owned(),
                            validity: content.validity(),
                        });
                    }
                }
                let receipt = Self::write(replica, ops, a.expect).await?;
                let mut outcomes = receipt.outcomes.iter();
                let results: Vec<Added> = a
                    .observations
                    .into_iter()
                    .map(|item| Added {
                        added_observations: item
                            .contents
                            .into_iter()
                            .filter(|_| outcomes.next() == Some(&Outcome::Applied))
                            .map(|c| c.text().to_owned())
                            .collect(),
                        entity_name: item.entity_name,
                    })
                    .collect();
                Ok(success(&results, Some("results"), None))
            }
            "delete_entities" => {
                let a: DeleteEntities = arguments(tool, args)?;
                let ops = a.entity_names.into_iter().map(|name| Op::DeleteEntity { name }).collect();
                Self::write(replica, ops, a.expect).await?;
                Ok(done("Entities deleted successfully"))
            }
            "delete_observations" => {
                let a: DeleteObservations = arguments(tool, args)?;
                let mut ops = Vec::new();
                for d in a.deletions {
                    for text in d.observations {
                        ops.push(Op::DeleteObservation { entity: d.entity_name.clone(), text });
                    }
                }
                Self::write(replica, ops, a.expect).await?;
                Ok(done("Observations deleted successfully"))
            }
            "delete_relations" => {
                let a: Relations = arguments(tool, args)?;
                let ops = a.relations.iter().map(|r| Op::DeleteRelation { relation: r.to_cairn() }).collect();
                Self::write(replica, ops, a.expect).await?;
                Ok(done("Relations deleted successfully"))
            }
            "read_graph" => {
                let options = arguments::<ReadArgs>(tool, args)?.options()?;
                Self::graph_read(replica, move |r| r.read_graph_with(&options)).await
            }
            "search_nodes" => {
                let a: Query = arguments(tool, args)?;
                let options = a.read.options()?;
                Self::graph_read(replica, move |r| r.search_with(&a.query, DEFAULT_SEARCH_LIMIT, &options)).await
            }
            "open_nodes" => {
                let a: Names = arguments(tool, args)?;
                let options = a.read.options()?;
                Self::graph_read(replica, move |r| r.open_nodes_with(&a.names, &options)).await
            }
            "supersede_observations" => {
                let a: SupersedeObservations = arguments(tool, args)?;
                let ops = a
                    .observations
                    .iter()
                    .map(|o| Op::SupersedeObservation {
                        entity: o.entity_name.clone(),
                        old: o.replaces.clone(),
                        new: o.content.clone(),
                        at: o.valid_from,
                    })
                    .collect();
                let receipt = Self::write(replica, ops, a.expect).await?;
                let items = a
                    .observations
                    .iter()
                    .map(|o| json!({ "entityName": o.entity_name, "replaces": o.replaces, "content": o.content }));
                Ok(reply::superseded("results", items, &receipt.outcomes, "observation"))
            }
            "supersede_relations" => {
                let a: SupersedeRelations = arguments(tool, args)?;
                let ops = a
                    .relations
                    .iter()
                    .map(|r| Op::SupersedeRelation {
                        old: r.replaces.to_cairn(),
                        new: r.relation.to_cairn(),
                        at: r.valid_from,
                    })
                    .collect();
                let receipt = Self::write(replica, ops, a.expect).await?;
                let items = a.relations.iter().map(|r| {
                    let mut item = serde_json::to_value(&r.relation).unwrap_or_default();
                    item["replaces"] = serde_json::to_value(&r.replaces).unwrap_or_default();
                    item
                });
                Ok(reply::superseded("relations", items, &receipt.outcomes, "relation"))
            }
            "memory_status" => {
                let status = Self::off_runtime(replica, |r| r.status()).await?;
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
                    "conflicts": reply::conflicts(&status.conflicts),
                });
                let mut r =
                    success(&value, None, notice(&status.freshness, &status.peers, &status.unseen, status.read_only));
                if let Some(line) = reply::conflict_notice(&status.conflicts) {
                    r.content.push(ContentBlock::text(line));
                }
                Ok(r)
            }
            "memory_changes_since" => {
                let a: Since = arguments(tool, args)?;
                let since: Version = a.since.parse().map_err(|e: cairn::ParseIdError| ToolError(e.to_string()))?;
                let limit = a.limit.unwrap_or(200);
                let read = Self::off_runtime(replica, move |r| r.changes_since(since, limit)).await?;
                let value = json!({ "changes": read.data, "version": read.version });
                Ok(success(&value, None, notice(&read.freshness, &replica.peers(), &read.unseen, read.read_only)))
            }
            "memory_history" => {
                let a: Name = arguments(tool, args)?;
                let read = Self::off_runtime(replica, move |r| r.history(&a.name)).await?;
                let value = json!({ "changes": read.data, "version": read.version });
                Ok(success(&value, None, notice(&read.freshness, &replica.peers(), &read.unseen, read.read_only)))
            }
            other => Err(ToolError(format!("MCP error -32602: Tool {other} not found"))),
        }
    }
}

/// The entities a batch names: what a conditional write depends on.
fn touched_entities(ops: &[Op]) -> Vec<String> {
    let mut names = Vec::new();
    for op in ops {
        match op {
            Op::CreateEntity { name, .. } | Op::SetEntityType { name, .. } | Op::DeleteEntity { name } => {
                names.push(name.clone())
            }
            Op::AddObservation { entity, .. }
            | Op::DeleteObservation { entity, .. }
            | Op::SupersedeObservation { entity, .. } => names.push(entity.clone()),
            Op::CreateRelation { relation, .. } | Op::DeleteRelation { relation } => {
                names.push(relation.from.clone());
                names.push(relation.to.clone());
            }
            Op::SupersedeRelation { old, new, .. } => {
                names.extend([old.from.clone(), old.to.clone(), new.from.clone(), new.to.clone()]);
            }
        }
    }
    names.sort();
    names.dedup();
    names
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
