//! Operating a replica file: `check` finds damage planted in a copy of a good file (and leaves
//! the original alone), `repair` restores what the log holds and says what it set aside, and
//! `repair` refuses a file another connection has open.
//!
//! Damage is planted with plain SQL and plain file writes, as a failing disk or a stray tool
//! would leave it.

mod common;

use std::path::{Path, PathBuf};

use cairn::{Area, CheckReport, Error, FileFault, Replica};
use common::*;
use rusqlite::Connection;

/// A good file: entities with observations and relations, a delete, a type rewrite, a snapshot
/// (compaction) and writes after it. Closed, so everything is in the main file.
fn good_file(dir: &Path) -> PathBuf {
    let replica = open(dir, "good.db", "alice");
    for i in 0..60 {
        replica.write(&[entity(&format!("e{i}"), "thing", &[&format!("note {i}"), "shared words"])]).unwrap();
    }
    for i in 1..60 {
        replica.write(&[relate(&format!("e{i}"), "follows", &format!("e{}", i - 1))]).unwrap();
    }
    replica.compact().unwrap();
    replica.write(&[cairn::Op::delete_entity("e7")]).unwrap();
    replica.write(&[cairn::Op::set_entity_type("e8", "gadget")]).unwrap();
    for i in 60..80 {
        replica.write(&[entity(&format!("e{i}"), "late", &["after the snapshot"])]).unwrap();
    }
    drop(replica);
    dir.join("good.db")
}

fn graph_of(path: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    // Read a copy: opening a replica writes (its read cursor), and the file must stay as it is.
    std::fs::copy(path, dir.path().join("copy.db")).unwrap();
    shape(&open(dir.path(), "copy.db", "reader").read_graph_as_of(None).unwrap().data)
}

fn copy_of(good: &Path, name: &str) -> PathBuf {
    let to = good.with_file_name(name);
    std::fs::copy(good, &to).unwrap();
    to
}

fn sql(path: &Path, statements: &str) {
    Connection::open(path).unwrap().execute_batch(statements).unwrap();
}

/// The pages of `table` of a given type (`leaf`, `internal`, `overflow`), from SQLite's dbstat.
fn pages(path: &Path, table: &str, kind: &str) -> Vec<i64> {
    let db = Connection::open(path).unwrap();
    let mut stmt = db.prepare("SELECT pageno FROM dbstat WHERE name = ?1 AND pagetype = ?2 ORDER BY pageno").unwrap();
    stmt.query_map([table, kind], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// Writes garbage over page `n` (past the first 8 bytes of its header, so SQLite sees a page
/// of the right type holding nonsense).
fn garbage_on_page(path: &Path, n: i64) {
    use std::io::{Seek, SeekFrom, Write};
    let page_size: i64 = Connection::open(path).unwrap().query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(((n - 1) * page_size + 8) as u64)).unwrap();
    f.write_all(&vec![0xA5; (page_size - 8) as usize]).unwrap();
    f.sync_all().unwrap();
}

/// Plants one kind of damage in a file.
type Plant = Box<dyn Fn(&Path)>;

fn areas(report: &CheckReport) -> Vec<Area> {
    report.findings.iter().map(|f| f.area).collect()
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn a_good_file_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_file(dir.path());
    let report = Replica::check_file(&good).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.graphs, ["default"]);
    assert_eq!(report.documents, 33);
    assert!(report.changes > 100);
}

/// Step 1: a good file. Step 2: a copy of it, damaged one way. Step 3: check finds exactly that
/// kind of damage, and the original is byte for byte what it was. Step 4: repair; the copy
/// checks clean and its graph is the original's.
#[test]
fn check_finds_each_kind_of_damage_and_repair_restores_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_file(dir.path());
    let original = bytes(&good);
    let expected = graph_of(&good);
    let entity_page = pages(&good, "entities", "leaf")[0];
    let cases: [(&str, Area, Plant); 5] = [
        ("derived-row-deleted", Area::Derived, Box::new(|p| sql(p, "DELETE FROM observations WHERE text = 'note 3'"))),
        (
            "derived-row-altered",
            Area::Derived,
            Box::new(|p| sql(p, "UPDATE entities SET type = 'forged' WHERE name = 'e4'")),
        ),
        (
            "history-row-deleted",
            Area::Derived,
            Box::new(|p| sql(p, "DELETE FROM events WHERE id = (SELECT max(id) FROM events)")),
        ),
        (
            "fts-index-damaged",
            Area::Search,
            // The index's segment blocks, overwritten: the rows are intact, the index is not.
            Box::new(|p| sql(p, "UPDATE words_data SET block = zeroblob(length(block)) WHERE id > 10")),
        ),
        ("garbage-on-a-derived-page", Area::File, Box::new(move |p| garbage_on_page(p, entity_page))),
    ];
    for (name, area, plant) in cases {
        let copy = copy_of(&good, &format!("{name}.db"));
        plant(&copy);
        let report = Replica::check_file(&copy).unwrap();
        assert!(!report.is_clean(), "{name}: check found nothing");
        assert!(areas(&report).contains(&area), "{name}: expected a {area:?} finding: {report:#?}");
        assert_eq!(bytes(&good), original, "{name}: the original file changed");

        let repaired = Replica::repair_file(&copy).unwrap();
        assert!(!repaired.before.is_clean());
        assert!(repaired.after.is_clean(), "{name}: still damaged after repair: {:#?}", repaired.after);
        assert!(repaired.set_aside.is_empty(), "{name}: nothing needed setting aside: {:?}", repaired.set_aside);
        assert_eq!(graph_of(&copy), expected, "{name}: the repaired graph is not the original's");
        if area == Area::File {
            let kept = repaired.damaged_copy.as_ref().expect("a damaged file is kept beside the new one");
            assert!(kept.exists() && kept.to_string_lossy().contains(".damaged-"), "{kept:?}");
        } else {
            assert!(repaired.damaged_copy.is_none(), "{name}: sound pages are repaired in place");
        }
    }
    assert!(Replica::check_file(&good).unwrap().is_clean());
}

/// A log row whose bytes no longer match its hash cannot be trusted: check names it, repair
/// sets it (and every later change of its document that builds on it) aside, bytes kept, and
/// the rest of the graph is the original's.
#[test]
fn a_log_row_that_no_longer_matches_its_hash_is_set_aside_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_file(dir.path());
    let expected = graph_of(&good);
    let copy = copy_of(&good, "forged.db");
    // The newest change's bytes replaced by another change's: it decodes, but is not the
    // change its row names.
    let newest: i64 = Connection::open(&copy)
        .unwrap()
        .query_row("SELECT max(seq) FROM changes WHERE bytes IS NOT NULL", [], |r| r.get(0))
        .unwrap();
    sql(
        &copy,
        &format!(
            "UPDATE changes SET bytes = (SELECT bytes FROM changes WHERE bytes IS NOT NULL AND seq < {newest}
                                         ORDER BY seq DESC LIMIT 1) WHERE seq = {newest}"
        ),
    );
    let report = Replica::check_file(&copy).unwrap();
    let log: Vec<_> = report.findings.iter().filter(|f| f.area == Area::Log).collect();
    assert_eq!(log.len(), 1, "{report:#?}");
    assert!(log[0].detail.contains(&format!("log position {newest}")) && log[0].detail.contains("hash"), "{log:?}");

    let repaired = Replica::repair_file(&copy).unwrap();
    assert_eq!(repaired.set_aside.len(), 1, "{:?}", repaired.set_aside);
    assert_eq!(repaired.set_aside[0].seq, Some(newest));
    assert!(repaired.after.is_clean(), "{:#?}", repaired.after);
    assert_eq!(repaired.after.set_aside, 1, "check reports what an earlier repair set aside");
    let kept: Vec<u8> = Connection::open(&copy)
        .unwrap()
        .query_row("SELECT bytes FROM set_aside WHERE seq = ?1", [newest], |r| r.get(0))
        .unwrap();
    assert!(!kept.is_empty(), "the set-aside row keeps its bytes");
    // The newest write was entity e79: only it is gone from the graph.
    let after = graph_of(&copy);
    let lost: Vec<&String> = expected.iter().filter(|e| !after.contains(e)).collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].starts_with("e79:"), "{lost:?}");
    assert!(after.iter().all(|e| expected.contains(e)), "repair invents nothing");
}

/// Garbage on a page of the change log itself: check reports SQLite's damage; repair moves what
/// the log still holds into a new file, keeps the damaged one, and says what it could not read.
#[test]
fn garbage_on_a_change_log_page_is_found_and_the_rest_of_the_log_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_file(dir.path());
    let expected = graph_of(&good);
    let copy = copy_of(&good, "paged.db");
    let leaves = pages(&copy, "changes", "leaf");
    assert!(leaves.len() > 2, "the log spans several pages: {leaves:?}");
    // A leaf in the middle: the log before and after it must survive.
    garbage_on_page(&copy, leaves[leaves.len() / 2]);
    let report = Replica::check_file(&copy).unwrap();
    assert!(areas(&report).contains(&Area::File), "{report:#?}");

    let repaired = Replica::repair_file(&copy).unwrap();
    let kept = repaired.damaged_copy.clone().expect("the damaged file is kept");
    assert!(kept.exists());
    assert_eq!(kept.parent(), copy.parent());
    assert!(!repaired.unreadable.is_empty(), "it says what it could not read");
    assert!(repaired.after.is_clean(), "{:#?}", repaired.after);
    let after = graph_of(&copy);
    assert!(!after.is_empty(), "the readable part of the log is recovered");
    assert!(after.iter().all(|e| expected.contains(e) || e.contains("->")), "repair invents nothing: {after:?}");
    // The new file is a working replica: it takes writes and checks clean again.
    open(dir.path(), "paged.db", "bob").write(&[entity("fresh", "thing", &[])]).unwrap();
    assert!(Replica::check_file(&copy).unwrap().is_clean());
}

#[test]
fn repair_refuses_a_file_another_connection_has_open() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_file(dir.path());
    let busy = open(dir.path(), "good.db", "agent");
    match Replica::repair_file(&good) {
        Err(Error::File { path, fault: FileFault::InUse }) => assert_eq!(path, good),
        other => panic!("expected InUse, got {other:?}"),
    }
    busy.write(&[entity("still", "works", &[])]).unwrap();
    drop(busy);
    assert!(Replica::repair_file(&good).unwrap().after.is_clean());
}

/// A damaged file's error says once what happened, which file, and what to do.
#[test]
fn a_damaged_file_says_which_file_and_what_to_do_once() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_file(dir.path());
    for leaf in pages(&good, "changes", "leaf") {
        garbage_on_page(&good, leaf);
    }
    let replica = Replica::open(&good, "alice");
    let message = match replica.and_then(|r| r.write(&[entity("x", "y", &[])]).map(|_| ())) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("a write on a damaged log succeeded"),
    };
    assert!(message.contains(&good.display().to_string()), "{message}");
    assert!(message.contains("cairn repair") && message.contains("cairn check"), "{message}");
    assert_eq!(message.matches("malformed").count(), 1, "{message}");
    assert!(!message.contains('\n'));
}
