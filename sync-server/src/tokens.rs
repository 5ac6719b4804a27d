//! Relay access tokens: who may read or write which graphs.
//!
//! A token is `cairn_<id>_<secret>`. The relay stores only the SHA-256 of the secret, with the
//! token's graphs, role, expiry and revocation, in a `tokens` table of its data file. Tokens are
//! managed through the data directory (`cairn relay token create|list|revoke`), also while the
//! relay runs: whoever can write the relay's files administers it, and nobody else can.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

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
    /// A graph name is invalid.
    #[error(transparent)]
    Graph(#[from] cairn::InvalidInput),
    /// No token with this id to revoke.
    #[error("no token with id {0}; `cairn relay token list` shows them")]
    NoSuchId(String),
    /// The token file failed.
    #[error("token storage: {0}")]
    Storage(#[from] rusqlite::Error),
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
}

/// A token's row: hash, graphs (JSON), role, expiry, revocation.
type StoredToken = (String, String, String, Option<Millis>, Option<Millis>);

/// The relay's token table.
#[derive(Debug)]
pub struct Tokens {
    db: Connection,
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

impl Tokens {
    /// Opens the token table in the relay data file at `path` (created if missing).
    pub fn open(path: &Path) -> Result<Tokens, TokenError> {
        // The tokens live in the relay's data file: make sure it is one (created and migrated)
        // before adding the table, so the relay's own open accepts it.
        cairn::store::Store::open(path, cairn::Durability::Normal).map_err(|e| match e {
            cairn::Error::Storage(e) => TokenError::Storage(e),
            other => TokenError::Storage(rusqlite::Error::ToSqlConversionFailure(other.into())),
        })?;
        let db = Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS tokens (
                 id         TEXT PRIMARY KEY,
                 hash       TEXT NOT NULL,
                 graphs     TEXT NOT NULL,
                 role       TEXT NOT NULL,
                 label      TEXT,
                 created_at INTEGER NOT NULL,
                 expires_at INTEGER,
                 revoked_at INTEGER
             )",
        )?;
        Ok(Tokens { db })
    }

    /// Makes a token; returns its id and the token string (shown once: only its hash is kept).
    pub fn create(
        &self,
        graphs: &[String],
        role: Role,
        expires_at: Option<Millis>,
        label: Option<&str>,
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
        let role_text = match role {
            Role::Read => "read",
            Role::Write => "write",
        };
        self.db.execute(
            "INSERT INTO tokens (id, hash, graphs, role, label, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id, digest(&secret), serde_json::to_string(graphs).unwrap_or_default(), role_text, label, now, expires_at],
        )?;
        Ok((id.clone(), format!("cairn_{id}_{secret}")))
    }

    /// Every token, newest first.
    pub fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        let mut stmt = self.db.prepare(
            "SELECT id, graphs, role, label, created_at, expires_at, revoked_at FROM tokens ORDER BY created_at DESC, id",
        )?;
        let rows = stmt.query_map([], |r| {
            let graphs: String = r.get(1)?;
            let role: String = r.get(2)?;
            Ok(TokenInfo {
                id: r.get(0)?,
                graphs: parse_graphs(&graphs),
                role: if role == "write" { Role::Write } else { Role::Read },
                label: r.get(3)?,
                created_at: r.get(4)?,
                expires_at: r.get(5)?,
                revoked_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes a token: new connections are refused, open ones closed within a second or two.
    pub fn revoke(&self, id: &str, now: Millis) -> Result<(), TokenError> {
        let n = self
            .db
            .execute("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1", params![id, now])?;
        if n == 0 { Err(TokenError::NoSuchId(id.to_owned())) } else { Ok(()) }
    }

    /// Checks a presented token.
    pub fn verify(&self, token: &str, now: Millis) -> Result<Grant, TokenError> {
        let rest = token.trim().strip_prefix("cairn_").ok_or(TokenError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
        if id.is_empty() || secret.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed);
        }
        let row: Option<StoredToken> = self
            .db
            .prepare_cached("SELECT hash, graphs, role, expires_at, revoked_at FROM tokens WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .optional()?;
        // Hash the secret whether or not the id exists, so the two failures take alike.
        let presented = digest(secret);
        let Some((hash, graphs, role, expires_at, revoked_at)) = row else { return Err(TokenError::Unknown) };
        if !same(&presented, &hash) {
            return Err(TokenError::Unknown);
        }
        if revoked_at.is_some() {
            return Err(TokenError::Revoked(id.to_owned()));
        }
        if expires_at.is_some_and(|t| t <= now) {
            return Err(TokenError::Expired(id.to_owned()));
        }
        Ok(Grant {
            id: id.to_owned(),
            graphs: parse_graphs(&graphs),
            role: if role == "write" { Role::Write } else { Role::Read },
        })
    }

    /// Whether the token with this id may still be used (not revoked, not expired).
    pub fn still_valid(&self, id: &str, now: Millis) -> Result<bool, TokenError> {
        let row: Option<(Option<Millis>, Option<Millis>)> = self
            .db
            .prepare_cached("SELECT expires_at, revoked_at FROM tokens WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(matches!(row, Some((expires, None)) if expires.is_none_or(|t| t > now)))
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
        let stored: String = t.db.query_row("SELECT hash FROM tokens", [], |r| r.get(0)).unwrap();
        assert!(!token.contains(&stored) && stored.len() == 64);
        assert!(matches!(t.create(&[], Role::Read, None, None, 1), Err(TokenError::NoGraphs)));
        assert!(matches!(t.create(&["Bad Graph".into()], Role::Read, None, None, 1), Err(TokenError::Graph(_))));
        let (_, all) = t.create(&["*".into()], Role::Read, None, None, 1).unwrap();
        assert_eq!(t.verify(&all, 2).unwrap().graphs, Graphs::All(AllGraphs::Star));
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
