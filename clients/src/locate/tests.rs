use super::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::options::ReplicaOpts;

const ALICE: &str = concat!(
    r#"{"type":"entity","name":"Alice","entityType":"person","observations":["likes tea"]}"#,
    "\n",
    r#"{"type":"entity","name":"ACME","entityType":"company","observations":[]}"#,
    "\n",
    r#"{"type":"relation","from":"Alice","to":"ACME","relationType":"works_at"}"#,
    "\n"
);

/// The reference's dist directory below a `node_modules`, created.
fn install(node_modules: &Path) -> PathBuf {
    let dist = node_modules.join("@modelcontextprotocol/server-memory/dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("index.js"), "#!/usr/bin/env node\n").unwrap();
    dist
}

/// A file with this content, modified at `secs` after the epoch.
fn file(path: &Path, content: &str, secs: u64) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
    std::fs::canonicalize(path).unwrap()
}

fn home_env(home: &Path) -> Env {
    Env { home: Some(home.to_owned()), ..Env::default() }
}

fn paths(found: &Located) -> Vec<PathBuf> {
    found.candidates.iter().map(|c| c.path.clone()).collect()
}

#[test]
fn npx_cache_and_global_installs_are_found_newest_first() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let npx = file(&install(&h.join(".npm/_npx/0a1b2c/node_modules")).join("memory.jsonl"), ALICE, 1_000);
    let global = file(&install(&h.join(".npm-global/lib/node_modules")).join("memory.jsonl"), ALICE, 3_000);
    let nvm = file(&install(&h.join(".nvm/versions/node/v22.1.0/lib/node_modules")).join("memory.jsonl"), "", 2_000);
    // An install with no memory yet is an install, not a candidate.
    install(&h.join(".npm/_npx/ffff/node_modules"));
    let found = locate(&home_env(h));
    assert_eq!(found.installs.len(), 4);
    assert_eq!(paths(&found), [global.clone(), nvm, npx]);
    assert_eq!(found.chosen().unwrap().path, global);
    let c = &found.candidates[0];
    assert_eq!((c.found_in, c.lines, c.entities, c.relations), (Source::Global, 3, 2, 1));
    assert_eq!(c.size, ALICE.len() as u64);
    assert_eq!(c.modified_ms, Some(3_000_000));
    assert_eq!(found.candidates[2].found_in, Source::NpxCache);
    assert!(found.candidates[0].summary().contains("2 entities, 1 relations"));
}

#[test]
fn npm_config_cache_custom_prefixes_and_npm_root_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let env = Env {
        home: Some(t.join("home")),
        npm_caches: vec![t.join("cache")],
        npm_prefixes: vec![t.join("prefix"), t.join("winprefix")],
        npm_roots: vec![t.join("root")],
        appdata: Some(t.join("AppData/Roaming")),
        ..Env::default()
    };
    let want = [
        file(&install(&t.join("cache/_npx/12ab/node_modules")).join("memory.jsonl"), ALICE, 10),
        file(&install(&t.join("root")).join("memory.jsonl"), ALICE, 9),
        file(&install(&t.join("prefix/lib/node_modules")).join("memory.jsonl"), ALICE, 8),
        file(&install(&t.join("winprefix/node_modules")).join("memory.jsonl"), ALICE, 7),
        file(&install(&t.join("AppData/Roaming/npm/node_modules")).join("memory.jsonl"), ALICE, 6),
    ];
    assert_eq!(paths(&locate(&env)), want);
    // Without the cache variable, ~/.npm is where npx's cache is (and nothing is there).
    let env = Env { npm_caches: vec![], ..env };
    assert!(!paths(&locate(&env)).contains(&want[0]));
}

#[test]
fn a_legacy_memory_json_counts_only_where_the_reference_would_rename_it() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let only_old = install(&h.join(".npm/_npx/aaaa/node_modules"));
    let both = install(&h.join(".npm/_npx/bbbb/node_modules"));
    let old = file(&only_old.join("memory.json"), ALICE, 100);
    let new = file(&both.join("memory.jsonl"), ALICE, 200);
    let shadowed = file(&both.join("memory.json"), ALICE, 300);
    let found = locate(&home_env(h));
    assert_eq!(paths(&found), [shadowed, new.clone(), old]);
    let flags: Vec<(bool, bool)> = found.candidates.iter().map(|c| (c.legacy, c.shadowed)).collect();
    assert_eq!(flags, [(true, true), (false, false), (true, false)]);
    assert_eq!(found.chosen().unwrap().path, new, "the newest the reference reads, not the ignored memory.json");
    assert!(found.candidates[0].summary().contains("ignored by the reference"));
    assert!(found.candidates[2].summary().contains("renames it"));
}

#[test]
fn memory_file_path_is_resolved_as_the_reference_resolves_it() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let older = install(&h.join(".npm/_npx/aaaa/node_modules"));
    let newer = install(&h.join(".npm-global/lib/node_modules"));
    file(&older.join("memory.jsonl"), ALICE, 500); // the default file: not what the reference reads now
    // Relative: joined to dist/, `..` included (path.join), in every install; the newest wins.
    let a = file(&older.join("../../notes/m.jsonl"), ALICE, 100);
    let b = file(&newer.join("../../notes/m.jsonl"), "", 200);
    assert_eq!(a, std::fs::canonicalize(older.parent().unwrap().parent().unwrap()).unwrap().join("notes/m.jsonl"));
    let env = Env { memory_file_path: Some("../../notes/m.jsonl".into()), ..home_env(h) };
    let found = locate(&env);
    assert_eq!(paths(&found), [b.clone(), a]);
    assert_eq!(found.chosen().unwrap().install.as_deref(), Some(std::fs::canonicalize(&newer).unwrap().as_path()));
    assert!(found.candidates.iter().all(|c| c.found_in == Source::MemoryFilePath));
    // Absolute: as is, and nothing else counts.
    let abs = file(&h.join("elsewhere/memory.jsonl"), ALICE, 50);
    let found = locate(&Env { memory_file_path: Some(abs.clone()), ..home_env(h) });
    assert_eq!(paths(&found), [abs]);
    // Relative, naming nothing that exists: no candidate (the default files do not count).
    let found = locate(&Env { memory_file_path: Some("missing.jsonl".into()), ..home_env(h) });
    assert!(found.candidates.is_empty() && found.chosen.is_none());
}

#[test]
fn node_join_resolves_dots_like_path_join() {
    assert_eq!(node_join(Path::new("/a/b/dist"), Path::new("../x.jsonl")), Path::new("/a/b/x.jsonl"));
    assert_eq!(node_join(Path::new("/a/dist"), Path::new("./y/./z.jsonl")), Path::new("/a/dist/y/z.jsonl"));
    assert_eq!(node_join(Path::new("/a"), Path::new("../../../r")), Path::new("/r"));
}

#[cfg(unix)]
#[test]
fn pnpm_dlx_symlinks_are_followed_to_one_install() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let stamp = h.join(".cache/pnpm/dlx/hash1/19a2b-1234");
    let real = install(&stamp.join("node_modules/.pnpm/@modelcontextprotocol+server-memory@2026.8.31/node_modules"));
    std::fs::create_dir_all(stamp.join("node_modules/@modelcontextprotocol")).unwrap();
    std::os::unix::fs::symlink(real.parent().unwrap(), stamp.join("node_modules/@modelcontextprotocol/server-memory"))
        .unwrap();
    std::os::unix::fs::symlink(&stamp, h.join(".cache/pnpm/dlx/hash1/pkg")).unwrap();
    let mem = file(&real.join("memory.jsonl"), ALICE, 10);
    let found = locate(&home_env(h));
    assert_eq!(found.installs.len(), 1, "{:?}", found.installs);
    assert_eq!(found.installs[0].source, Source::PnpmDlx);
    assert_eq!(paths(&found), [mem]);
}

fn opts(db: Option<PathBuf>) -> ReplicaOpts {
    ReplicaOpts {
        db,
        agent: None,
        graph: "default".into(),
        relay: None,
        token: None,
        ca_file: None,
        json: false,
        durability: crate::options::DurabilityArg::Full,
        sync_timeout: None,
        read_only: false,
    }
}

fn beside(f: &Path) -> PathBuf {
    f.with_extension("cairn.db")
}

#[test]
fn mcp_start_imports_the_default_file_only_when_asked_or_new() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let mem = file(&install(&h.join(".npm/_npx/aaaa/node_modules")).join("memory.jsonl"), ALICE, 10);
    let env = home_env(h);
    let db = h.join("mine.db");
    let start = on_start(&opts(Some(db.clone())), ImportReference::On, &env, h, beside);
    assert_eq!(start, Start { db: db.clone(), import: Some(mem.clone()) });
    // Auto imports only into a default database that does not exist yet; --db is not that.
    let start = on_start(&opts(Some(db.clone())), ImportReference::Auto, &env, h, beside);
    assert_eq!(start.import, None);
    assert_eq!(on_start(&opts(None), ImportReference::Off, &env, h, beside).import, None);
    // An absolute MEMORY_FILE_PATH: the database beside it, whatever the mode.
    let abs = file(&h.join("m/memory.jsonl"), ALICE, 10);
    let env = Env { memory_file_path: Some(abs.clone()), ..home_env(h) };
    let start = on_start(&opts(None), ImportReference::Off, &env, h, beside);
    assert_eq!(start, Start { db: beside(&abs), import: Some(abs) });
    // A relative one: the reference's file, into the given database.
    let env = Env { memory_file_path: Some("memory.jsonl".into()), ..home_env(h) };
    let start = on_start(&opts(Some(db.clone())), ImportReference::Off, &env, h, beside);
    assert_eq!(start, Start { db, import: Some(mem) });
}
