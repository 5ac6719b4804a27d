//! Read-only opening, as a user meets it: the real `cairn` binary reading a memory it may not
//! write, in a directory it may not write, and on a read-only mount, with and without the `-wal`
//! and `-shm` files a killed writer leaves behind; and `--read-only` / `CAIRN_READ_ONLY`.
//!
//! Permissions mean nothing to root, so when these tests run as root the reader runs as the
//! unprivileged user `nobody` (uid 65534): every read below is made by a user the kernel holds to
//! the file's permissions. The owner (who writes the memory first) is whoever runs the tests. The
//! read-only mount is a private bind mount in a mount namespace of the reader's own (`unshare`),
//! so nothing outside the test sees it and it ends with the process.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The unprivileged user the reader runs as when the tests run as root.
const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    // `/proc/self` belongs to the effective user of the process looking at it.
    std::fs::metadata("/proc/self").expect("/proc is mounted").uid() == 0
}

/// A memory in a directory of its own, written by the owner (whoever runs the tests).
struct Memory {
    /// Kept for its drop, which deletes everything (permissions are given back first).
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    db: PathBuf,
}

impl Memory {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        // The reader (perhaps `nobody`) must be able to reach the directory.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tmp.path().join("memory");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("memory.db");
        Memory { _tmp: tmp, dir, db }
    }

    /// `cairn` as the owner.
    fn owner(&self, agent: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env_clear()
            .env("HOME", self.dir.parent().unwrap())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CAIRN_DB", &self.db)
            .env("CAIRN_AGENT", agent);
        c
    }

    /// `cairn` as the reader: the owner, or `nobody` if the owner is root.
    fn reader(&self, agent: &str) -> Command {
        let mut c = self.owner(agent);
        if running_as_root() {
            c.uid(NOBODY).gid(NOBODY);
        }
        c
    }

    /// `cairn` as the reader, with the memory's directory mounted read-only for it alone.
    fn reader_on_read_only_mount(&self, agent: &str, args: &[&str]) -> Output {
        let dir = self.dir.to_str().unwrap();
        let script = r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#;
        let out = Command::new("unshare")
            .args(["--map-root-user", "--mount", "sh", "-c", script, "sh", dir, env!("CARGO_BIN_EXE_cairn")])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CAIRN_DB", &self.db)
            .env("CAIRN_AGENT", agent)
            .output()
            .expect("unshare(1) runs");
        let err = stderr(&out);
        assert!(
            !err.contains("mount:") && !err.contains("unshare:"),
            "this test needs a private read-only bind mount (user and mount namespaces): {err}"
        );
        out
    }

    fn ok(&self, mut cmd: Command, args: &[&str]) -> String {
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "cairn {args:?} failed: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, cmd: Command, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(cmd, &all)).unwrap()
    }

    /// Writes `n` entities `e0`, `e1`, ... as the owner, and closes the file cleanly (SQLite then
    /// folds the -wal into the file and removes it and the -shm).
    fn write_entities(&self, n: usize) {
        let file = self.dir.parent().unwrap().join("entities.jsonl");
        std::fs::write(&file, jsonl("e", n)).unwrap();
        self.ok(self.owner("owner"), &["import", file.to_str().unwrap()]);
    }

    /// Imports 2,500 entities `k0`, `k1`, ... as the owner and SIGKILLs the importer once it
    /// reports that the first `k` are committed: its -wal (with those commits) and -shm stay
    /// behind. Returns how many lines it reported committed. It cannot finish first: once we stop
    /// reading, it blocks after a pipe's worth of reports (64 KiB, about 1,700 lines).
    fn kill_writer_after(&self, k: u64) -> u64 {
        use std::io::BufRead;
        let file = self.dir.parent().unwrap().join("killed.jsonl");
        std::fs::write(&file, jsonl("k", 2_500)).unwrap();
        let mut child = self
            .owner("killed")
            .args(["import", file.to_str().unwrap(), "--batch", "1", "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reports = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut committed = 0;
        // Bounded: the importer reports at most `n` batches, then closes stderr.
        while committed < k {
            let mut line = String::new();
            assert!(reports.read_line(&mut line).unwrap() > 0, "the importer stopped after {committed}");
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                committed = v["committed"]["lines"].as_u64().unwrap_or(committed);
            }
        }
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success());
        committed
    }

    fn set_mode(&self, path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Gives `path` to the reader (a no-op when the reader is the owner).
    fn give_to_reader(&self, path: &Path) {
        if running_as_root() {
            std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }

    /// The names in the memory's directory, sorted.
    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(&self.dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        names
    }

    fn wal(&self) -> PathBuf {
        PathBuf::from(format!("{}-wal", self.db.display()))
    }

    fn shm(&self) -> PathBuf {
        PathBuf::from(format!("{}-shm", self.db.display()))
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // Give the directory back to the owner so that the temporary directory can be removed.
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
    }
}

/// `n` entity lines, named `<prefix>0`, `<prefix>1`, ...
fn jsonl(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("{{\"type\":\"entity\",\"name\":\"{prefix}{i}\",\"entityType\":\"thing\",\"observations\":[]}}\n")
        })
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn entity_count(graph: &Value) -> usize {
    graph["entities"].as_array().unwrap().len()
}

/// How many of the killed writer's entities (`k0`, `k1`, ...) a graph holds.
fn killed_writers(graph: &Value) -> u64 {
    graph["entities"].as_array().unwrap().iter().filter(|e| e["name"].as_str().unwrap().starts_with('k')).count() as u64
}

/// Everything in the directory, byte for byte.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    all.sort();
    all
}

/// A write the reader tries: refused, naming the file and `why`, exit code 1.
fn assert_write_refused(memory: &Memory, out: Output, why: &str) {
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&memory.db.display().to_string()), "names the file: {err}");
    assert!(err.contains(why) && err.contains("nothing was written"), "says why ({why}): {err}");
    assert!(!err.contains("attempt to write a readonly database"), "{err}");
}

#[test]
fn a_file_the_user_may_not_write_is_read_read_only_and_writes_are_refused() {
    let m = Memory::new();
    m.write_entities(3);
    // The directory is the reader's, the file is not writable by anyone but root.
    m.give_to_reader(&m.dir);
    m.set_mode(&m.db, 0o444);
    let g = m.json(m.reader("reader"), &["graph"]);
    assert_eq!(entity_count(&g), 3);
    assert_eq!(g["read_only"], "file_not_writable", "{g}");
    let text = m.ok(m.reader("reader"), &["graph"]);
    assert!(text.contains("READ-ONLY: this user may not write the file"), "{text}");
    let status = m.json(m.reader("reader"), &["status"]);
    assert_eq!(status["status"]["read_only"], "file_not_writable", "{status}");
    let before = std::fs::read(&m.db).unwrap();
    let out = m.reader("reader").args(["add", "entity", "New", "--type", "thing"]).output().unwrap();
    assert_write_refused(&m, out, "this user may not write the file");
    assert!(std::fs::read(&m.db).unwrap() == before, "the file is as it was");
}

#[test]
fn a_read_only_directory_is_read_without_creating_anything_in_it() {
    let m = Memory::new();
    m.write_entities(3);
    assert_eq!(m.listing(), ["memory.db"], "a clean close left no -wal or -shm");
    // The file is the reader's to write, but its directory is not: SQLite could not make the
    // -wal and -shm files it shares the file through.
    m.give_to_reader(&m.db);
    m.set_mode(&m.dir, 0o555);
    let before = contents(&m.dir);
    let g = m.json(m.reader("reader"), &["graph"]);
    assert_eq!(entity_count(&g), 3);
    assert_eq!(g["read_only"], "directory_not_writable", "{g}");
    let found = m.json(m.reader("reader"), &["search", "e1"]);
    assert_eq!(found["entities"][0]["name"], "e1", "{found}");
    let out = m.reader("reader").args(["add", "entity", "New", "--type", "thing"]).output().unwrap();
    assert_write_refused(&m, out, "this user may not write its directory");
    assert_eq!(contents(&m.dir), before, "nothing was created or changed in the directory");
}

#[test]
fn a_killed_writers_wal_in_a_read_only_directory_is_read_with_every_commit_it_holds() {
    let m = Memory::new();
    m.write_entities(1);
    // A writer is SIGKILLed right after it reports 40 committed lines: they are in its -wal,
    // not yet in the file.
    let committed = m.kill_writer_after(40);
    assert!(m.wal().exists() && m.shm().exists(), "the killed writer left {:?}", m.listing());
    m.set_mode(&m.wal(), 0o644);
    m.set_mode(&m.shm(), 0o644);
    m.set_mode(&m.dir, 0o555);
    let before = contents(&m.dir);
    let g = m.json(m.reader("reader"), &["graph"]);
    assert!(killed_writers(&g) >= committed, "every reported commit is read: {} of {committed}", killed_writers(&g));
    assert_eq!(entity_count(&g) as u64 - killed_writers(&g), 1, "and what was there before");
    assert!(g["read_only"].is_string(), "{g}");
    assert_eq!(contents(&m.dir), before, "nothing was created or changed in the directory");

    // Without its -shm, the -wal cannot be read read-only: refused, saying what to do, rather
    // than read without those commits.
    m.set_mode(&m.dir, 0o755);
    std::fs::remove_file(m.shm()).unwrap();
    m.set_mode(&m.dir, 0o555);
    let before = contents(&m.dir);
    let out = m.reader("reader").args(["graph"]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&m.db.display().to_string()) && err.contains("-wal"), "{err}");
    assert!(err.contains("copy the file and its -wal to a writable place"), "{err}");
    assert_eq!(contents(&m.dir), before, "nothing was created or changed in the directory");
}

#[test]
fn a_read_only_mount_is_read_with_and_without_a_killed_writers_wal() {
    let m = Memory::new();
    m.write_entities(5);
    // Step 1: after a clean close (no -wal, no -shm).
    assert_eq!(m.listing(), ["memory.db"]);
    let out = m.reader_on_read_only_mount("reader", &["graph", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((entity_count(&g), g["read_only"].as_str()), (5, Some("read_only_file_system")), "{g}");
    let out = m.reader_on_read_only_mount("reader", &["add", "entity", "New", "--type", "thing"]);
    assert_write_refused(&m, out, "it is on a read-only file system");
    assert_eq!(m.listing(), ["memory.db"], "nothing was created");

    // Step 2: a writer was killed with commits in its -wal before the medium went read-only.
    let committed = m.kill_writer_after(40);
    assert!(m.wal().exists() && m.shm().exists(), "the killed writer left {:?}", m.listing());
    let out = m.reader_on_read_only_mount("reader", &["graph", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(killed_writers(&g) >= committed, "every reported commit is read: {} of {committed}", killed_writers(&g));
    assert_eq!(entity_count(&g) as u64 - killed_writers(&g), 5, "and what was there before");
    assert_eq!(g["read_only"], "read_only_file_system");
}

#[test]
fn read_only_on_request_reports_unseen_changes_without_marking_them_seen() {
    let m = Memory::new();
    m.write_entities(1);
    m.ok(m.owner("bob"), &["graph"]);
    m.ok(m.owner("alice"), &["add", "entity", "Tea", "--type", "drink"]);
    // Step 1: Bob reads with --read-only, then with CAIRN_READ_ONLY: Tea is news both times.
    let mut by_env = m.owner("bob");
    by_env.env("CAIRN_READ_ONLY", "1");
    for g in [m.json(m.owner("bob"), &["graph", "--read-only"]), m.json(by_env, &["graph"])] {
        assert_eq!((g["unseen"]["count"].as_u64(), g["read_only"].as_str()), (Some(1), Some("requested")), "{g}");
    }
    let text = m.ok(m.owner("bob"), &["graph", "--read-only"]);
    assert!(text.contains("-- NEW: 1 change(s) by alice") && text.contains("did not mark anything as seen"), "{text}");
    let out = m.owner("bob").args(["add", "entity", "Cup", "--type", "thing", "--read-only"]).output().unwrap();
    assert_write_refused(&m, out, "it was asked for (--read-only, CAIRN_READ_ONLY)");
    // Step 2: a writable read still reports Tea, once; read-only reads changed nothing.
    let g = m.json(m.owner("bob"), &["graph"]);
    assert_eq!((g["unseen"]["count"].as_u64(), &g["read_only"]), (Some(1), &Value::Null), "{g}");
    assert_eq!(m.json(m.owner("bob"), &["graph"])["unseen"]["count"], 0);
}
