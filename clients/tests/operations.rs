//! Operating a replica file through the real binary: `cairn backup` while `cairn add`
//! processes write, `cairn check`'s exit codes and JSON, `cairn repair`, and the one-line error
//! a damaged file gives.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

fn cairn(dir: &Path, db: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.env_clear()
        .env("HOME", dir)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CAIRN_DB", db)
        .env("CAIRN_AGENT", "tester");
    c
}

fn run(dir: &Path, db: &Path, args: &[&str]) -> Output {
    cairn(dir, db).args(args).output().unwrap()
}

fn ok(dir: &Path, db: &Path, args: &[&str]) -> String {
    let out = run(dir, db, args);
    assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn names_in(dir: &Path, db: &Path) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(&ok(dir, db, &["graph", "--format", "json"])).unwrap();
    v["entities"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
}

/// A file of `n` entities, imported in one go (a reference memory.jsonl).
fn seeded(dir: &Path, n: usize) -> PathBuf {
    let db = dir.join("memory.db");
    let lines: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({"type": "entity", "name": format!("seed-{i}"), "entityType": "seed",
                               "observations": [format!("seed number {i}")]})
            .to_string()
        })
        .collect();
    let jsonl = dir.join("seed.jsonl");
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    ok(dir, &db, &["import", jsonl.to_str().unwrap()]);
    db
}

/// Step 1: a file with 2,000 entities. Step 2: two writer processes at a time keep running
/// `cairn add entity` (each a process of its own), noting when each one returned. Step 3:
/// meanwhile, three backups. Every write that had returned before a backup began is in that
/// backup; what each writer has in a backup is a prefix of what it wrote (one consistent
/// moment); the copy is one file, with no -wal beside it, that `cairn graph` opens.
#[test]
fn a_backup_taken_while_writers_run_holds_every_acknowledged_write() {
    const WRITERS: usize = 2;
    const WRITES: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let db = seeded(&dir, 2000);
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (dir, db, acked) = (dir.clone(), db.clone(), acked.clone());
            std::thread::spawn(move || {
                for i in 0..WRITES {
                    let name = format!("w{w}-{i:03}");
                    let out = run(&dir, &db, &["add", "entity", &name, "--type", "item"]);
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    acked.lock().unwrap().push((name, Instant::now()));
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut checked = 0;
    for k in 0..3 {
        // Wait (bounded) until the writers have got somewhere since the last backup.
        while acked.lock().unwrap().len() < (k + 1) * WRITERS * WRITES / 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let dest = dir.join(format!("backup-{k}.db"));
        let began = Instant::now();
        let report: Value =
            serde_json::from_str(&ok(&dir, &db, &["backup", dest.to_str().unwrap(), "--json"])).unwrap();
        let before: Vec<String> =
            acked.lock().unwrap().iter().filter(|(_, at)| *at < began).map(|(n, _)| n.clone()).collect();
        assert!(dest.exists());
        assert!(!PathBuf::from(format!("{}-wal", dest.display())).exists(), "the copy is one file");
        // Byte 18 of a SQLite header is 1 for a rollback journal, 2 for WAL.
        assert_eq!(std::fs::read(&dest).unwrap()[18], 1, "the copy needs no -wal to be read");
        let copied = names_in(&dir, &dest);
        for name in &before {
            assert!(
                copied.contains(name),
                "backup {k}: {name} was acknowledged before the backup began, and is missing"
            );
        }
        assert_eq!(report["entities"].as_u64().unwrap() as usize, copied.len());
        assert!(copied.iter().filter(|n| n.starts_with("seed-")).count() == 2000);
        for w in 0..WRITERS {
            let mine: Vec<&String> = copied.iter().filter(|n| n.starts_with(&format!("w{w}-"))).collect();
            let prefix: Vec<String> = (0..mine.len()).map(|i| format!("w{w}-{i:03}")).collect();
            assert_eq!(mine, prefix.iter().collect::<Vec<_>>(), "backup {k}: writer {w}'s writes are a prefix");
        }
        checked += before.len();
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(checked > 0, "some writes were acknowledged before a backup began");
    // An existing copy is refused unless asked, and left as it was.
    let dest = dir.join("backup-0.db");
    let old = std::fs::read(&dest).unwrap();
    let out = run(&dir, &db, &["backup", dest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"), "{out:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), old);
    ok(&dir, &db, &["backup", dest.to_str().unwrap(), "--force"]);
    assert_eq!(names_in(&dir, &dest), names_in(&dir, &db), "a backup with no writer running is the whole graph");
}

/// Garbage over every page of the change log, as a failing disk leaves it.
fn damage_log_pages(db: &Path) {
    // The log is most of a seeded file; overwrite its second half past the header page.
    let mut bytes = std::fs::read(db).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    for p in pages / 2..pages {
        for b in &mut bytes[p * page + 8..(p + 1) * page] {
            *b = 0xA5;
        }
    }
    std::fs::write(db, bytes).unwrap();
}

fn repeated_phrase(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut seen = BTreeSet::new();
    for w in words.windows(3) {
        let phrase = w.join(" ");
        if !seen.insert(phrase.clone()) {
            return Some(phrase);
        }
    }
    None
}

#[test]
fn check_exit_codes_repair_and_a_damaged_file_error_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let db = seeded(&dir, 300);
    ok(&dir, &db, &["add", "entity", "Alice", "--type", "person", "-o", "likes tea"]);
    let out = run(&dir, &db, &["check"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sound") && text.contains("nothing quarantined"), "{text}");
    let v: Value = serde_json::from_str(&ok(&dir, &db, &["check", "--json"])).unwrap();
    assert_eq!(v["clean"], true);

    let damaged = dir.join("damaged.db");
    std::fs::copy(&db, &damaged).unwrap();
    damage_log_pages(&damaged);
    // A write must load its shard from the log: it fails, in one line that names the file and
    // says what to do, and says nothing twice.
    let out = run(&dir, &damaged, &["add", "entity", "Bob", "--type", "person"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&damaged.display().to_string()), "{err}");
    assert!(err.contains("cairn check") && err.contains("cairn repair") && err.contains("cairn backup"), "{err}");
    assert_eq!(repeated_phrase(&err), None, "{err}");

    let out = run(&dir, &damaged, &["check", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clean"], false);
    assert!(!v["report"]["findings"].as_array().unwrap().is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cairn repair"));

    // Sound again, but the changes on the garbage pages are not in the graph: exit 3, not 0, so
    // no script takes it for a clean repair.
    let out = run(&dir, &damaged, &["repair"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{text}{err}");
    assert!(text.contains("damaged file is kept as") && text.contains("after repair: sound"), "{text}");
    assert!(text.contains("could not be read") && err.contains("not in the graph"), "{text}{err}");
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("damaged.db.damaged-"))
        .collect();
    assert!(!kept.is_empty(), "the damaged file is kept beside the new one");
    assert_eq!(run(&dir, &damaged, &["check"]).status.code(), Some(0));
    ok(&dir, &damaged, &["add", "entity", "Bob", "--type", "person"]);
    assert!(names_in(&dir, &damaged).contains("Bob"));
}
