//! `cairn backup`, `cairn check` and `cairn repair`: operating a replica file
//! (docs/operations.md). None of them talks to a relay, and `check` and `repair` never open the
//! file as a replica, since it may be damaged.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::json;

use cairn::{CheckReport, Replica};

use super::Exit;
use crate::options::ReplicaOpts;
use crate::output;

/// Exit code of `check` and `repair` when the file is damaged (1 is "could not run").
const DAMAGED: u8 = 2;
/// Exit code of `repair` when the file is sound again but some logged changes are not in the
/// graph: set aside, or unreadable and kept only in the damaged copy. A script must not take
/// that for a clean repair.
const INCOMPLETE: u8 = 3;

pub(crate) async fn backup(opts: &ReplicaOpts, dest: &Path, force: bool) -> Result<()> {
    let path = opts.db_path();
    if !path.exists() {
        bail!("{}: no replica file here; point --db at the replica to back up", path.display());
    }
    let (o, dest) = (opts.clone(), dest.to_owned());
    let report =
        tokio::task::spawn_blocking(move || o.open()?.backup(&dest, force).map_err(anyhow::Error::from)).await??;
    if opts.json {
        output::json(&report);
    } else {
        output::text(&format!(
            "backed up {} to {}: version {}, {} entities, {} changes, {:.1} MiB",
            path.display(),
            report.path.display(),
            report.version,
            report.entities,
            report.changes,
            report.bytes as f64 / (1 << 20) as f64
        ));
    }
    Ok(())
}

pub(crate) async fn check(opts: &ReplicaOpts) -> Result<()> {
    let path = opts.db_path();
    let p = path.clone();
    let report = tokio::task::spawn_blocking(move || Replica::check_file(&p)).await??;
    // The quarantine of the chosen graph, as `check` always listed it; only a sound file is
    // opened as a replica to read it.
    let quarantined = if report.is_clean() {
        let o = opts.clone();
        tokio::task::spawn_blocking(move || o.open().and_then(|r| Ok(r.quarantined()?))).await??
    } else {
        Vec::new()
    };
    if opts.json {
        output::json(
            &json!({ "graph": opts.graph, "clean": report.is_clean(), "report": report, "quarantined": quarantined }),
        );
    } else {
        print_check(&report);
        if quarantined.is_empty() {
            output::text(&format!("graph {}: nothing quarantined", opts.graph));
        } else {
            output::text(&format!(
                "graph {}: {} change(s) kept out of every read (docs/schema.md, \"What a change may do\"):",
                opts.graph,
                quarantined.len()
            ));
            for q in &quarantined {
                let rule = q.rule.as_deref().map(|r| format!("rule \"{r}\"")).unwrap_or_else(|| "builds on one".into());
                output::text(&format!(
                    "  {} by {} at {}: {rule}: {}",
                    &q.hash[..q.hash.len().min(12)],
                    q.agent.escape_debug(),
                    q.at,
                    q.detail.escape_debug()
                ));
            }
        }
    }
    if !report.is_clean() {
        return Err(Exit {
            code: DAMAGED,
            message: format!(
                "{}: {} problem(s) found; stop the processes using it and run `cairn repair`, or restore a copy made by `cairn backup`",
                path.display(),
                report.findings.len()
            ),
        }
        .into());
    }
    Ok(())
}

fn print_check(report: &CheckReport) {
    output::text(&format!(
        "{}: {} change(s) in {} document(s), graphs: {}",
        report.path.display(),
        report.changes,
        report.documents,
        if report.graphs.is_empty() { "none".to_owned() } else { report.graphs.join(", ") }
    ));
    if report.is_clean() {
        output::text("sound: SQLite and search integrity, every logged change, and every derived table match the log");
    } else {
        output::text(&format!("DAMAGED: {} problem(s)", report.findings.len()));
        for f in &report.findings {
            let area =
                serde_json::to_value(f.area).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            output::text(&format!("  [{area}] {}", output::safe(&f.detail)));
        }
    }
    for s in &report.skipped {
        output::text(&format!("  skipped: {s}"));
    }
    if report.set_aside > 0 {
        output::text(&format!(
            "set aside: {} change(s) an earlier repair could not read are kept in the set_aside table, not in the graph",
            report.set_aside
        ));
    }
}

pub(crate) async fn repair(opts: &ReplicaOpts) -> Result<()> {
    let path = opts.db_path();
    let p = path.clone();
    let report = tokio::task::spawn_blocking(move || Replica::repair_file(&p)).await??;
    if opts.json {
        output::json(&report);
    } else {
        let before = report.before.findings.len();
        output::text(&format!("{}: {before} problem(s) found before repair", path.display()));
        if let Some(copy) = &report.damaged_copy {
            output::text(&format!(
                "SQLite found the file damaged: its change log was moved into a new file, and the damaged file is kept as {}",
                copy.display()
            ));
        }
        for u in &report.unreadable {
            output::text(&format!("  unreadable in the damaged file (kept there only): {}", output::safe(u)));
        }
        if report.restored > 0 {
            output::text(&format!("rebuilt {} damaged genesis change(s) exactly", report.restored));
        }
        if report.set_aside.is_empty() && report.unreadable.is_empty() {
            output::text("set aside: nothing (every logged change reads back)");
        } else if report.set_aside.is_empty() {
            output::text("set aside: nothing (every change it could read reads back)");
        } else {
            output::text(&format!(
                "set aside: {} change(s) that cannot be read, or build on one, moved to the set_aside table (bytes kept); \
                 a relay or peer that holds them gives them back on the next sync:",
                report.set_aside.len()
            ));
            for s in &report.set_aside {
                let at = s.seq.map(|n| format!("log position {n}")).unwrap_or_else(|| "snapshot".into());
                output::text(&format!("  {at} of document {}: {}", s.doc, output::safe(&s.reason)));
            }
        }
        let [e, o, r, h] = report.rebuilt;
        output::text(&format!(
            "rebuilt from the log: {e} entities, {o} observations, {r} relations, {h} history rows, both search indexes"
        ));
        if report.after.is_clean() {
            output::text("after repair: sound");
        } else {
            output::text(&format!("after repair: still {} problem(s)", report.after.findings.len()));
            for f in &report.after.findings {
                output::text(&format!("  {}", output::safe(&f.detail)));
            }
        }
    }
    if !report.after.is_clean() {
        return Err(Exit {
            code: DAMAGED,
            message: format!(
                "{}: still damaged after repair; restore a copy made by `cairn backup`, or re-sync from a relay into a new file",
                path.display()
            ),
        }
        .into());
    }
    if !report.unreadable.is_empty() || !report.set_aside.is_empty() {
        return Err(Exit {
            code: INCOMPLETE,
            message: format!(
                "{}: sound again, but changes it logged are not in the graph (listed above); restore a copy made by \
                 `cairn backup`, or `cairn sync` with a relay or peer that holds them",
                path.display()
            ),
        }
        .into());
    }
    Ok(())
}
