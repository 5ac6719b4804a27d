//! Read-only replicas through the library: what they read, that they leave the read cursor
//! alone and say so, and that they write nothing, with a clear error for what would. (Files and
//! directories the user may not write, and read-only mounts, are in `clients/tests/readonly.rs`,
//! with the real binary run as an unprivileged user.)

mod common;

use std::path::Path;

use cairn::{Access, Error, OpenOptions, ReadOnlyCause, Replica};
use common::{entity, open};

fn read_only(path: &Path, agent: &str) -> cairn::Result<Replica> {
    Replica::open_with(path, OpenOptions::new(agent.parse().unwrap()).access(Access::ReadOnly))
}

fn names(replica: &Replica) -> Vec<String> {
    replica.read_graph().unwrap().data.entities.into_iter().map(|e| e.name).collect()
}

/// The file's bytes, for "nothing was written" (the -wal too: that is where commits go first).
fn bytes(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let wal = std::fs::read(format!("{}-wal", path.display())).unwrap_or_default();
    (std::fs::read(path).unwrap(), wal)
}

#[test]
fn a_read_only_read_reports_what_is_unseen_and_leaves_it_unseen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    // Step 1: Alice writes; Bob reads once (his cursor is now past Alice's first write).
    let alice = open(dir.path(), "m.db", "alice");
    alice.write(&[entity("Tea", "drink", &[])]).unwrap();
    let bob = open(dir.path(), "m.db", "bob");
    assert!(bob.read_graph().unwrap().unseen.is_empty(), "a first read has nothing unseen");
    drop(bob);
    // Step 2: Alice writes again; Bob reads read-only, twice. Both reads report Alice's change,
    // say they are read-only, and the version is the same: nothing moved.
    alice.write(&[entity("Cup", "thing", &[])]).unwrap();
    let bob = read_only(&path, "bob").unwrap();
    assert_eq!(bob.read_only(), Some(ReadOnlyCause::Requested));
    let first = bob.read_graph().unwrap();
    assert_eq!((first.unseen.count, first.unseen.entities.clone()), (1, vec!["Cup".to_owned()]));
    assert_eq!(first.read_only, Some(ReadOnlyCause::Requested));
    let second = bob.search("cup").unwrap();
    assert_eq!(second.unseen, first.unseen, "the read-only read did not mark Cup as seen");
    assert_eq!(second.version, first.version);
    assert_eq!(bob.status().unwrap().read_only, Some(ReadOnlyCause::Requested));
    drop(bob);
    // Step 3: Bob reads writable: Cup is still news to him, once.
    let bob = open(dir.path(), "m.db", "bob");
    let read = bob.read_graph().unwrap();
    assert_eq!((read.unseen.count, read.read_only), (1, None));
    assert!(bob.read_graph().unwrap().unseen.is_empty());
}

#[test]
fn a_read_only_replica_beside_a_writer_sees_each_new_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let writer = open(dir.path(), "m.db", "writer");
    writer.write(&[entity("One", "n", &[])]).unwrap();
    let reader = read_only(&path, "reader").unwrap();
    assert_eq!(names(&reader), ["One"]);
    // The writer keeps the file open (its commits sit in the -wal): the reader shares it.
    writer.write(&[entity("Two", "n", &[])]).unwrap();
    assert_eq!(names(&reader), ["One", "Two"]);
    // It has no cursor (it never read writable), so every read is its first: nothing is "unseen".
    let read = reader.read_graph().unwrap();
    assert!(read.unseen.is_empty() && read.read_only == Some(ReadOnlyCause::Requested), "{read:?}");
}

#[test]
fn every_write_to_a_read_only_replica_is_refused_naming_the_file_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let writer = open(dir.path(), "m.db", "writer");
    writer.write(&[entity("Kept", "thing", &["as it was"])]).unwrap();
    let bundle = writer.export_since(&cairn::Heads::default()).unwrap();
    drop(writer);
    let before = bytes(&path);
    let reader = read_only(&path, "reader").unwrap();
    let refused = |result: cairn::Result<()>, what: &str| {
        let err = result.expect_err(what);
        let Error::ReadOnly { path: named, cause, .. } = &err else { panic!("{what}: {err:?}") };
        assert_eq!((named.as_path(), *cause), (path.as_path(), ReadOnlyCause::Requested), "{what}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()) && message.contains("--read-only"), "{message}");
        assert!(message.contains("nothing was written"), "{message}");
    };
    refused(reader.write(&[entity("New", "thing", &[])]).map(drop), "a write");
    refused(reader.set_checkpoint("tool", Some("1")), "a tool checkpoint");
    refused(reader.compact().map(drop), "compaction");
    refused(reader.import(&bundle).map(drop), "a bundle");
    assert_eq!(names(&reader), ["Kept"]);
    drop(reader);
    assert!(bytes(&path) == before, "the file and its -wal are byte for byte as they were");
}

#[test]
fn a_read_only_open_creates_no_file_and_no_graph() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let err = read_only(&missing, "reader").unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }) && err.to_string().contains("no such file"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was created");

    let path = dir.path().join("m.db");
    drop(open(dir.path(), "m.db", "writer"));
    let before = bytes(&path);
    let other = OpenOptions::new("reader".parse().unwrap()).graph("other".parse().unwrap()).access(Access::ReadOnly);
    let err = Replica::open_with(&path, other).unwrap_err();
    assert!(err.to_string().contains(r#"create graph "other""#), "{err}");
    assert!(bytes(&path) == before, "the graph was not created");
}

#[test]
fn a_file_that_needs_a_migration_or_a_first_sift_is_refused_read_only_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    open(dir.path(), "m.db", "writer").write(&[entity("Old", "thing", &[])]).unwrap();
    // Step 1: as an older build would have left it: one migration short.
    let current: i64 = {
        let db = rusqlite::Connection::open(&path).unwrap();
        let v = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        db.pragma_update(None, "user_version", v - 1).unwrap();
        v
    };
    let err = read_only(&path, "reader").unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::ReadOnly { cause: ReadOnlyCause::Requested, .. }), "{err:?}");
    assert!(message.contains(&format!("migrate its schema from version {} to {current}", current - 1)), "{message}");
    let version: i64 =
        rusqlite::Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, current - 1, "not migrated");
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", current).unwrap();
    // Step 2: a graph an older version wrote and this one has not checked yet.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM meta WHERE key = 'checkpoint:integrity/v1/default'", [])
        .unwrap();
    let err = read_only(&path, "reader").unwrap_err();
    assert!(err.to_string().contains("checked against the schema once"), "{err}");
    // A writable open does both, and the file then reads read-only.
    drop(open(dir.path(), "m.db", "writer"));
    assert_eq!(names(&read_only(&path, "reader").unwrap()), ["Old"]);
}

#[test]
fn read_write_access_on_a_writable_file_opens_it_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let options = OpenOptions::new("w".parse().unwrap()).access(Access::ReadWrite);
    let replica = Replica::open_with(dir.path().join("m.db"), options).unwrap();
    assert_eq!(replica.read_only(), None);
    replica.write(&[entity("Fine", "thing", &[])]).unwrap();
}
