//! `cairn import` and `cairn export`: the reference memory server's `memory.jsonl` format.
//!
//! Import is resumable: after each batch commits, the number of lines done is saved in the
//! replica (keyed by the file's content hash), and a rerun starts after them. A batch that was
//! committed but not yet recorded is simply applied again: every operation of an import is
//! idempotent (existing entities, observations and relations are left as they are).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use cairn::{Error, Op, Outcome, Replica};

use crate::options::{ReplicaOpts, Session};
use crate::output;
use crate::shape::{self, RefGraph};

/// What an import did.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ImportReport {
    /// Non-blank lines in the file.
    pub(crate) lines: usize,
    /// Lines skipped because an earlier, interrupted run already imported them.
    pub(crate) resumed_after: usize,
    pub(crate) entities_created: usize,
    pub(crate) observations_added: usize,
    pub(crate) relations_created: usize,
    /// Entities, observations and relations that were already there.
    pub(crate) already_present: usize,
    /// Lines not imported, with why.
    pub(crate) rejected: Vec<Rejected>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Rejected {
    /// 1-based line number in the file.
    pub(crate) line: usize,
    pub(crate) reason: String,
}

/// Progress of a long import, for whoever shows it.
pub(crate) trait Progress {
    fn start(&self, total: u64, done: u64);
    fn advance(&self, lines: u64);
    fn finish(&self);
}

/// An indicatif progress bar on stderr (drawn only when stderr is a terminal).
pub(crate) struct Bar(indicatif::ProgressBar);

impl Bar {
    pub(crate) fn new() -> Self {
        Bar(indicatif::ProgressBar::hidden())
    }
}

impl Progress for Bar {
    fn start(&self, total: u64, done: u64) {
        self.0.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.0.set_length(total);
        self.0.set_position(done);
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} importing [{bar:40}] {pos}/{len} lines ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        self.0.set_style(style.progress_chars("=> "));
    }

    fn advance(&self, lines: u64) {
        self.0.inc(lines);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn references(op: &Op, name: &str) -> bool {
    match op {
        Op::AddObservation { entity, .. } => entity == name,
        Op::CreateRelation { relation, .. } => relation.from == name || relation.to == name,
        _ => false,
    }
}

/// Imports `memory.jsonl` content into a replica (blocking). `restart` ignores saved progress.
pub(crate) fn import_lines(
    replica: &Replica,
    content: &str,
    batch: usize,
    restart: bool,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    let digest = Sha256::digest(content.as_bytes());
    let key = format!(
        "import:{}:{}",
        replica.graph(),
        digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>()
    );
    let lines: Vec<(usize, &str)> =
        content.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l)).collect();
    let mut report = ImportReport { lines: lines.len(), ..ImportReport::default() };
    let done: usize = if restart { 0 } else { replica.checkpoint(&key)?.and_then(|v| v.parse().ok()).unwrap_or(0) };
    report.resumed_after = done.min(lines.len());
    progress.start(lines.len() as u64, report.resumed_after as u64);
    for (chunk_start, chunk) in lines.chunks(batch.max(1)).enumerate().map(|(i, c)| (i * batch.max(1), c)) {
        if chunk_start + chunk.len() <= done {
            continue;
        }
        // Parse and check each line on its own, so one bad line is reported and skipped.
        let mut items: Vec<(usize, Vec<Op>)> = Vec::new();
        for (n, line) in chunk.iter().skip(done.saturating_sub(chunk_start)) {
            match shape::parse_line(line) {
                Ok(parsed) => {
                    let ops = shape::line_ops(&parsed);
                    match cairn::validate(&ops) {
                        Ok(()) => items.push((*n, ops)),
                        Err(e) => report.rejected.push(Rejected { line: *n, reason: e.to_string() }),
                    }
                }
                Err(reason) => report.rejected.push(Rejected { line: *n, reason }),
            }
        }
        // Write the batch; a line naming an entity that does not exist is rejected and the rest
        // of the batch written without it. Each retry drops at least one line, so this ends.
        loop {
            let ops: Vec<Op> = items.iter().flat_map(|(_, ops)| ops.clone()).collect();
            match replica.write(&ops) {
                Ok(receipt) => {
                    for (op, outcome) in ops.iter().zip(&receipt.outcomes) {
                        match (op, outcome) {
                            (Op::CreateEntity { .. }, Outcome::Applied) => report.entities_created += 1,
                            (Op::AddObservation { .. }, Outcome::Applied) => report.observations_added += 1,
                            (Op::CreateRelation { .. }, Outcome::Applied) => report.relations_created += 1,
                            _ => report.already_present += 1,
                        }
                    }
                    break;
                }
                Err(Error::EntityNotFound(name)) => {
                    let before = items.len();
                    items.retain(|(n, ops)| {
                        let bad = ops.iter().any(|op| references(op, &name));
                        if bad {
                            report.rejected.push(Rejected { line: *n, reason: format!("entity {name:?} not found") });
                        }
                        !bad
                    });
                    if items.len() == before {
                        anyhow::bail!("import stopped: entity {name:?} not found");
                    }
                }
                Err(e) => return Err(e).context("import stopped; what was imported so far is kept, rerun to resume"),
            }
        }
        replica.set_checkpoint(&key, Some(&(chunk_start + chunk.len()).to_string()))?;
        progress.advance((chunk_start + chunk.len()).saturating_sub(done.max(chunk_start)) as u64);
    }
    progress.finish();
    report.rejected.sort_by_key(|r| r.line);
    Ok(report)
}

pub(crate) async fn import(opts: &ReplicaOpts, file: &Path, batch: usize) -> Result<()> {
    let content = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let session = Session::open(opts).await?;
    let replica: Arc<Replica> = session.replica.clone();
    let report =
        tokio::task::spawn_blocking(move || import_lines(&replica, &content, batch, false, &Bar::new())).await??;
    session.close().await;
    if opts.json {
        output::json(&report);
    } else {
        if report.resumed_after > 0 {
            output::text(&format!(
                "resumed after line {} of {} (imported by an earlier run)",
                report.resumed_after, report.lines
            ));
        }
        output::text(&format!(
            "imported {} entities, {} observations, {} relations ({} already present) from {} lines",
            report.entities_created,
            report.observations_added,
            report.relations_created,
            report.already_present,
            report.lines
        ));
        for r in &report.rejected {
            output::text(&format!("rejected line {}: {}", r.line, output::safe(&r.reason)));
        }
    }
    Ok(())
}

pub(crate) async fn export(opts: &ReplicaOpts, out: Option<&Path>) -> Result<()> {
    let session = Session::open(opts).await?;
    let replica = session.replica.clone();
    let read = tokio::task::spawn_blocking(move || replica.read_graph()).await??;
    session.close().await;
    let jsonl = shape::to_jsonl(&RefGraph::from(&read.data));
    match out {
        Some(path) => {
            std::fs::write(path, jsonl).with_context(|| format!("cannot write {}", path.display()))?;
            if !opts.json {
                output::text(&format!(
                    "exported {} entities and {} relations to {}",
                    read.data.entities.len(),
                    read.data.relations.len(),
                    path.display()
                ));
            }
        }
        None => output::text(jsonl.trim_end()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;
    impl Progress for Quiet {
        fn start(&self, _: u64, _: u64) {}
        fn advance(&self, _: u64) {}
        fn finish(&self) {}
    }

    #[test]
    fn a_truncated_last_line_is_reported_and_nothing_else_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(dir.path().join("m.db"), "importer").unwrap();
        let content = concat!(
            r#"{"type":"entity","name":"Alice","entityType":"person","observations":["likes tea"]}"#,
            "\n",
            r#"{"type":"entity","name":"ACME","entityType":"company","observations":[]}"#,
            "\n",
            r#"{"type":"relation","from":"Alice","to":"ACME","relationType":"works_at"}"#,
            "\n",
            r#"{"type":"relation","from":"Alice","to":"Nobody","relationType":"knows"}"#,
            "\n",
            r#"{"type":"entity","name":"Bob","entityType":"per"#,
        );
        let report = import_lines(&replica, content, 2, false, &Quiet).unwrap();
        assert_eq!((report.entities_created, report.observations_added, report.relations_created), (2, 1, 1));
        let rejected: Vec<usize> = report.rejected.iter().map(|r| r.line).collect();
        assert_eq!(rejected, [4, 5]);
        assert!(report.rejected[0].reason.contains("Nobody"));
        assert!(report.rejected[1].reason.contains("not valid JSON"));
        // Importing the same file again does nothing: it resumes after its last line.
        let again = import_lines(&replica, content, 2, false, &Quiet).unwrap();
        assert_eq!(again.resumed_after, 5);
        assert_eq!(again.entities_created + again.observations_added + again.relations_created, 0);
    }
}
