//! The real `cairn` binary: every subcommand, its `--json` output, and its error exits.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Cairn {
    dir: tempfile::TempDir,
}

impl Cairn {
    fn new() -> Self {
        Cairn { dir: tempfile::tempdir().unwrap() }
    }

    fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `cairn` with a database and an agent (through the environment, as the options
    /// `--db` and `--agent` would), isolated from the user's own environment.
    fn cmd(&self, db: &str, agent: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CAIRN_DB", self.db(db))
            .env("CAIRN_AGENT", agent);
        c
    }

    fn run(&self, db: &str, agent: &str, args: &[&str]) -> Output {
        self.cmd(db, agent).args(args).output().unwrap()
    }

    fn ok(&self, db: &str, agent: &str, args: &[&str]) -> String {
        let out = self.run(db, agent, args);
        assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, db: &str, agent: &str, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(db, agent, &all)).unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn writing_reading_and_history_through_the_binary() {
    let c = Cairn::new();
    let out = c.ok("a.db", "alice", &["add", "entity", "Tea", "--type", "drink", "-o", "hot", "-o", "green"]);
    assert!(out.contains("created Tea"), "{out}");
    c.ok("a.db", "alice", &["add", "entity", "Cup", "--type", "thing"]);
    c.ok("a.db", "alice", &["add", "observation", "Cup", "chipped", "blue"]);
    c.ok("a.db", "alice", &["add", "relation", "Tea", "served_in", "Cup"]);
    // A duplicate is reported, not an error.
    let out = c.json("a.db", "alice", &["add", "entity", "Tea", "--type", "other"]);
    assert_eq!(out["outcomes"], serde_json::json!(["already_exists"]));

    // `graph --json` is the reference read_graph shape plus version and freshness.
    let g = c.json("a.db", "alice", &["graph"]);
    assert_eq!(
        g["entities"][0],
        serde_json::json!({"name": "Cup", "entityType": "thing", "observations": ["chipped", "blue"]})
    );
    assert_eq!(g["entities"][1]["name"], "Tea");
    assert_eq!(g["relations"], serde_json::json!([{"from": "Tea", "to": "Cup", "relationType": "served_in"}]));
    assert_eq!(g["freshness"]["state"], "local");
    let version = g["version"].as_str().unwrap().to_owned();
    assert!(version.starts_with('v'));

    let text = c.ok("a.db", "alice", &["graph"]);
    assert!(
        text.contains("Tea [drink]") && text.contains("Tea --served_in--> Cup") && text.contains("-- version"),
        "{text}"
    );
    assert!(c.ok("a.db", "alice", &["graph", "--format", "dot"]).contains("digraph cairn"));

    let found = c.json("a.db", "alice", &["search", "GREEN"]);
    assert_eq!(found["entities"][0]["name"], "Tea");
    let shown = c.json("a.db", "alice", &["show", "Cup", "Nobody"]);
    assert_eq!(shown["entities"].as_array().unwrap().len(), 1);
    assert_eq!(shown["relations"].as_array().unwrap().len(), 1);

    // Another agent writes; alice's next read says so.
    c.ok("a.db", "bob", &["add", "observation", "Tea", "steeped"]);
    let g = c.json("a.db", "alice", &["graph"]);
    assert_eq!(g["unseen"]["agents"], serde_json::json!(["bob"]));
    let changes = c.json("a.db", "alice", &["changes", "--since", &version]);
    assert_eq!(changes["changes"][0]["agent"], "bob");
    assert_eq!(changes["changes"][0]["kind"], "observation_set");

    c.ok("a.db", "alice", &["set-type", "Tea", "beverage"]);
    c.ok("a.db", "alice", &["delete", "observation", "Cup", "blue"]);
    c.ok("a.db", "alice", &["delete", "relation", "Tea", "served_in", "Cup"]);
    let out = c.ok("a.db", "alice", &["delete", "entity", "Cup", "Ghost"]);
    assert!(out.contains("deleted Cup") && out.contains("Ghost: not found"), "{out}");
    let history = c.json("a.db", "alice", &["history", "Cup"]);
    let kinds: Vec<&str> = history["changes"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"entity_deleted") && kinds.contains(&"observation_deleted"), "{kinds:?}");
    let text = c.ok("a.db", "alice", &["history", "Tea"]);
    assert!(text.contains("set Tea to type \"beverage\""), "{text}");

    let status = c.json("a.db", "alice", &["status"]);
    assert_eq!(status["status"]["entities"], 1);
    assert!(status["status"]["database_bytes"].as_u64().unwrap() > 0);
    assert!(c.ok("a.db", "alice", &["status"]).contains("relay      none"));
}

#[test]
fn errors_are_one_clear_line_and_a_nonzero_exit() {
    let c = Cairn::new();
    let check = |out: Output, code: i32, needle: &str| {
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
        if code == 1 {
            assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
            assert!(err.starts_with("error: "));
        }
    };
    check(
        c.run("a.db", "alice", &["add", "observation", "Ghost", "boo"]),
        1,
        "entity \"Ghost\" not found; create it first",
    );
    check(c.run("a.db", "alice", &["add", "entity", "a\u{1f}b", "--type", "t"]), 1, "contains U+001F");
    check(c.run("a.db", "alice", &["graph", "--graph", "Bad Name"]), 1, "graph name \"Bad Name\" is invalid");
    check(c.run("a.db", "bad\u{7}agent", &["graph"]), 1, "control character");
    // Options given on the command line win over the environment, anywhere after the command.
    let out =
        c.run("a.db", "alice", &["add", "entity", "X", "--type", "t", "--db", c.db("other.db").to_str().unwrap()]);
    assert!(out.status.success());
    assert!(c.db("other.db").is_file());
    check(c.run("a.db", "alice", &["changes", "--since", "yesterday"]), 1, "not a Cairn version");
    check(c.run("a.db", "alice", &["import", "/nonexistent/memory.jsonl"]), 1, "cannot read /nonexistent/memory.jsonl");
    check(c.run("a.db", "alice", &["sync"]), 1, "no relay to sync with");
    std::fs::write(c.db("notes.txt"), "just some notes, not a database\n".repeat(100)).unwrap();
    check(c.run("notes.txt", "alice", &["graph"]), 1, "is not a Cairn database");
    // Usage errors are clap's: exit 2 with the usage.
    check(c.run("a.db", "alice", &["add", "entity", "X"]), 2, "--type");
    check(c.run("a.db", "alice", &["frobnicate"]), 2, "unrecognized subcommand");
}

#[test]
fn control_characters_in_data_are_escaped_in_human_output() {
    let c = Cairn::new();
    // ESC starts terminal control sequences (here: red, then "clear the screen"); a newline in
    // an observation would otherwise forge a line of output.
    let nasty = "fine\u{1b}[31m red\u{1b}[2J\nforged line\u{9b}1m\u{7f}";
    c.ok("a.db", "alice", &["add", "entity", "Tea", "--type", "drink", "-o", nasty]);
    c.ok("a.db", "alice", &["add", "entity", "Cup", "--type", "thing"]);
    c.ok("a.db", "alice", &["add", "relation", "Tea", "served_in", "Cup"]);
    let raw = |s: &str| s.chars().filter(|c| c.is_control() && *c != '\n').count();
    let escaped = "fine\\u{1b}[31m red\\u{1b}[2J\\nforged line\\u{9b}1m\\u{7f}";
    for args in [&["graph"][..], &["show", "Tea"], &["search", "red"], &["history", "Tea"]] {
        let out = c.ok("a.db", "alice", args);
        assert_eq!(raw(&out), 0, "cairn {args:?} printed a raw control character: {out:?}");
        assert!(!out.lines().any(|l| l.starts_with("forged line")), "cairn {args:?}: {out}");
        if args[0] != "history" {
            assert!(out.contains(&format!("  - {escaped}")), "cairn {args:?}: {out}");
        } else {
            assert!(out.contains("\\u{1b}[31m"), "cairn {args:?}: {out}");
        }
    }
    // --json is left to serde, which escapes control characters: the text comes back exact.
    let g = c.json("a.db", "alice", &["show", "Tea"]);
    assert_eq!(g["entities"][0]["observations"][0], nasty);
    // Errors that quote input are escaped too (an agent name is a printable label).
    let out = c.run("a.db", "Bad\u{1b}]0;title\u{7}", &["graph"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(raw(&err), 0, "{err:?}");
    assert!(err.starts_with("error: ") && err.contains("control character"), "{err}");
}

#[test]
fn every_subcommand_explains_itself() {
    let c = Cairn::new();
    for sub in [
        &["--help"][..],
        &["add", "--help"],
        &["add", "entity", "--help"],
        &["add", "observation", "--help"],
        &["add", "relation", "--help"],
        &["delete", "--help"],
        &["set-type", "--help"],
        &["search", "--help"],
        &["show", "--help"],
        &["history", "--help"],
        &["changes", "--help"],
        &["graph", "--help"],
        &["status", "--help"],
        &["sync", "--help"],
        &["import", "--help"],
        &["export", "--help"],
        &["relay", "--help"],
        &["demo", "--help"],
    ] {
        let out = c.ok("a.db", "alice", sub);
        assert!(out.contains("Usage:"), "{sub:?}: {out}");
    }
    let help = c.ok("a.db", "alice", &["graph", "--help"]);
    for env in ["CAIRN_DB", "CAIRN_AGENT", "CAIRN_GRAPH", "CAIRN_RELAY", "CAIRN_TOKEN"] {
        assert!(help.contains(env), "--help mentions {env}");
    }
}

const REFERENCE: &str = concat!(
    r#"{"type":"entity","name":"Alice","entityType":"person","observations":["likes tea","works remotely"]}"#,
    "\n",
    r#"{"type":"entity","name":"ACME","entityType":"company","observations":[]}"#,
    "\n",
    r#"{"type":"relation","from":"Alice","to":"ACME","relationType":"works_at"}"#,
    "\n",
    r#"{"type":"entity","name":"Bob","entityType":"per"#
);

#[test]
fn import_refuses_a_bad_line_whole_or_skips_it_and_export_round_trips() {
    let c = Cairn::new();
    let file = c.db("memory.jsonl");
    std::fs::write(&file, REFERENCE).unwrap();
    // A line that cannot be imported stops the import before anything is written.
    let out = c.run("a.db", "importer", &["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 4 cannot be imported: not valid JSON"), "{}", stderr(&out));
    assert_eq!(c.json("a.db", "x", &["graph"])["entities"], serde_json::json!([]));
    // Asked to skip such lines, it imports the rest and lists what it skipped.
    let report = c.json("a.db", "importer", &["import", file.to_str().unwrap(), "--skip-bad-lines"]);
    assert_eq!(report["entities_created"], 2);
    assert_eq!(report["observations_added"], 2);
    assert_eq!(report["relations_created"], 1);
    assert_eq!(report["rejected"][0]["line"], 4);
    assert!(report["rejected"][0]["reason"].as_str().unwrap().contains("not valid JSON"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), REFERENCE, "the original is never modified");
    let text = c.ok("a.db", "importer", &["import", file.to_str().unwrap()]);
    assert!(text.contains("resumed after line 4 of 4"), "{text}");
    let exported = c.ok("a.db", "importer", &["export"]);
    let lines: Vec<&str> = exported.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.contains(&r#"{"type":"relation","from":"Alice","to":"ACME","relationType":"works_at"}"#));
    // The export imports into another replica as the same graph.
    let out = c.db("out.jsonl");
    c.ok("a.db", "importer", &["export", "-o", out.to_str().unwrap()]);
    c.ok("b.db", "other", &["import", out.to_str().unwrap()]);
    assert_eq!(c.json("a.db", "x", &["graph"])["entities"], c.json("b.db", "x", &["graph"])["entities"]);
}

#[test]
fn an_interrupted_import_resumes_to_exactly_the_right_graph() {
    const ENTITIES: usize = 6_000;
    let c = Cairn::new();
    let file = c.db("big.jsonl");
    let mut content = String::new();
    for i in 0..ENTITIES {
        content.push_str(&format!(
            r#"{{"type":"entity","name":"e{i}","entityType":"thing","observations":["note {i}"]}}"#
        ));
        content.push('\n');
    }
    for i in 1..ENTITIES {
        content.push_str(&format!(r#"{{"type":"relation","from":"e{i}","to":"e{}","relationType":"follows"}}"#, i - 1));
        content.push('\n');
    }
    std::fs::write(&file, &content).unwrap();
    // Step 1: start importing in tiny batches (6,000 transactions) and SIGKILL the importer right
    // after it reports (on stderr, under --json) that batch 100 committed: a point the import
    // reached, not a time. It cannot have finished by then, however slow this machine is: once
    // we stop reading, it can write at most a pipe's worth (64 KiB, about 1,600 report lines)
    // before blocking, far fewer than the 5,900 batches left.
    const KILL_AFTER_LINES: u64 = 200;
    let mut child = c
        .cmd("big.db", "importer")
        .args(["import", file.to_str().unwrap(), "--batch", "2", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reports = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut committed = 0;
    let mut seen = Vec::new();
    // Bounded by the pipe: the importer reports at most 6,000 batches, then closes stderr.
    while committed < KILL_AFTER_LINES {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reports, &mut line).unwrap() == 0 {
            panic!("the importer stopped reporting after {committed} lines; it said: {seen:#?}");
        }
        if let Ok(report) = serde_json::from_str::<Value>(&line) {
            committed = report["committed"]["lines"].as_u64().unwrap_or(committed);
        }
        seen.push(line);
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    drop(reports);
    let partial = c.json("big.db", "watcher", &["status"])["status"]["entities"].as_u64().unwrap();
    assert!(
        !status.success() && partial >= KILL_AFTER_LINES && (partial as usize) < ENTITIES,
        "the import was interrupted partway, after what it reported ({partial} entities, {status})"
    );
    // Step 2: run it again: it resumes and ends with exactly the right graph.
    let report = c.json("big.db", "importer", &["import", file.to_str().unwrap(), "--batch", "20"]);
    assert!(report["resumed_after"].as_u64().unwrap() >= committed, "what was reported is kept: {report}");
    assert!(report["rejected"].as_array().unwrap().is_empty());
    let g = c.json("big.db", "x", &["graph"]);
    assert_eq!(g["entities"].as_array().unwrap().len(), ENTITIES);
    assert_eq!(g["relations"].as_array().unwrap().len(), ENTITIES - 1);
    assert!(g["entities"].as_array().unwrap().iter().all(|e| e["observations"].as_array().unwrap().len() == 1));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the relay did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_agents_sync_through_a_relay_run_by_the_binary() {
    let c = Cairn::new();
    let port = free_port();
    let data = c.db("relay-data");
    let data = data.to_str().unwrap();
    // Tokens first: the relay refuses connections without one.
    let out = c.ok(
        "x.db",
        "admin",
        &["relay", "token", "create", "--data", data, "--graph", "default", "--role", "write", "--label", "team"],
    );
    let token = out.lines().last().unwrap().to_owned();
    assert!(token.starts_with("cairn_"), "the token is on the last line: {out}");
    let listed = c.ok("x.db", "admin", &["relay", "token", "list", "--data", data]);
    assert!(listed.contains("write") && listed.contains("default") && !listed.contains(&token), "{listed}");
    let mut relay = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["relay", "--listen", &format!("127.0.0.1:{port}"), "--data", data])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    let url = format!("ws://127.0.0.1:{port}");
    let health = http_get(port, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"), "{health}");
    // Without the token: refused, and the command says so.
    let out = c.run("b.db", "bob", &["sync", "--relay", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("refused the token (HTTP 401)"), "{}", stderr(&out));
    c.ok(
        "a.db",
        "alice",
        &["add", "entity", "Shared", "--type", "note", "-o", "from alice", "--relay", &url, "--token", &token],
    );
    let out = c.ok("b.db", "bob", &["sync", "--relay", &url, "--token", &token]);
    assert!(out.contains("in step with"), "{out}");
    let g = c.json("b.db", "bob", &["graph"]);
    assert_eq!(g["entities"][0]["name"], "Shared");
    // Bob's reads through the relay say they are synced (the token from the environment now).
    let mut cmd = c.cmd("b.db", "bob");
    let out = cmd.env("CAIRN_TOKEN", &token).args(["graph", "--json", "--relay", &url]).output().unwrap();
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["freshness"]["state"], "synced");
    let status = c.json("b.db", "bob", &["status", "--relay", &url, "--token", &token]);
    assert_eq!(status["pending"]["settled"], true);
    assert_eq!(status["pending"]["changes"], 0);
    let id = token.split('_').nth(1).unwrap();
    assert!(c.ok("x.db", "admin", &["relay", "token", "revoke", "--data", data, id]).contains("revoked"));
    relay.kill().unwrap();
    relay.wait().unwrap();
    // With the relay gone, a command still works locally, says it is offline, and exits 0.
    let out = c.run("b.db", "bob", &["graph", "--json", "--relay", &url, "--token", &token]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("could not sync"), "{}", stderr(&out));
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["freshness"]["state"], "offline");
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_demo_runs_and_converges() {
    let c = Cairn::new();
    let out = c.run("unused.db", "x", &["demo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("converged: all three agents hold the same graph"), "{text}");
    assert!(text.contains("OFFLINE since"));
    assert!(text.contains("conflict:"));
    let json = c.json("unused.db", "x", &["demo"]);
    assert_eq!(json["converged"], true);
    assert_eq!(json["stale_write_refused"], true);
    // Every observation written concurrently survived the merge.
    let launch = &json["launch_after_merge"];
    assert_eq!(launch["observations"].as_array().unwrap().len(), 4, "{launch}");
    assert_eq!(launch["conflicts"].as_array().unwrap().len(), 1);
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::io::Read;
    let c = Cairn::new();
    let file = c.db("big.jsonl");
    let line =
        serde_json::json!({"type": "entity", "name": "Big", "entityType": "t", "observations": ["x".repeat(1 << 20)]});
    std::fs::write(&file, format!("{line}\n")).unwrap();
    c.ok("a.db", "alice", &["import", file.to_str().unwrap()]);
    // `cairn graph | head -c 10`: the reader takes a few bytes of a megabyte and closes the pipe.
    let mut child =
        c.cmd("a.db", "alice").args(["graph", "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
