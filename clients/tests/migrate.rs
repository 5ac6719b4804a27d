//! Moving from the reference memory server: the real `cairn` binary finds the reference's own
//! memory file (in a fake npx cache under a temporary home) and imports it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

/// What the reference server writes: one JSON object a line, entities then relations, no final
/// newline (`saveGraph` joins the lines with "\n").
const REFERENCE_FILE: &str = concat!(
    r#"{"type":"entity","name":"Alice","entityType":"person","observations":["likes tea","works remotely"]}"#,
    "\n",
    r#"{"type":"entity","name":"ACME","entityType":"company","observations":[]}"#,
    "\n",
    r#"{"type":"relation","from":"Alice","to":"ACME","relationType":"works_at"}"#
);

/// A temporary home: `home/`, an npm cache (`npm_config_cache`) and a data directory.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let home = Home { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(home.path("home")).unwrap();
        home
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The reference installed by npx (`npx -y @modelcontextprotocol/server-memory`): its dist.
    fn npx_install(&self, hash: &str) -> PathBuf {
        let dist = self.path(&format!("npm-cache/_npx/{hash}/node_modules/@modelcontextprotocol/server-memory/dist"));
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::write(dist.join("index.js"), "#!/usr/bin/env node\n").unwrap();
        std::fs::canonicalize(dist).unwrap()
    }

    /// The whole environment of a run, isolated from the user's own.
    fn vars(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("HOME", self.path("home").into()),
            ("XDG_DATA_HOME", self.path("data").into()),
            ("npm_config_cache", self.path("npm-cache").into()),
            ("PATH", std::env::var_os("PATH").unwrap_or_default()),
            ("CAIRN_AGENT", "tester".into()),
        ]
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env_clear().envs(self.vars()).envs(extra.iter().copied()).args(args).stdin(Stdio::null());
        c.output().unwrap()
    }

    fn ok(&self, args: &[&str], extra: &[(&str, &str)]) -> String {
        let out = self.run(args, extra);
        assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn graph(&self) -> Value {
        serde_json::from_str(&self.ok(&["graph", "--format", "json"], &[])).unwrap()
    }

    /// The usual database (no --db, no MEMORY_FILE_PATH beside which to keep one).
    fn db(&self) -> PathBuf {
        self.path("data/cairn/memory.db")
    }
}

fn names(graph: &Value) -> Vec<String> {
    graph["entities"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
}

fn set_mtime(path: &Path, secs: u64) {
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    std::fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn import_from_reference_finds_the_npx_cache_file_and_imports_the_newest() {
    let h = Home::new();
    let older = h.npx_install("0a1b2c3d4e5f6a7b");
    std::fs::write(older.join("memory.jsonl"), r#"{"type":"entity","name":"Old","entityType":"x","observations":[]}"#)
        .unwrap();
    set_mtime(&older.join("memory.jsonl"), 1_000_000);
    let dist = h.npx_install("9f8e7d6c5b4a3f2e");
    let file = dist.join("memory.jsonl");
    std::fs::write(&file, REFERENCE_FILE).unwrap();

    // --dry-run lists and writes nothing.
    let plan: Value = serde_json::from_str(&h.ok(&["import", "--from-reference", "--dry-run", "--json"], &[])).unwrap();
    assert_eq!(plan["import"], json!(file), "{plan:#}");
    assert_eq!(plan["db"], json!(h.db()));
    let ours = plan["candidates"].as_array().unwrap().iter().find(|c| c["path"] == json!(file)).unwrap();
    assert_eq!(ours["found_in"], "npx_cache");
    assert_eq!(
        (ours["entities"].as_u64(), ours["relations"].as_u64(), ours["lines"].as_u64()),
        (Some(2), Some(1), Some(3))
    );
    assert!(!h.db().exists(), "a dry run creates no database");
    let text = h.ok(&["import", "--from-reference", "--dry-run"], &[]);
    assert!(
        text.contains(&file.display().to_string()) && text.contains("npx cache") && text.contains("would import"),
        "{text}"
    );

    let out = h.ok(&["import", "--from-reference"], &[]);
    assert!(out.contains(&format!("importing {}", file.display())), "{out}");
    assert!(out.contains("imported 2 entities, 2 observations, 1 relations"), "{out}");
    let g = h.graph();
    assert_eq!(names(&g), ["ACME", "Alice"]);
    assert_eq!(g["relations"], json!([{"from": "Alice", "to": "ACME", "relationType": "works_at"}]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), REFERENCE_FILE, "the original is never modified");

    // The older one, by its number in the list.
    let plan: Value = serde_json::from_str(&h.ok(&["import", "--from-reference", "--dry-run", "--json"], &[])).unwrap();
    let n = plan["candidates"].as_array().unwrap().iter().position(|c| c["path"] == json!(older.join("memory.jsonl")));
    let n = (n.unwrap() + 1).to_string();
    h.ok(&["import", "--from-reference", "--pick", &n], &[]);
    assert_eq!(names(&h.graph()), ["ACME", "Alice", "Old"]);
}

#[test]
fn a_relative_memory_file_path_is_found_beside_the_reference_not_the_working_directory() {
    let h = Home::new();
    let dist = h.npx_install("1234");
    std::fs::create_dir_all(dist.join("../data")).unwrap();
    std::fs::write(dist.join("../data/team.jsonl"), REFERENCE_FILE).unwrap();
    let out = h.ok(&["import", "--from-reference"], &[("MEMORY_FILE_PATH", "../data/team.jsonl")]);
    let resolved = dist.parent().unwrap().join("data/team.jsonl");
    assert!(out.contains(&format!("importing {}", resolved.display())), "{out}");
    assert_eq!(names(&h.graph()), ["ACME", "Alice"]);
}

#[test]
fn nothing_found_is_an_error_that_says_what_to_do() {
    let h = Home::new();
    h.npx_install("1234"); // installed, but never ran
    let out = h.run(&["import", "--from-reference"], &[]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("no reference memory file found (1 installs"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cairn import PATH"));
}

async fn mcp_read_graph(h: &Home, extra: &[(&str, &str)]) -> Value {
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
        c.env_clear().envs(h.vars()).envs(extra.iter().copied()).arg("mcp");
    });
    let (transport, _stderr) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().unwrap();
    let client: rmcp::service::RunningService<RoleClient, ClientConfig> =
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("host", "1.0"))
            .serve(transport)
            .await
            .unwrap();
    let r = client.call_tool(CallToolRequestParams::new("read_graph".to_owned())).await.unwrap();
    let text = r.content[0].as_text().unwrap().text.clone();
    client.cancel().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_mcp_brings_the_default_memory_along_on_first_start_only() {
    let h = Home::new();
    let file = h.npx_install("abcd").join("memory.jsonl");
    std::fs::write(&file, REFERENCE_FILE).unwrap();
    // Off: nothing imported.
    let g = mcp_read_graph(&h, &[("CAIRN_IMPORT_REFERENCE", "0")]).await;
    assert!(names(&g).is_empty());
    std::fs::remove_dir_all(h.path("data")).unwrap();
    // Auto (the default): the first start with a new default database imports it.
    let g = mcp_read_graph(&h, &[]).await;
    assert_eq!(names(&g), ["ACME", "Alice"]);
    // Later starts leave the database alone, even if the reference file changed.
    h.ok(&["delete", "entity", "ACME"], &[]);
    std::fs::write(
        &file,
        format!("{REFERENCE_FILE}\n{}", r#"{"type":"entity","name":"Bob","entityType":"person","observations":[]}"#),
    )
    .unwrap();
    assert_eq!(names(&mcp_read_graph(&h, &[]).await), ["Alice"]);
    // On: every start imports what is new in it (keyed by content).
    assert_eq!(names(&mcp_read_graph(&h, &[("CAIRN_IMPORT_REFERENCE", "on")]).await), ["ACME", "Alice", "Bob"]);
}
