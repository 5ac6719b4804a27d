//! Relay access tokens: who may read or write which graphs.
//!
//! A token is `cairn_<id>_<secret>`. The relay stores only the SHA-256 of the secret, with the
//! token's graphs, role, expiry and revocation, in its [`TokenStore`] (with SQLite, a `tokens`
//! table of its data file). Tokens are managed through the data directory
//! (`cairn relay token create|list|revoke`), also while the relay runs: whoever can write the
//! relay's files administers it, and nobody else can.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::storage::{SqliteTokens, StorageError, TokenRecord, TokenStore};

use cairn::{GraphName, Millis};

/// Why a token was refused, or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `cairn_<id>_<secret>`.
    #[error("malformed token (expected cairn_<id>_<secret>)")]
    Malformed,
    /// No token with that id, or the secret does not match.
    #[error("unknown token")]
    Unknown,
    /// Revoked.
    #[error("token {0} was revoked")]
    Revoked(String),
    /// Past its expiry.
    #[error("token {0} expired")]
    Expired(String),
    /// A token must grant at least one graph.
    #[error("a token needs at least one --graph (a graph name, or * for every graph)")]
    NoGraphs,
    /// A graph name or an agent pattern is invalid.
    #[error(transparent)]
    Graph(#[from] cairn::InvalidInput),
    /// No token with this id to revoke.
    #[error("no token with id {0}; `cairn relay token list` shows them")]
    NoSuchId(String),
    /// The token store failed.
    #[error("token storage: {0}")]
    Storage(#[from] StorageError),
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read the graphs.
    Read,
    /// Read and write them.
    Write,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            other => Err(format!("role {other:?}: use read or write")),
        }
    }
}

/// Which graphs a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Graphs {
    /// Every graph (`*`).
    All(AllGraphs),
    /// These graphs.
    Only(Vec<String>),
}

/// The `*` grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AllGraphs {
    /// Serialised as `"*"`.
    #[serde(rename = "*")]
    Star,
}

/// A verified token's grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's id.
    pub id: String,
    /// The graphs it grants.
    pub graphs: Graphs,
    /// Read or write.
    pub role: Role,
    /// The agent names its changes may claim; `None`: any (self-declared).
    pub agents: Option<AgentPatterns>,
}

/// Agent names as patterns, `*` matching any run of characters (`planner@*`, `ci-bot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AgentPatterns(Vec<String>);

impl AgentPatterns {
    /// Checks each pattern as an agent name (`*` allowed anywhere in it).
    pub fn new(patterns: &[String]) -> Result<AgentPatterns, TokenError> {
        for p in patterns {
            p.parse::<cairn::AgentName>()?;
        }
        Ok(AgentPatterns(patterns.to_vec()))
    }

    /// Whether `agent` matches one of the patterns.
    pub fn allow(&self, agent: &str) -> bool {
        self.0.iter().any(|p| glob(p, agent))
    }

    /// The patterns.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn parse_agents(json: Option<&str>) -> Option<AgentPatterns> {
    json.and_then(|j| serde_json::from_str::<Vec<String>>(j).ok()).map(AgentPatterns)
}

/// A token as `list` shows it (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// The graphs it grants.
    pub graphs: Graphs,
    /// Read or write.
    pub role: Role,
    /// A note for humans.
    pub label: Option<String>,
    /// When it was made.
    pub created_at: Millis,
    /// When it expires, if it does.
    pub expires_at: Option<Millis>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Millis>,
    /// The agent names its changes may claim; `None`: any.
    pub agents: Option<AgentPatterns>,
}

/// The relay's tokens: what they mean, over whichever [`TokenStore`] keeps them. Cheap to
/// clone; every clone uses the same store.
#[derive(Debug, Clone)]
pub struct Tokens {
    store: Arc<dyn TokenStore>,
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        out.push_str(&cairn::automerge::ActorId::random().to_hex_string());
    }
    out.truncate(bytes * 2);
    out
}

fn digest(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality that takes the same time wherever the inputs differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_graphs(json: &str) -> Graphs {
    let list: Vec<String> = serde_json::from_str(json).unwrap_or_default();
    if list.iter().any(|g| g == "*") { Graphs::All(AllGraphs::Star) } else { Graphs::Only(list) }
}

fn role_of(text: &str) -> Role {
    if text == "write" { Role::Write } else { Role::Read }
}

impl Tokens {
    /// The tokens of the relay data file at `path` (created and migrated if missing).
    pub fn open(path: &Path) -> Result<Tokens, TokenError> {
        Ok(Tokens::new(Arc::new(SqliteTokens::open(path)?)))
    }

    /// The tokens kept in `store`.
    pub fn new(store: Arc<dyn TokenStore>) -> Tokens {
        Tokens { store }
    }

    /// Makes a token; returns its id and the token string (shown once: only its hash is kept).
    /// Its changes may claim any agent name (see [`Tokens::create_bound`]).
    pub fn create(
        &self,
        graphs: &[String],
        role: Role,
        expires_at: Option<Millis>,
        label: Option<&str>,
        now: Millis,
    ) -> Result<(String, String), TokenError> {
        self.create_bound(graphs, role, expires_at, label, None, now)
    }

    /// [`Tokens::create`], for a token whose changes may claim only the agent names `agents`
    /// matches: the relay refuses any other (rule `agent`).
    pub fn create_bound(
        &self,
        graphs: &[String],
        role: Role,
        expires_at: Option<Millis>,
        label: Option<&str>,
        agents: Option<&AgentPatterns>,
        now: Millis,
    ) -> Result<(String, String), TokenError> {
        if graphs.is_empty() {
            return Err(TokenError::NoGraphs);
        }
        for g in graphs.iter().filter(|g| g.as_str() != "*") {
            g.parse::<GraphName>()?;
        }
        let id = random_hex(4);
        let secret = random_hex(24);
        let role = match role {
            Role::Read => "read",
            Role::Write => "write",
        };
        self.store.insert(&TokenRecord {
            id: id.clone(),
            hash: digest(&secret),
            // Serialising a list of strings cannot fail.
            graphs: serde_json::to_string(graphs).unwrap_or_default(),
            role: role.into(),
            label: label.map(str::to_owned),
            created_at: now,
            expires_at,
            revoked_at: None,
            // Serialising a list of strings cannot fail.
            agents: agents.map(|a| serde_json::to_string(a.as_slice()).unwrap_or_default()),
        })?;
        Ok((id.clone(), format!("cairn_{id}_{secret}")))
    }

    /// Every token, newest first.
    pub fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                graphs: parse_graphs(&t.graphs),
                role: role_of(&t.role),
                label: t.label,
                created_at: t.created_at,
                expires_at: t.expires_at,
                revoked_at: t.revoked_at,
                agents: parse_agents(t.agents.as_deref()),
            })
            .collect())
    }

    /// Revokes a token: new connections are refused, open ones closed within a second or two.
    pub fn revoke(&self, id: &str, now: Millis) -> Result<(), TokenError> {
        if self.store.revoke(id, now)? { Ok(()) } else { Err(TokenError::NoSuchId(id.to_owned())) }
    }

    /// Checks a presented token.
    pub fn verify(&self, token: &str, now: Millis) -> Result<Grant, TokenError> {
        let rest = token.trim().strip_prefix("cairn_").ok_or(TokenError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
        if id.is_empty() || secret.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed);
        }
        let stored = self.store.get(id)?;
        // Hash the secret whether or not the id exists, so the two failures take alike.
        let presented = digest(secret);
        let Some(t) = stored else { return Err(TokenError::Unknown) };
        if !same(&presented, &t.hash) {
            return Err(TokenError::Unknown);
        }
        if t.revoked_at.is_some() {
            return Err(TokenError::Revoked(id.to_owned()));
        }
        if t.expires_at.is_some_and(|e| e <= now) {
            return Err(TokenError::Expired(id.to_owned()));
        }
        Ok(Grant {
            id: id.to_owned(),
            graphs: parse_graphs(&t.graphs),
            role: role_of(&t.role),
            agents: parse_agents(t.agents.as_deref()),
        })
    }

    /// Whether the token with this id may still be used (not revoked, not expired).
    pub fn still_valid(&self, id: &str, now: Millis) -> Result<bool, TokenError> {
        Ok(self.store.get(id)?.is_some_and(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now)))
    }
}

/// Parses a duration like `30d`, `12h`, `90m` or `3600s` into milliseconds.
pub fn parse_duration(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 =
        digits.parse().map_err(|_| format!("duration {s:?}: use a number and a unit, like 30d, 12h, 90m or 3600s"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("duration {s:?}: the unit must be s, m, h or d")),
    };
    // At most a century: an expiry is added to the current time, and must stay a real date.
    const CENTURY: i64 = 36_500 * 86_400_000;
    n.checked_mul(unit_ms)
        .filter(|ms| *ms <= CENTURY)
        .ok_or_else(|| format!("duration {s:?} is too long (at most 36500d)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_fail_for_the_right_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::open(&dir.path().join("relay.db")).unwrap();
        let (id, token) = t.create(&["team".into()], Role::Write, Some(10_000), Some("ci"), 1_000).unwrap();
        let grant = t.verify(&token, 2_000).unwrap();
        assert_eq!((grant.id.as_str(), grant.role), (id.as_str(), Role::Write));
        assert_eq!(grant.graphs, Graphs::Only(vec!["team".into()]));
        assert!(matches!(t.verify(&token, 10_000), Err(TokenError::Expired(_))));
        assert!(matches!(t.verify(&format!("{token}x"), 2_000), Err(TokenError::Unknown)));
        assert!(matches!(t.verify("cairn_ffffffff_nope", 2_000), Err(TokenError::Unknown)));
        assert!(matches!(t.verify("Bearer something", 2_000), Err(TokenError::Malformed)));
        t.revoke(&id, 3_000).unwrap();
        assert!(matches!(t.verify(&token, 4_000), Err(TokenError::Revoked(_))));
        assert!(!t.still_valid(&id, 4_000).unwrap());
        assert!(matches!(t.revoke("nope", 1), Err(TokenError::NoSuchId(_))));
        // Only the hash is stored.
        let stored = t.store.get(&id).unwrap().unwrap().hash;
        assert!(!token.contains(&stored) && stored.len() == 64);
        assert!(matches!(t.create(&[], Role::Read, None, None, 1), Err(TokenError::NoGraphs)));
        assert!(matches!(t.create(&["Bad Graph".into()], Role::Read, None, None, 1), Err(TokenError::Graph(_))));
        let (_, all) = t.create(&["*".into()], Role::Read, None, None, 1).unwrap();
        assert_eq!(t.verify(&all, 2).unwrap().graphs, Graphs::All(AllGraphs::Star));
    }

    #[test]
    fn agent_patterns() {
        let p = AgentPatterns::new(&["planner@*".into(), "ci-bot".into(), "*-reviewer".into()]).unwrap();
        for yes in ["planner@laptop", "planner@", "ci-bot", "code-reviewer"] {
            assert!(p.allow(yes), "{yes}");
        }
        for no in ["planner", "ci-bot2", "xplanner@laptop", "reviewer", "mallory"] {
            assert!(!p.allow(no), "{no}");
        }
        assert!(AgentPatterns::new(&["*".into()]).unwrap().allow("anyone"));
        assert!(AgentPatterns::new(&["a*b*c".into()]).unwrap().allow("aXbYc"));
        assert!(!AgentPatterns::new(&["a*b*c".into()]).unwrap().allow("aXcYb"));
        assert!(AgentPatterns::new(&["".into()]).is_err());
        assert!(AgentPatterns::new(&["a\u{1b}b".into()]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::open(&dir.path().join("relay.db")).unwrap();
        let (_, token) = t.create_bound(&["team".into()], Role::Write, None, None, Some(&p), 1).unwrap();
        assert_eq!(t.verify(&token, 2).unwrap().agents, Some(p));
        let (_, free) = t.create(&["team".into()], Role::Write, None, None, 1).unwrap();
        assert_eq!(t.verify(&free, 2).unwrap().agents, None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_duration("90m"), Ok(5_400_000));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("106751991000d").unwrap_err().contains("too long"), "no overflow past a century");
    }
}
