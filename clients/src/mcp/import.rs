//! Moving from the reference server: its JSONL memory file imported into a Cairn database.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cairn::{OpenOptions, Replica};

use crate::commands::transfer::{Bar, ImportOptions, import_lines};
use crate::options::{ReplicaOpts, default_agent};

/// `memory.jsonl` -> `memory.cairn.db` in the same directory.
pub(super) fn beside(file: &Path) -> PathBuf {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("memory");
    file.with_file_name(format!("{stem}.cairn.db"))
}

/// Imports the reference server's file into the database (once per content: a rerun resumes or
/// finds nothing to do). The original is never modified. Progress goes to stderr.
pub(super) async fn import_reference_file(opts: &ReplicaOpts, db: &Path, file: &Path) -> Result<()> {
    let content =
        std::fs::read_to_string(file).with_context(|| format!("cannot read MEMORY_FILE_PATH {}", file.display()))?;
    let agent = opts
        .agent
        .clone()
        .unwrap_or_else(|| format!("memory-import@{}", default_agent().rsplit('@').next().unwrap_or("local")));
    let options = OpenOptions::new(agent.parse()?).graph(opts.graph.parse()?).durability(opts.durability.into());
    let name = file.display().to_string();
    let db_path = db.to_owned();
    let report = tokio::task::spawn_blocking(move || {
        let replica = Replica::open_with(db_path, options)?;
        import_lines(&replica, &content, ImportOptions::default(), &Bar::new())
    })
    .await?
    // A line that cannot be imported stops the server before it serves anything: a host shows
    // a server that failed to start, where a warning on stderr is never seen.
    .with_context(|| format!("cannot import MEMORY_FILE_PATH {name} into {}", db.display()))?;
    let imported = report.entities_created + report.observations_added + report.relations_created;
    if imported > 0 {
        tracing::info!(
            file = %name,
            entities = report.entities_created,
            observations = report.observations_added,
            relations = report.relations_created,
            "imported the reference memory file into {}",
            db.display()
        );
    }
    if !report.endpoints_created.is_empty() {
        tracing::info!(
            entities = ?report.endpoints_created,
            "created untyped entities that relations of {name} name and no line defines"
        );
    }
    for r in &report.merged {
        tracing::info!(line = r.line, "{name}: {}", r.reason);
    }
    Ok(())
}
