//! The relay file's schema: its own application id and migrations, apart from a replica's.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

/// `PRAGMA application_id` of a relay file ("CRLY").
const APPLICATION_ID: i64 = 0x4352_4c59;
/// A replica file's ("CAIR"): what relay files were before they had a schema of their own.
const REPLICA_APPLICATION_ID: i64 = 0x4341_4952;

/// The migrations, in order; `PRAGMA user_version` counts how many have run.
pub(super) const MIGRATIONS: &[&str] = &[include_str!("relay_v1.sql"), include_str!("relay_v2.sql")];

/// Why a file cannot be a relay's.
#[derive(Debug, thiserror::Error)]
pub(super) enum SchemaError {
    /// Not SQLite, or another program's database.
    #[error("{} is not a Cairn relay file; point --data at a relay's directory or a new one", .0.display())]
    NotRelay(std::path::PathBuf),
    /// A replica's file with data in it.
    #[error("{} is a Cairn replica's database, not a relay's; give the relay a directory of its own", .0.display())]
    Replica(std::path::PathBuf),
    /// Written by a newer Cairn.
    #[error("{} has relay schema version {found}, newer than this build reads ({supported}); upgrade Cairn", .path.display())]
    TooNew {
        /// The file.
        path: std::path::PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build reads.
        supported: i64,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// A failure of the first read of `path`: a file that is not SQLite at all is not a relay file.
pub(super) fn not_sqlite(path: &Path, e: rusqlite::Error) -> SchemaError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => SchemaError::NotRelay(path.to_owned()),
        _ => SchemaError::Sqlite(e),
    }
}

/// Brings the file to the current schema: a new file gets every migration; a relay file from
/// before the relay had a schema of its own (a replica file whose graph tables are empty) is
/// converted in place, keeping its documents and tokens.
pub(super) fn run(conn: &mut Connection, path: &Path) -> Result<(), SchemaError> {
    let supported = MIGRATIONS.len() as i64;
    let read = |conn: &Connection| -> rusqlite::Result<(i64, i64)> {
        Ok((
            conn.query_row("PRAGMA application_id", [], |r| r.get(0))?,
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
        ))
    };
    // A current file needs no write lock (the token commands open it while the relay runs).
    if read(conn)? == (APPLICATION_ID, supported) {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (app_id, version) = read(&tx)?;
    let from = match app_id {
        APPLICATION_ID => version,
        0 => {
            let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            if tables != 0 {
                return Err(SchemaError::NotRelay(path.to_owned()));
            }
            0
        }
        REPLICA_APPLICATION_ID => {
            let kept: i64 = tx.query_row(
                "SELECT (SELECT count(*) FROM entities) + (SELECT count(*) FROM events) + (SELECT count(*) FROM cursors)",
                [],
                |r| r.get(0),
            )?;
            if kept != 0 {
                return Err(SchemaError::Replica(path.to_owned()));
            }
            tracing::info!(path = %path.display(), "converting a relay file to the relay's own schema");
            0
        }
        _ => return Err(SchemaError::NotRelay(path.to_owned())),
    };
    if from > supported {
        return Err(SchemaError::TooNew { path: path.to_owned(), found: from, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tracing::info!(path = %path.display(), migration = i + 1, "migrating relay storage");
        tx.execute_batch(sql)?;
    }
    tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {supported};"))?;
    tx.commit()?;
    Ok(())
}
