//! Moving from the reference server: its JSONL memory file imported into a Cairn database.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cairn::{OpenOptions, Replica};

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
        crate::commands::transfer::import_lines(&replica, &content, 500, false, &crate::commands::transfer::Bar::new())
    })
    .await??;
    let imported = report.entities_created + report.observations_added + report.relations_created;
    if imported > 0 || !report.rejected.is_empty() {
        tracing::warn!(
            file = %name,
            entities = report.entities_created,
            observations = report.observations_added,
            relations = report.relations_created,
            rejected = report.rejected.len(),
            "imported the reference memory file into {}",
            db.display()
        );
        for r in &report.rejected {
            tracing::warn!(line = r.line, reason = %r.reason, "skipped a line of {name}");
        }
    }
    Ok(())
}
