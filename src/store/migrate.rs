//! The replica file's schema: whose file it is (`PRAGMA application_id`) and which migrations
//! have run (`PRAGMA user_version` counts them).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// `PRAGMA application_id` of a Cairn replica file ("CAIR"), so that Cairn never mistakes another
/// program's SQLite database for its own, nor writes into one.
const APPLICATION_ID: i64 = 0x4341_4952;

/// The schema migrations, in order.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
];

/// A failure to open or first read `path`: "not a database" says which file and what to do.
pub(super) fn open_error(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::NotADatabase { path: path.to_owned() },
        _ => Error::from(e),
    }
}

/// Refuses a file that some other program owns (or that is not SQLite at all).
pub(super) fn check_owner(conn: &Connection, path: &Path) -> Result<()> {
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| open_error(path, e))?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(Error::NotCairn { path: path.to_owned() });
    }
    Ok(())
}

/// Runs pending migrations and gives a new file its replica id.
pub(super) fn run(conn: &mut Connection, path: &Path) -> Result<()> {
    // A file already at the current schema needs no write lock: an open must not queue
    // behind another process's long run of writes (an import) for a lock it does not use.
    if is_current(conn)? {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Checked again inside the write lock: another process may have initialised the file
    // between our first look and now.
    let app_id: i64 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app_id == 0 {
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables != 0 {
            return Err(Error::NotCairn { path: path.to_owned() });
        }
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    }
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(Error::SchemaTooNew { path: path.to_owned(), found: version, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tracing::info!(path = %path.display(), migration = i + 1, "migrating storage");
        tx.execute_batch(sql)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {supported}"))?;
    super::meta::init_replica_id(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Refuses a file opened read-only that would need a migration (or first-time setup) to be read:
/// both write, and a read-only open writes nothing.
pub(super) fn require_current(conn: &Connection, path: &Path, cause: super::ReadOnlyCause) -> Result<()> {
    if is_current(conn)? {
        return Ok(());
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(Error::SchemaTooNew { path: path.to_owned(), found: version, supported });
    }
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if app_id == 0 && tables != 0 {
        return Err(Error::NotCairn { path: path.to_owned() });
    }
    let action = if tables == 0 {
        "set it up as a replica (it is an empty file)".to_owned()
    } else {
        format!(
            "migrate its schema from version {version} to {supported}, which this build needs to read it \
             (open it once writable with this build, or read it with the build that wrote it)"
        )
    };
    Err(super::access::refused(path, cause, action))
}

/// Whether the file is Cairn's, at the current schema version, and initialised.
fn is_current(conn: &Connection) -> Result<bool> {
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app_id != APPLICATION_ID || version != MIGRATIONS.len() as i64 {
        return Ok(false);
    }
    super::meta::has_replica_id(conn)
}
