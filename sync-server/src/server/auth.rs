//! Who may connect, and for how long: the token check at the websocket upgrade, the per-token
//! connection count, and the watcher that closes connections whose token was revoked or expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use cairn::GraphName;

use super::Relay;
use super::hub_thread::Command;
use crate::hub::{Access, ConnId, DocScope, Event};
use crate::metrics::Metrics;
use crate::tokens::{Graphs, Role, TokenError, Tokens};

/// Open connections that came with a token, for revocation checks and per-token limits.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    token_of: HashMap<ConnId, String>,
    per_token: HashMap<String, usize>,
}

/// One connection's place in its token's limit and in the revocation checks, given back when
/// dropped — whichever way the connection ends, including an upgrade that never completes.
pub(crate) struct TokenSlot {
    sessions: Arc<Mutex<Sessions>>,
    token: String,
    conn: Option<ConnId>,
}

impl TokenSlot {
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Records the connection using the slot, so revoking the token closes it.
    pub(crate) fn attach(&mut self, conn: ConnId) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).token_of.insert(conn, self.token.clone());
        self.conn = Some(conn);
    }
}

impl Drop for TokenSlot {
    fn drop(&mut self) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = self.conn {
            s.token_of.remove(&conn);
        }
        if let Some(n) = s.per_token.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_token.remove(&self.token);
            }
        }
    }
}

impl Relay {
    /// A task that closes open connections whose token was revoked or expired. It holds the
    /// hub's inbox weakly, so it keeps nothing alive: it ends at shutdown or once every handle
    /// to the relay is gone.
    pub(super) fn token_watch(&self) -> impl Future<Output = ()> + Send + 'static {
        let tokens = self.tokens.clone();
        let sessions = self.sessions.clone();
        let commands = self.commands.downgrade();
        let mut shutdown = self.shutdown.clone();
        let interval = self.config.token_check_interval;
        async move {
            let Some(tokens) = tokens else { return };
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let Some(commands) = commands.upgrade() else { return };
                Relay::close_revoked(&tokens, &sessions, &commands).await;
            }
        }
    }

    /// Closes the open connections whose token is no longer valid.
    async fn close_revoked(tokens: &Tokens, sessions: &Mutex<Sessions>, commands: &mpsc::Sender<Command>) {
        let open: Vec<(ConnId, String)> = {
            let s = sessions.lock().unwrap_or_else(|p| p.into_inner());
            s.token_of.iter().map(|(c, t)| (*c, t.clone())).collect()
        };
        if open.is_empty() {
            return;
        }
        let tokens = tokens.clone();
        let ids: Vec<String> = open.iter().map(|(_, t)| t.clone()).collect();
        let invalid = tokio::task::spawn_blocking(move || {
            let t = &tokens;
            let now = cairn::now_millis();
            // Fail closed: a token whose validity cannot be read counts as revoked.
            ids.into_iter()
                .filter(|id| {
                    !t.still_valid(id, now).unwrap_or_else(|e| {
                        tracing::error!(token = %id, error = %e, "cannot check a token; closing its connections");
                        false
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (conn, token) in open {
            if invalid.contains(&token) {
                tracing::info!(conn, token = %token, "closing a connection whose token was revoked or expired");
                let _ = commands.send(Command::Event(Event::AccessChanged { conn, access: None })).await;
            }
        }
    }

    /// Checks a request's token; the access it grants and its id, or the refusal.
    pub(super) async fn authorize(
        &self,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<(Access, Option<TokenSlot>), (StatusCode, String)> {
        let Some(tokens) = self.tokens.clone() else { return Ok((Access::full(), None)) };
        let presented = match headers.get("authorization") {
            Some(value) => {
                let bearer = value.to_str().ok().and_then(|v| {
                    let (scheme, token) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
                });
                match bearer {
                    Some(t) => Some(t),
                    None => {
                        Metrics::add(&self.metrics.refused_bad_token, 1);
                        tracing::info!("refused a connection: malformed Authorization header");
                        return Err((
                            StatusCode::UNAUTHORIZED,
                            "malformed Authorization header: send `Authorization: Bearer <token>`\n".into(),
                        ));
                    }
                }
            }
            None => query.get("token").cloned(),
        };
        let Some(token) = presented else {
            Metrics::add(&self.metrics.refused_no_token, 1);
            tracing::info!("refused a connection: no token");
            return Err((
                StatusCode::UNAUTHORIZED,
                "no token: send Authorization: Bearer <token>, or ?token=<token>\n".into(),
            ));
        };
        let verified = tokio::task::spawn_blocking(move || tokens.verify(&token, cairn::now_millis()))
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let grant = match verified {
            Ok(g) => g,
            Err(
                e @ (TokenError::Storage(_) | TokenError::Graph(_) | TokenError::NoGraphs | TokenError::NoSuchId(_)),
            ) => {
                tracing::error!(error = %e, "token check failed");
                return Err((StatusCode::INTERNAL_SERVER_ERROR, "token check failed\n".into()));
            }
            Err(e) => {
                Metrics::add(&self.metrics.refused_bad_token, 1);
                tracing::info!(reason = %e, "refused a connection");
                return Err((StatusCode::UNAUTHORIZED, format!("{e}\n")));
            }
        };
        {
            let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let open = s.per_token.entry(grant.id.clone()).or_default();
            if *open >= self.config.max_connections_per_token {
                Metrics::add(&self.metrics.refused_too_many, 1);
                tracing::info!(token = %grant.id, "refused a connection: too many for this token");
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "token {} already has {} connections open (the limit)\n",
                        grant.id, self.config.max_connections_per_token
                    ),
                ));
            }
            *open += 1;
        }
        let write = grant.role == Role::Write;
        let access = match &grant.graphs {
            Graphs::All(_) => Access { scope: DocScope::Any, write, credential: None, agents: None },
            Graphs::Only(names) => {
                let graphs: Vec<GraphName> = names.iter().filter_map(|n| n.parse().ok()).collect();
                Access::graphs(&graphs, write)
            }
        }
        .held_by(grant.id.clone())
        .as_agents(grant.agents.clone());
        Ok((access, Some(TokenSlot { sessions: self.sessions.clone(), token: grant.id, conn: None })))
    }
}

pub(super) async fn upgrade(
    ws: WebSocketUpgrade,
    State(relay): State<Relay>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (access, slot) = match relay.authorize(&headers, &query).await {
        Ok(granted) => granted,
        Err(refusal) => return refusal.into_response(),
    };
    let max = relay.config.max_message_bytes;
    // The slot moves into the callback: if the upgrade never completes, dropping the callback
    // gives it back.
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| crate::connection::run(socket, relay, access, slot))
        .into_response()
}
