//! Memory as a live MCP resource: `memory://knowledge-graph`, as the reference server serves it,
//! with `resources/subscribe`. Unlike the reference, which can only tell its own client about its
//! own writes, a subscribed session is told about every change to the replica's file: writes by
//! this process, by other processes on the same file, and what sync brings in from peers.
//!
//! One watcher task per session, started by the first subscription, follows the file's change
//! log (woken at once by this process's changes, and looking at the file every [`POLL`] for
//! other processes') and sends `notifications/resources/updated`, at most one per [`MIN_GAP`]:
//! the first change of a burst is reported at once, the rest of the burst in one more
//! notification that covers all of it. Each notification carries, in `_meta`, the version it
//! reflects (`cairn/version`), for `memory_changes_since`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ListResourcesResult, NotificationMetaObject, ReadResourceResult, Resource, ResourceContents,
    ResourceUpdatedNotificationParam,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer};
use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;

use cairn::{LogPosition, Replica};

use super::MemoryServer;
use super::reply::ToolError;

/// The one resource: the whole graph, as `read_graph` returns it.
pub(super) const GRAPH_URI: &str = "memory://knowledge-graph";
/// The `_meta` key of a notification that names the version it reflects.
pub(super) const VERSION_META: &str = "cairn/version";
/// How often the watcher looks at the file for other processes' changes (this process's own
/// and synced changes wake it at once).
const POLL: Duration = Duration::from_millis(25);
/// The least time between two notifications: a storm of writes is a few notifications, each
/// telling the client to read the whole graph again.
const MIN_GAP: Duration = Duration::from_millis(100);

/// A session's subscriptions and its watcher.
#[derive(Debug, Default)]
pub(super) struct Resources {
    /// Subscribed URIs, each with the log position when it was subscribed: a change at or before
    /// it was already in the graph the client could read, and is never notified.
    subscribed: Arc<Mutex<HashMap<String, LogPosition>>>,
    watcher: OnceCell<()>,
}

/// `resources/list`: the reference server's one resource, same fields.
pub(super) fn list() -> ListResourcesResult {
    ListResourcesResult::with_all_items(vec![
        Resource::new(GRAPH_URI, "knowledge-graph")
            .with_title("Knowledge Graph")
            .with_description("The full knowledge graph with all entities and relations")
            .with_mime_type("application/json"),
    ])
}

/// The reference SDK's error for a URI it does not serve (code -32602, its wording).
fn not_found(uri: &str) -> McpError {
    McpError::invalid_params(format!("MCP error -32602: Resource {uri} not found"), None)
}

fn internal(e: ToolError) -> McpError {
    McpError::internal_error(e.0, None)
}

async fn position(replica: &Arc<Replica>) -> Result<LogPosition, ToolError> {
    Ok(cairn_sync::off_runtime(replica, |r| cairn::sync::ReplicaDocs::new(r.clone()).log_position()).await?)
}

impl MemoryServer {
    /// `resources/read`: the text is exactly `read_graph`'s first content block.
    pub(super) async fn read_resource_at(
        &self,
        uri: &str,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, McpError> {
        if uri != GRAPH_URI {
            return Err(not_found(uri));
        }
        let live = self.live(ctx).await.map_err(internal)?;
        let result =
            Self::off_runtime(&live.replica, "read_graph".into(), Default::default()).await.map_err(internal)?;
        let text = result.content.first().and_then(|c| c.as_text()).map(|t| t.text.clone()).unwrap_or_default();
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")]))
    }

    /// `resources/subscribe`: any URI is accepted, as the reference does (only
    /// [`GRAPH_URI`] ever changes). Opens the replica and starts the watcher if need be.
    pub(super) async fn subscribe_to(&self, uri: String, ctx: &RequestContext<RoleServer>) -> Result<(), McpError> {
        let live = self.live(ctx).await.map_err(internal)?;
        let replica = live.replica.clone();
        let now = position(&replica).await.map_err(internal)?;
        self.resources.subscribed.lock().unwrap_or_else(|e| e.into_inner()).insert(uri, now);
        let subscribed = self.resources.subscribed.clone();
        let peer = ctx.peer.clone();
        self.resources
            .watcher
            .get_or_try_init(|| async move {
                // The replica id, for the versions the notifications carry.
                let status = cairn_sync::off_runtime(&replica, |r| r.status()).await.map_err(ToolError::from)?;
                let replica_id = status.version.replica();
                tokio::spawn(watch(replica, peer, subscribed, now, move |p| format!("v{p}.{replica_id}")));
                Ok::<(), ToolError>(())
            })
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// `resources/unsubscribe`: always succeeds, as the reference's does.
    pub(super) fn unsubscribe_from(&self, uri: &str) {
        self.resources.subscribed.lock().unwrap_or_else(|e| e.into_inner()).remove(uri);
    }
}

/// Follows the file's log from `seen` until the session ends, notifying [`GRAPH_URI`]'s
/// subscriber of each burst of changes.
async fn watch(
    replica: Arc<Replica>,
    peer: Peer<RoleServer>,
    subscribed: Arc<Mutex<HashMap<String, LogPosition>>>,
    mut seen: LogPosition,
    version: impl Fn(LogPosition) -> String,
) {
    let wake = Arc::new(Notify::new());
    let waker = wake.clone();
    let _subscription = replica.subscribe(move |_| waker.notify_one());
    let mut last_sent: Option<Instant> = None;
    loop {
        // Wait for the log to move.
        loop {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            if peer.is_transport_closed() {
                return;
            }
            match position(&replica).await {
                Ok(p) if p > seen => break,
                Ok(_) => {}
                Err(ToolError(e)) => tracing::warn!("resource watcher: {e}"),
            }
        }
        // Coalesce: what else arrives before the gap is over goes into this notification.
        if let Some(t) = last_sent {
            tokio::time::sleep_until(t + MIN_GAP).await;
        }
        let Ok(now) = position(&replica).await else { continue };
        seen = now;
        let due = subscribed.lock().unwrap_or_else(|e| e.into_inner()).get(GRAPH_URI).is_some_and(|since| now > *since);
        if !due {
            continue;
        }
        let mut param = ResourceUpdatedNotificationParam::new(GRAPH_URI);
        let mut meta = NotificationMetaObject::new();
        meta.insert(VERSION_META.into(), version(now).into());
        param.meta = Some(meta);
        if peer.notify_resource_updated(param).await.is_err() {
            return; // The session is over.
        }
        last_sent = Some(Instant::now());
    }
}
