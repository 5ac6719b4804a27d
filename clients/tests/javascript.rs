//! JavaScript agents as docs/javascript.md tells a developer to write them, against the real
//! `cairn relay` and `cairn` replicas on loopback: the worked example extracted from the doc and
//! run as written; scripts that write and exit, whose writes reach another replica; the
//! `cairn-graph` helper (clients/js/cairn) writing what Rust reads with every field and reading
//! what Rust wrote; wrong tokens handled without a crash; a graph started by JavaScript alone;
//! the helper's offline checks and its TypeScript types. Needs Node.js and
//! `npm install --prefix clients/js` (the README's test command does both).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// No node script here legitimately runs this long; past it, the script is killed and the test fails.
const NODE_BOUND: Duration = Duration::from_secs(90);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port nothing listens on: bound, noted, and released.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One test's world: a temporary directory for databases and the relay's data.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        World { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn`, isolated from the user's environment.
    fn cairn(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null());
        c
    }

    /// Runs `cairn` on replica `db` (agent `cli-<db>`) against `relay` with `token`.
    fn replica(&self, db: &str, relay: &Relay, token: &str, graph: &str, args: &[&str]) -> String {
        let out = self
            .cairn()
            .env("CAIRN_DB", self.path(db))
            .env("CAIRN_AGENT", format!("cli-{db}"))
            .env("CAIRN_GRAPH", graph)
            .env("CAIRN_RELAY", &relay.url)
            .env("CAIRN_TOKEN", token)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "cairn {args:?} failed: {}", stderr(&out));
        stdout(&out)
    }

    /// A token of the relay's data directory (the relay need not be running).
    fn token(&self, graph: &str) -> String {
        let data = self.path("relay-data");
        let out = self
            .cairn()
            .args(["relay", "token", "create", "--data", data.to_str().unwrap(), "--graph", graph, "--role", "write"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).lines().last().unwrap().to_owned()
    }

    /// `node <script> <args>` from clients/js with the CAIRN_* variables given, bounded in time.
    fn node(&self, script: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let child = self.node_child(script, args, env);
        wait_bounded(child)
    }

    fn node_child(&self, script: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
        Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(js_dir())
            .env_remove("CAIRN_RELAY")
            .env_remove("CAIRN_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run `node`: install Node.js (the JavaScript tests need it) and put it on PATH")
    }
}

/// Waits for a child at most NODE_BOUND; kills it and fails past that.
fn wait_bounded(mut child: Child) -> Output {
    let deadline = Instant::now() + NODE_BOUND;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("node ran past {NODE_BOUND:?}: {}\n{}", stdout(&out), stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cairn relay` on a loopback port, killed on drop.
struct Relay {
    child: Child,
    url: String,
}

impl Relay {
    fn start(w: &World, extra: &[&str]) -> Relay {
        Relay::start_on(w, free_port(), extra)
    }

    fn start_on(w: &World, port: u16, extra: &[&str]) -> Relay {
        let data = w.path("relay-data");
        let child = w
            .cairn()
            .args(["relay", "--listen", &format!("127.0.0.1:{port}"), "--data", data.to_str().unwrap()])
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the relay did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Relay { child, url: format!("ws://127.0.0.1:{port}") }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file in clients/js (so that its imports resolve against clients/js/node_modules), removed
/// on drop.
struct ScriptFile(PathBuf);

impl ScriptFile {
    fn new(name: &str, text: &str) -> ScriptFile {
        let path = js_dir().join(format!(".{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        ScriptFile(path)
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The code block that follows the worked-example marker in docs/javascript.md, exactly.
fn worked_example() -> ScriptFile {
    let doc = std::fs::read_to_string(repo_root().join("docs/javascript.md")).unwrap();
    let after = doc.split_once("<!-- worked-example:").expect("docs/javascript.md has the worked-example marker").1;
    let code = after.split_once("```js\n").expect("a js block follows the marker").1;
    let code = code.split_once("\n```").expect("the js block ends").0;
    ScriptFile::new("agent.mjs", code)
}

/// The JSON lines a script printed.
fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// `cairn show NAME --json` on a fresh replica: what another replica receives.
fn entity_elsewhere(w: &World, db: &str, relay: &Relay, token: &str, graph: &str, name: &str) -> (Value, Vec<Value>) {
    let out: Value = serde_json::from_str(&w.replica(db, relay, token, graph, &["show", name, "--json"])).unwrap();
    let details = &out["details"];
    let entity = details["entities"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned();
    let entity = entity.unwrap_or_else(|| panic!("{name} did not reach {db}: {out}"));
    (entity, details["relations"].as_array().unwrap().clone())
}

#[test]
fn the_worked_example_runs_as_written_and_its_write_reaches_another_replica() {
    let w = World::new();
    let token = w.token("team");
    let relay = Relay::start(&w, &[]);
    w.replica("a.db", &relay, &token, "team", &["add", "entity", "Alice", "--type", "person", "-o", "likes tea"]);

    let example = worked_example();
    let env = [
        ("CAIRN_RELAY", relay.url.as_str()),
        ("CAIRN_TOKEN", &token),
        ("CAIRN_GRAPH", "team"),
        ("CAIRN_AGENT", "js-agent@test"),
    ];
    let out = w.node(&example.0, &[], &env);
    assert!(out.status.success(), "the worked example failed: {}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("the relay holds it"), "{}", stderr(&out));
    // It read what the CLI wrote, with the record's fields.
    let read = &json_lines(&out)[0]["Alice"];
    assert_eq!(read["type"], "person", "{read}");
    assert_eq!(read["by"], "cli-a.db");
    assert_eq!(read["observations"][0]["text"], "likes tea");
    assert_eq!(read["observations"][0]["by"], "cli-a.db");

    // The script exited on its own right after the wait; a replica that never saw it has the write.
    let (entity, _) = entity_elsewhere(&w, "b.db", &relay, &token, "team", "Written from JavaScript");
    assert_eq!(entity["entity_type"], "note");
    assert_eq!(entity["created_by"], "js-agent@test");
    let obs = entity["observations"].as_array().unwrap();
    assert_eq!(obs.len(), 1, "{entity}");
    assert_eq!(obs[0]["text"], "hello from js-agent@test");
    assert_eq!(obs[0]["by"], "js-agent@test");
}

#[test]
fn the_worked_example_handles_a_wrong_token_without_crashing() {
    let w = World::new();
    let _real = w.token("team");
    let relay = Relay::start(&w, &[]);
    let example = worked_example();
    for wrong in ["cairn_00000000_0000000000000000000000000000000000000000000000000000000000000000", "not-a-token", ""]
    {
        let env = [("CAIRN_RELAY", relay.url.as_str()), ("CAIRN_TOKEN", wrong), ("CAIRN_GRAPH", "team")];
        let out = w.node(&example.0, &[], &env);
        assert_eq!(out.status.code(), Some(2), "token {wrong:?}: {}\n{}", stdout(&out), stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("the relay refused the token") && err.contains("401"), "{err}");
        assert!(
            !err.contains("Unhandled") && !err.contains("    at "),
            "an uncaught exception, not a handled refusal: {err}"
        );
    }
}

#[test]
fn an_entity_written_by_the_helper_reaches_rust_with_every_field() {
    let w = World::new();
    let token = w.token("team");
    let relay = Relay::start(&w, &[]);
    let env = [
        ("CAIRN_RELAY", relay.url.as_str()),
        ("CAIRN_TOKEN", &token),
        ("CAIRN_GRAPH", "team"),
        ("CAIRN_AGENT", "js-helper@test"),
    ];
    let out = w.node(&js_dir().join("helper-agent.mjs"), &["write"], &env);
    assert!(out.status.success(), "helper write failed: {}\n{}", stdout(&out), stderr(&out));
    let lines = json_lines(&out);
    let written = &lines[0];
    assert_eq!(lines[1]["freshness"]["state"], "synced", "{}", lines[1]);
    assert_eq!(lines[1]["freshness"]["unconfirmed"], 0, "the relay holds every document's changes");

    let (entity, relations) = entity_elsewhere(&w, "b.db", &relay, &token, "team", "Helper");
    assert_eq!(entity["entity_type"], "tool");
    assert_eq!(entity["created_by"], "js-helper@test");
    assert_eq!(entity["created_at"], written["createdAt"]);
    let obs = entity["observations"].as_array().unwrap();
    // One write's two observations: same `at`, read back in the order written (`n` 1 and 2).
    let texts: Vec<&str> = obs.iter().map(|o| o["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["plain", "bounded"], "{entity}");
    for o in obs {
        assert_eq!(o["by"], "js-helper@test");
        assert_eq!(o["at"], written["createdAt"]);
    }
    assert!(obs[0].get("valid_from").is_none() && obs[0].get("valid_to").is_none(), "{}", obs[0]);
    assert_eq!(obs[1]["valid_from"], 1_735_689_600_000_i64, "2025-01-01T00:00:00Z");
    assert_eq!(obs[1]["valid_to"], 4_102_444_800_000_i64, "2100-01-01T00:00:00Z");
    let rel = relations.iter().find(|r| r["from"] == "Helper").unwrap_or_else(|| panic!("{relations:?}"));
    assert_eq!((&rel["relation_type"], &rel["to"]), (&Value::from("uses"), &Value::from("Alice")));
    assert_eq!(rel["by"], "js-helper@test");
    assert_eq!(rel["valid_from"], 1_735_689_600_000_i64);
}

#[test]
fn the_helper_reads_what_rust_wrote_with_every_field() {
    let w = World::new();
    let token = w.token("team");
    let relay = Relay::start(&w, &[]);
    w.replica("a.db", &relay, &token, "team", &["add", "entity", "Bob", "--type", "person"]);
    w.replica(
        "a.db",
        &relay,
        &token,
        "team",
        &["add", "entity", "Alice", "--type", "person", "-o", "likes tea", "-o", "plays go"],
    );
    w.replica("a.db", &relay, &token, "team", &["add", "relation", "Alice", "knows", "Bob"]);

    let env = [("CAIRN_RELAY", relay.url.as_str()), ("CAIRN_TOKEN", &token), ("CAIRN_GRAPH", "team")];
    let out = w.node(&js_dir().join("helper-agent.mjs"), &["read"], &env);
    assert!(out.status.success(), "helper read failed: {}\n{}", stdout(&out), stderr(&out));
    let graph = &json_lines(&out)[0];
    let alice = graph["entities"].as_array().unwrap().iter().find(|e| e["name"] == "Alice").unwrap().clone();
    assert_eq!(alice["entityType"], "person");
    assert_eq!(alice["createdBy"], "cli-a.db");
    assert!(alice["createdAt"].as_i64().unwrap() > 1_600_000_000_000, "milliseconds: {alice}");
    let obs = alice["observations"].as_array().unwrap();
    let got: Vec<(&str, i64, &str)> = obs
        .iter()
        .map(|o| (o["content"].as_str().unwrap(), o["n"].as_i64().unwrap(), o["by"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [("likes tea", 1, "cli-a.db"), ("plays go", 2, "cli-a.db")]);
    assert_eq!(obs[0]["at"], alice["createdAt"]);
    let rel = &graph["relations"][0];
    assert_eq!(
        (&rel["from"], &rel["relationType"], &rel["to"]),
        (&Value::from("Alice"), &Value::from("knows"), &Value::from("Bob"))
    );
    assert_eq!(rel["by"], "cli-a.db");
    assert_eq!(rel["n"], 1, "a relation is the first fact of its own write");
}

#[test]
fn the_helper_reports_a_wrong_token_or_another_graphs_token_and_exits_cleanly() {
    let w = World::new();
    let other = w.token("other");
    let relay = Relay::start(&w, &[]);
    let secret = "cairn_00000000_1111111111111111111111111111111111111111111111111111111111111111";
    for (token, says) in [(secret, "refused the token"), (other.as_str(), "does not grant this graph")] {
        let env = [("CAIRN_RELAY", relay.url.as_str()), ("CAIRN_TOKEN", token), ("CAIRN_GRAPH", "team")];
        let out = w.node(&js_dir().join("helper-agent.mjs"), &["refused"], &env);
        assert_eq!(out.status.code(), Some(3), "{}\n{}", stdout(&out), stderr(&out));
        let report = &json_lines(&out)[0];
        assert_eq!(report["code"], "refused", "{report}");
        let message = report["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("1111111111"), "the token's secret is not repeated: {message}");
        assert_eq!(report["freshness"]["state"], "offline", "{report}");
    }
}

#[test]
fn a_javascript_only_team_starts_a_graph_on_an_open_relay() {
    let w = World::new();
    let relay = Relay::start(&w, &["--insecure-no-auth"]);
    let env = [("CAIRN_RELAY", relay.url.as_str()), ("CAIRN_GRAPH", "js-only"), ("CAIRN_AGENT", "js-helper@test")];
    let out = w.node(&js_dir().join("helper-agent.mjs"), &["write"], &env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    // A second JavaScript process, then a Rust replica, find it.
    let out = w.node(&js_dir().join("helper-agent.mjs"), &["read"], &env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let graph = &json_lines(&out)[0];
    assert!(
        graph["entities"].as_array().unwrap().iter().any(|e| e["name"] == "Helper" && e["entityType"] == "tool"),
        "{graph}"
    );
    let (entity, _) = entity_elsewhere(&w, "rust.db", &relay, "", "js-only", "Helper");
    assert_eq!(entity["created_by"], "js-helper@test");
}

#[test]
fn the_helper_writes_with_the_relay_down_and_delivers_when_it_comes_up() {
    let w = World::new();
    let token = w.token("team");
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}");
    let env = [
        ("CAIRN_RELAY", url.as_str()),
        ("CAIRN_TOKEN", &token),
        ("CAIRN_GRAPH", "team"),
        ("CAIRN_AGENT", "js-offline@test"),
    ];
    let mut child = w.node_child(&js_dir().join("helper-agent.mjs"), &["offline"], &env);

    // The first line comes with no relay at all: the write and the read were local.
    let (tx, rx) = mpsc::channel();
    let lines = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(NODE_BOUND).expect("the offline write printed nothing");
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["entity"]["observations"][0]["content"], "written with no relay", "{first}");
    assert_eq!(first["freshness"]["state"], "offline", "{first}");

    let relay = Relay::start_on(&w, port, &[]);
    let out = wait_bounded(child);
    assert!(out.status.success(), "{}", stderr(&out));
    let last: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(5)).unwrap()).unwrap();
    assert_eq!(last["freshness"]["state"], "synced", "{last}");
    let (entity, _) = entity_elsewhere(&w, "b.db", &relay, &token, "team", "Offline");
    assert_eq!(entity["created_by"], "js-offline@test");
}

#[test]
fn the_helper_passes_its_offline_checks() {
    let w = World::new();
    let fixtures = repo_root().join("tests/fixtures/golden");
    let out = w.node(&js_dir().join("helper-check.mjs"), &[fixtures.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).trim(), "helper-check: ok");
}

#[test]
fn the_typescript_types_check_and_catch_a_wrong_field() {
    let tsc = js_dir().join("node_modules/typescript/bin/tsc");
    let run = |args: &[&str]| {
        let out = Command::new("node").arg(&tsc).args(args).current_dir(js_dir()).output().expect("node runs tsc");
        (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
    };
    let (ok, said) = run(&["-p", "tsconfig.json"]);
    assert!(ok, "typed-usage.ts does not type-check against cairn/index.d.ts: {said}");

    // The same usage with one option misspelled must fail: the types are not `any`.
    let good = std::fs::read_to_string(js_dir().join("typed-usage.ts")).unwrap();
    let bad = good.replace("includeSuperseded: true", "includeSupersede: true");
    assert_ne!(good, bad);
    let file = ScriptFile::new("typed-bad.ts", &bad);
    let name = file.0.file_name().unwrap().to_str().unwrap().to_owned();
    let config = ScriptFile::new("tsconfig.json", &format!(r#"{{"extends": "./tsconfig.json", "files": ["{name}"]}}"#));
    let (ok, said) = run(&["-p", config.0.to_str().unwrap()]);
    assert!(!ok && said.contains("includeSupersede"), "a misspelled option type-checked: {said}");
}

#[test]
fn supersedes_cross_between_the_helper_and_rust_with_their_links() {
    let w = World::new();
    let token = w.token("team");
    let relay = Relay::start(&w, &[]);
    for args in [
        &["add", "entity", "Acme", "--type", "company"][..],
        &["add", "entity", "Initech", "--type", "company"],
        &["add", "entity", "Globex", "--type", "company"],
        &["add", "entity", "Alice", "--type", "person", "-o", "works at Acme"],
        &["add", "relation", "Alice", "works_at", "Acme"],
    ] {
        w.replica("a.db", &relay, &token, "team", args);
    }

    // JavaScript supersedes; a Rust replica that never saw it reads the link and the validity.
    let env = [
        ("CAIRN_RELAY", relay.url.as_str()),
        ("CAIRN_TOKEN", &token),
        ("CAIRN_GRAPH", "team"),
        ("CAIRN_AGENT", "js-hr@test"),
    ];
    let out = w.node(&js_dir().join("helper-agent.mjs"), &["supersede"], &env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let switch = 1_640_995_200_000_i64; // 2022-01-01T00:00:00Z
    let all: Value =
        serde_json::from_str(&w.replica("b.db", &relay, &token, "team", &["show", "Alice", "--json", "--all"]))
            .unwrap();
    let obs = all["details"]["entities"][0]["observations"].as_array().unwrap().clone();
    let acme = obs.iter().find(|o| o["text"] == "works at Acme").unwrap_or_else(|| panic!("{all}"));
    let initech = obs.iter().find(|o| o["text"] == "works at Initech").unwrap_or_else(|| panic!("{all}"));
    assert_eq!(acme["valid_to"], switch, "{acme}");
    assert_eq!(
        (&initech["replaces"], &initech["valid_from"], &initech["by"]),
        (&Value::from("works at Acme"), &Value::from(switch), &Value::from("js-hr@test"))
    );
    let rels = all["details"]["relations"].as_array().unwrap();
    let to_initech = rels.iter().find(|r| r["to"] == "Initech").unwrap_or_else(|| panic!("{all}"));
    assert_eq!(to_initech["replaces"], serde_json::json!({"from": "Alice", "relation_type": "works_at", "to": "Acme"}));
    // Current by default: only the new facts.
    let now: Value =
        serde_json::from_str(&w.replica("b.db", &relay, &token, "team", &["show", "Alice", "--json"])).unwrap();
    let texts: Vec<&str> =
        now["entities"][0]["observations"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
    assert_eq!(texts, ["works at Initech"], "{now}");

    // Rust supersedes again; the helper reads that link.
    w.replica(
        "b.db",
        &relay,
        &token,
        "team",
        &["supersede", "observation", "Alice", "works at Initech", "works at Globex", "--at", "2024-06-01"],
    );
    let env = [("CAIRN_RELAY", relay.url.as_str()), ("CAIRN_TOKEN", &token), ("CAIRN_GRAPH", "team")];
    let out = w.node(&js_dir().join("helper-agent.mjs"), &["read"], &env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let graph = &json_lines(&out)[0];
    let alice = graph["entities"].as_array().unwrap().iter().find(|e| e["name"] == "Alice").unwrap().clone();
    let globex = alice["observations"].as_array().unwrap().iter().find(|o| o["content"] == "works at Globex").cloned();
    let globex = globex.unwrap_or_else(|| panic!("{alice}"));
    assert_eq!((&globex["replaces"], &globex["by"]), (&Value::from("works at Initech"), &Value::from("cli-b.db")));
    assert_eq!(globex["validFrom"], 1_717_200_000_000_i64, "2024-06-01T00:00:00Z");
    assert_eq!(graph["conflicts"], serde_json::json!([]), "one line of succession, no conflict");
}
