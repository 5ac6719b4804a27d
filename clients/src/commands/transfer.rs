//! `cairn import` and `cairn export`: the reference memory server's `memory.jsonl` format.
//!
//! Nothing the reference stored is lost on the way in: every line is parsed and checked before
//! anything is written, and one that cannot be imported stops the import whole, with its line
//! number and why (unless the user asks to skip such lines). A relation whose endpoint has no
//! entity line (the reference accepts those) gets that entity created, untyped, and reported.
//!
//! Import is resumable: after each batch commits, the number of lines done is saved in the
//! replica (keyed by the file's content hash), and a rerun starts after them. A batch that was
//! committed but not yet recorded is simply applied again: every operation of an import is
//! idempotent (existing entities, observations and relations are left as they are).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use cairn::{Op, Outcome, Replica};

use crate::options::{ReplicaOpts, Session};
use crate::output;
use cairn_tools::shape::{self, JsonlLine, RefGraph};

/// How to import.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImportOptions {
    /// Lines per transaction.
    pub(crate) batch: usize,
    /// Ignore progress saved by an earlier run.
    pub(crate) restart: bool,
    /// Import the other lines when some cannot be (they are reported), instead of nothing.
    pub(crate) skip_bad_lines: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { batch: 500, restart: false, skip_bad_lines: false }
    }
}

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
    /// Entities created, untyped, because a relation names them and no line defines them.
    pub(crate) endpoints_created: Vec<String>,
    /// Lines that repeat an entity with another type: Cairn keeps one entity per name, with the
    /// first type, and merges the observations.
    pub(crate) merged: Vec<LineNote>,
    /// Lines not imported, with why (only with `skip_bad_lines`).
    pub(crate) rejected: Vec<LineNote>,
}

#[derive(Debug, Serialize)]
pub(crate) struct LineNote {
    /// 1-based line number in the file.
    pub(crate) line: usize,
    pub(crate) reason: String,
}

/// A line that cannot be imported: the import stops before writing anything.
#[derive(Debug, thiserror::Error)]
#[error(
    "line {line} cannot be imported: {reason}; nothing was imported (fix the line, or import the rest with `cairn import --skip-bad-lines`)"
)]
pub(crate) struct BadLine {
    pub(crate) line: usize,
    pub(crate) reason: String,
}

/// Progress of a long import, for whoever shows it.
pub(crate) trait Progress {
    fn start(&self, total: u64, done: u64);
    fn advance(&self, lines: u64);
    /// A batch committed: the first `done` of `total` lines are in the replica, and a rerun
    /// resumes after them.
    fn committed(&self, _done: u64, _total: u64) {}
    fn finish(&self);
}

/// `--json`: every committed batch as one line of JSON on stderr, `{"committed":{"lines":N,"of":M}}`
/// (stdout keeps the one report). A script (or a test) can act on a point the import reached
/// rather than on a time: once it has read a line, those lines are durable.
pub(crate) struct JsonLines;

impl Progress for JsonLines {
    fn start(&self, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn committed(&self, done: u64, total: u64) {
        eprintln!("{}", serde_json::json!({ "committed": { "lines": done, "of": total } }));
    }
    fn finish(&self) {}
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

/// Most bytes of operations one import write holds (see `cairn::MAX_WRITE_BYTES`).
const BATCH_BYTES: usize = 4 << 20;

/// Operations waiting to be written together.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    /// For each operation, whether it creates a relation's endpoint (and whether no line defines it).
    endpoints: Vec<Option<bool>>,
    bytes: usize,
    /// Lines with operations in the batch.
    lines: usize,
}

impl Batch {
    fn push(&mut self, op: Op, endpoint: Option<bool>) {
        self.bytes += cairn::write_bytes(&op);
        self.ops.push(op);
        self.endpoints.push(endpoint);
    }

    /// Writes the batch and records that the first `lines_done` lines are imported.
    fn write(
        &mut self,
        replica: &Replica,
        key: &str,
        lines_done: usize,
        report: &mut ImportReport,
        progress: &dyn Progress,
    ) -> Result<()> {
        let batch = std::mem::take(self);
        if !batch.ops.is_empty() {
            let receipt = replica
                .write(&batch.ops)
                .context("import stopped; what was imported so far is kept, rerun to resume")?;
            for ((op, outcome), endpoint) in batch.ops.iter().zip(&receipt.outcomes).zip(&batch.endpoints) {
                let applied = *outcome == Outcome::Applied;
                match (op, endpoint) {
                    (Op::CreateEntity { name, .. }, Some(true)) if applied => {
                        report.endpoints_created.push(name.clone())
                    }
                    (Op::CreateEntity { .. }, Some(false)) if applied => report.entities_created += 1,
                    (_, Some(_)) => {}
                    (Op::CreateEntity { .. }, None) if applied => report.entities_created += 1,
                    (Op::AddObservation { .. }, None) if applied => report.observations_added += 1,
                    (Op::CreateRelation { .. }, None) if applied => report.relations_created += 1,
                    _ => report.already_present += 1,
                }
            }
        }
        replica.set_checkpoint(key, Some(&lines_done.to_string()))?;
        progress.committed(lines_done as u64, report.lines as u64);
        Ok(())
    }
}

/// Imports `memory.jsonl` content into a replica (blocking).
pub(crate) fn import_lines(
    replica: &Replica,
    content: &str,
    options: ImportOptions,
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
    let saved = if options.restart { None } else { replica.checkpoint(&key)? };
    let done: usize = saved.and_then(|v| v.parse().ok()).unwrap_or(0).min(lines.len());
    report.resumed_after = done;

    // Every line is parsed and checked before anything is written.
    let mut parsed: Vec<(usize, usize, JsonlLine)> = Vec::new();
    for (index, (n, line)) in lines.iter().enumerate().skip(done) {
        // Each operation on its own: a line too large for one write is split over several.
        let checked = shape::parse_line(line).and_then(|l| {
            shape::line_ops(&l)
                .iter()
                .try_for_each(|op| cairn::validate(std::slice::from_ref(op)))
                .map_err(|e| e.to_string())?;
            Ok(l)
        });
        match checked {
            Ok(l) => parsed.push((index, *n, l)),
            Err(reason) if options.skip_bad_lines => report.rejected.push(LineNote { line: *n, reason }),
            Err(reason) => return Err(BadLine { line: *n, reason }.into()),
        }
    }
    // The type each name is first defined with, and where.
    let mut defined: HashMap<&str, (usize, &str)> = HashMap::new();
    for (_, n, line) in &parsed {
        if let JsonlLine::Entity(e) = line {
            match defined.get(e.name.as_str()) {
                None => {
                    defined.insert(&e.name, (*n, &e.entity_type));
                }
                Some((_, first)) if *first != e.entity_type => report.merged.push(LineNote {
                    line: *n,
                    reason: format!(
                        "entity {:?} again, with type {:?}: kept the first type {first:?}, merged the observations",
                        e.name, e.entity_type
                    ),
                }),
                Some(_) => {}
            }
        }
    }

    progress.start(lines.len() as u64, done as u64);
    // Operations in batches of `batch` lines, and of at most BATCH_BYTES: a batch is one change per
    // shard, and a change must fit one sync message (a relay takes up to 16 MiB).
    let batch = options.batch.max(1);
    let mut ensured: HashSet<String> = HashSet::new();
    let mut pending = Batch::default();
    let mut reported = done;
    for (index, n, line) in &parsed {
        let mut ops = Vec::new();
        let mut endpoints = Vec::new();
        if let JsonlLine::Relation(r) = line {
            // An endpoint no earlier line defines: created here (with the type a later line
            // gives it, if any), so the relation is kept as the reference kept it.
            for name in [&r.from, &r.to] {
                let earlier = defined.get(name.as_str()).is_some_and(|(line, _)| line < n);
                if !earlier && ensured.insert(name.clone()) {
                    let entity_type = defined.get(name.as_str()).map_or("", |(_, t)| t).to_owned();
                    endpoints.push(!defined.contains_key(name.as_str()));
                    ops.push(Op::CreateEntity { name: name.clone(), entity_type, observations: Vec::new() });
                }
            }
        }
        let ensured_ops = ops.len();
        ops.extend(shape::line_ops(line));
        for (i, op) in ops.into_iter().enumerate() {
            let endpoint = endpoints.get(i).copied().filter(|_| i < ensured_ops);
            if pending.bytes + cairn::write_bytes(&op) > BATCH_BYTES && !pending.ops.is_empty() {
                // The line may be cut here: a resumed run starts again at this line (idempotent).
                pending.write(replica, &key, *index, &mut report, progress)?;
            }
            pending.push(op, endpoint);
        }
        pending.lines += 1;
        if pending.lines >= batch {
            pending.write(replica, &key, index + 1, &mut report, progress)?;
        }
        progress.advance((index + 1).saturating_sub(reported) as u64);
        reported = index + 1;
    }
    // The last batch; skipped lines after it are done too.
    if !pending.ops.is_empty() || done < lines.len() {
        pending.write(replica, &key, lines.len(), &mut report, progress)?;
    }
    progress.finish();
    Ok(report)
}

pub(crate) async fn import(opts: &ReplicaOpts, file: &Path, options: ImportOptions) -> Result<()> {
    let content = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let session = Session::open(opts).await?;
    let json = opts.json;
    let report = session
        .write(move |replica| {
            let progress: Box<dyn Progress> = if json { Box::new(JsonLines) } else { Box::new(Bar::new()) };
            import_lines(replica, &content, options, progress.as_ref())
        })
        .await?;
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
        if !report.endpoints_created.is_empty() {
            let names: Vec<String> = report.endpoints_created.iter().map(|n| format!("{n:?}")).collect();
            output::text(&format!(
                "created {} untyped entities that relations name and no line defines: {}",
                names.len(),
                output::safe(&names.join(", "))
            ));
        }
        for r in &report.merged {
            output::text(&format!("line {}: {}", r.line, output::safe(&r.reason)));
        }
        for r in &report.rejected {
            output::text(&format!("skipped line {}: {}", r.line, output::safe(&r.reason)));
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

    fn import(replica: &Replica, content: &str, batch: usize, skip_bad_lines: bool) -> Result<ImportReport> {
        import_lines(replica, content, ImportOptions { batch, restart: false, skip_bad_lines }, &Quiet)
    }

    fn lines(lines: &[serde_json::Value]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn a_line_that_cannot_be_imported_stops_the_import_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(dir.path().join("m.db"), "importer").unwrap();
        let content = concat!(
            r#"{"type":"entity","name":"Alice","entityType":"person","observations":["likes tea"]}"#,
            "\n",
            r#"{"type":"entity","name":"Bob\u001f","entityType":"person","observations":[]}"#,
            "\n",
            r#"{"type":"entity","name":"Carol","entityType":"per"#,
        );
        let err = import(&replica, content, 1, false).unwrap_err();
        let bad = err.downcast_ref::<BadLine>().expect("a BadLine");
        assert_eq!(bad.line, 2);
        assert!(bad.reason.contains("U+001F"), "{}", bad.reason);
        assert!(err.to_string().contains("nothing was imported"), "{err}");
        assert!(replica.read_graph().unwrap().data.entities.is_empty(), "nothing was written");
        // Asked to, it imports the rest and says what it skipped; a rerun then has nothing to do.
        let report = import(&replica, content, 1, true).unwrap();
        assert_eq!((report.entities_created, report.observations_added), (1, 1));
        let skipped: Vec<usize> = report.rejected.iter().map(|r| r.line).collect();
        assert_eq!(skipped, [2, 3]);
        assert!(report.rejected[1].reason.contains("not valid JSON"));
        let again = import(&replica, content, 1, false).unwrap();
        assert_eq!(again.resumed_after, 3);
    }

    #[test]
    fn everything_the_reference_writes_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(dir.path().join("m.db"), "importer").unwrap();
        let long = "x".repeat(70 * 1024);
        let content = lines(&[
            serde_json::json!({"type":"entity","name":"","entityType":"","observations":["", "line\nbreak"]}),
            serde_json::json!({"type":"entity","name":"tab\tand\nnewline","entityType":"t","observations":[long]}),
            serde_json::json!({"type":"entity","name":"名".repeat(100),"entityType":"person","observations":[]}),
            serde_json::json!({"type":"entity","name":"Dup","entityType":"a","observations":["one", "one"]}),
            serde_json::json!({"type":"entity","name":"Dup","entityType":"b","observations":["two"]}),
            serde_json::json!({"type":"relation","from":"","to":"Ghost","relationType":""}),
            serde_json::json!({"type":"relation","from":"Dup","to":"Late","relationType":"knows"}),
            serde_json::json!({"type":"entity","name":"Late","entityType":"person","observations":["here"]}),
        ]);
        let report = import(&replica, &content, 2, false).unwrap();
        assert!(report.rejected.is_empty());
        assert_eq!(report.endpoints_created, ["Ghost"]);
        assert_eq!(report.entities_created, 5, "Late counts once, created where a relation first names it");
        assert_eq!(report.merged.len(), 1);
        assert_eq!(report.merged[0].line, 5);
        let g = RefGraph::from(&replica.read_graph().unwrap().data);
        let names: Vec<&str> = g.entities.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["", "Dup", "Ghost", "Late", "tab\tand\nnewline", "名".repeat(100).as_str()]);
        assert_eq!(g.entities[0].observations, ["", "line\nbreak"]);
        assert_eq!((g.entities[1].entity_type.as_str(), g.entities[1].observations.len()), ("a", 2));
        assert_eq!(g.entities[2].entity_type, "", "created untyped");
        assert_eq!(
            (g.entities[3].entity_type.as_str(), &g.entities[3].observations[..]),
            ("person", &["here".to_owned()][..])
        );
        assert_eq!(g.entities[4].observations[0].len(), 70 * 1024);
        assert_eq!(g.relations.len(), 2);
    }

    #[test]
    fn a_line_larger_than_one_write_is_split_over_several() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(dir.path().join("m.db"), "importer").unwrap();
        let pages: Vec<String> = ["a", "b", "c"].iter().map(|c| c.repeat(5 << 20)).collect();
        let content = lines(&[serde_json::json!({"type":"entity","name":"Big","entityType":"t","observations":pages})]);
        let report = import(&replica, &content, 500, false).unwrap();
        assert_eq!((report.entities_created, report.observations_added), (1, 3));
        let g = replica.read_graph().unwrap().data;
        assert_eq!(g.entities[0].observations.len(), 3);
        // (One write of 15 MiB would have been refused by cairn::MAX_WRITE_BYTES, failing the import.)
    }

    #[test]
    fn a_relation_to_an_entity_the_graph_already_holds_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(dir.path().join("m.db"), "importer").unwrap();
        replica.write(&[Op::create_entity("Known", "person", &[])]).unwrap();
        let content = lines(&[serde_json::json!({"type":"relation","from":"Known","to":"Known","relationType":"is"})]);
        let report = import(&replica, &content, 500, false).unwrap();
        assert!(report.endpoints_created.is_empty());
        assert_eq!(report.relations_created, 1);
        assert_eq!(replica.read_graph().unwrap().data.entities[0].entity_type, "person");
    }
}
