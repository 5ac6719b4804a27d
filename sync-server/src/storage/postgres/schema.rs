//! The PostgreSQL schema: versioned migrations, run once by whichever node starts first (the
//! others wait on an advisory lock), recorded in `cairn_schema`.

use postgres::Client;

/// The migrations, in order; `cairn_schema.version` counts how many have run.
const MIGRATIONS: &[&str] = &[include_str!("pg_v1.sql")];

/// The advisory lock key the migrating node holds ("CRLY").
const MIGRATION_LOCK: i64 = 0x4352_4c59;

/// Why a database cannot hold a relay's storage.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Written by a newer Cairn.
    #[error(
        "the PostgreSQL database has relay schema version {found}, newer than this build reads ({supported}); upgrade Cairn"
    )]
    TooNew {
        /// Its schema version.
        found: i64,
        /// The newest this build reads.
        supported: i64,
    },
    /// PostgreSQL failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
}

/// Brings the database to the current schema.
pub(super) fn run(db: &mut Client) -> Result<(), SchemaError> {
    let supported = MIGRATIONS.len() as i64;
    let mut tx = db.transaction()?;
    // Several nodes starting at once: one migrates, the others wait and then find it done.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS cairn_schema (version BIGINT NOT NULL)")?;
    let found: Option<i64> = tx.query_opt("SELECT version FROM cairn_schema", &[])?.map(|r| r.get(0));
    let from = found.unwrap_or(0);
    if from > supported {
        return Err(SchemaError::TooNew { found: from, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tracing::info!(migration = i + 1, "migrating the relay's PostgreSQL storage");
        tx.batch_execute(sql)?;
    }
    if found.is_none() {
        tx.execute("INSERT INTO cairn_schema (version) VALUES ($1)", &[&supported])?;
    } else if from < supported {
        tx.execute("UPDATE cairn_schema SET version = $1", &[&supported])?;
    }
    tx.commit()?;
    Ok(())
}
