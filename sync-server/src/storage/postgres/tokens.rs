//! The relay's tokens in PostgreSQL: every node checks connections against the same table, so a
//! token revoked through one node is refused, and closed, on every node (each node's revocation
//! watcher reads it afresh).

use std::sync::Mutex;

use cairn::Millis;

use super::Link;
use crate::storage::{StorageError, TokenRecord, TokenStore};

/// Tokens in a PostgreSQL database.
#[derive(Debug)]
pub struct PgTokens {
    link: Mutex<Link>,
}

fn err(e: postgres::Error) -> StorageError {
    StorageError(Box::new(e))
}

impl PgTokens {
    /// Connects to `url`, bringing its schema up to date.
    pub fn open(url: &str) -> Result<PgTokens, StorageError> {
        let mut link = Link::open(url).map_err(err)?;
        super::schema::run(link.get().map_err(err)?).map_err(|e| StorageError(Box::new(e)))?;
        Ok(PgTokens { link: Mutex::new(link) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>) -> Result<T, StorageError> {
        // A connection holds no half-done state between calls: a panic elsewhere leaves it usable.
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        f(link.get().map_err(err)?).map_err(err)
    }
}

const COLUMNS: &str = "id, hash, graphs, role, label, created_at, expires_at, revoked_at, agents";

fn record(r: &postgres::Row) -> TokenRecord {
    TokenRecord {
        id: r.get(0),
        hash: r.get(1),
        graphs: r.get(2),
        role: r.get(3),
        label: r.get(4),
        created_at: r.get(5),
        expires_at: r.get(6),
        revoked_at: r.get(7),
        agents: r.get(8),
    }
}

impl TokenStore for PgTokens {
    fn insert(&self, t: &TokenRecord) -> Result<(), StorageError> {
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO cairn_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
                &[&t.id, &t.hash, &t.graphs, &t.role, &t.label, &t.created_at, &t.expires_at, &t.revoked_at, &t.agents],
            )
        })?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<TokenRecord>, StorageError> {
        let row = self.with(|c| c.query_opt(&format!("SELECT {COLUMNS} FROM cairn_tokens WHERE id = $1"), &[&id]))?;
        Ok(row.as_ref().map(record))
    }

    fn list(&self) -> Result<Vec<TokenRecord>, StorageError> {
        let rows =
            self.with(|c| c.query(&format!("SELECT {COLUMNS} FROM cairn_tokens ORDER BY created_at DESC, id"), &[]))?;
        Ok(rows.iter().map(record).collect())
    }

    fn revoke(&self, id: &str, now: Millis) -> Result<bool, StorageError> {
        let n = self.with(|c| {
            c.execute("UPDATE cairn_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1", &[&id, &now])
        })?;
        Ok(n > 0)
    }
}
