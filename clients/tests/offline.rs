//! The `cairn` binary with a relay it cannot use: one that refuses connections and one that
//! accepts TCP and never answers. Every one-shot command completes locally, says `offline`, and
//! a later `cairn sync` pushes what it wrote. Also: replica options before the command, and the
//! relay's default logs.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// No command here may take this long; the old behaviour (10 s before and 10 s after) or any
/// wait for the client's own 10 s connect timeout would come close to it or pass it.
const BOUND: Duration = Duration::from_secs(30);

struct Cairn {
    dir: tempfile::TempDir,
}

impl Cairn {
    fn new() -> Self {
        Cairn { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn` isolated from the user's environment (no CAIRN_LOG, RUST_LOG, CAIRN_RELAY...).
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null());
        c
    }

    /// Runs `cairn` on database `db` as `agent` through `relay` (if any); returns its output and
    /// how long it took.
    fn run(&self, db: &str, relay: Option<&str>, args: &[&str]) -> (Output, Duration) {
        let mut c = self.cmd();
        c.env("CAIRN_DB", self.path(db)).env("CAIRN_AGENT", db.trim_end_matches(".db"));
        if let Some(url) = relay {
            c.env("CAIRN_RELAY", url);
        }
        let started = Instant::now();
        let out = c.args(args).output().unwrap();
        (out, started.elapsed())
    }

    fn ok(&self, db: &str, relay: Option<&str>, args: &[&str]) -> (String, String) {
        let (out, _) = self.run(db, relay, args);
        assert!(out.status.success(), "cairn {args:?} failed: {}", stderr(&out));
        let err = stderr(&out);
        (String::from_utf8(out.stdout).unwrap(), err)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port nothing listens on: bound, noted, and released.
fn refused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A "relay" that accepts TCP connections and never sends a byte, holding every socket open
/// until it is dropped.
struct SilentRelay {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentRelay {
    fn start() -> SilentRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (accepted, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (count, stopped) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            // Bounded by the test's own length: the test sets `stop` when it is done.
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        held.push(socket);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SilentRelay { port, accepted, stop, thread: Some(thread) }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for SilentRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A real relay run by the binary, with a write token for every graph; its stderr lines arrive
/// on `log`.
struct Relay {
    child: Child,
    url: String,
    token: String,
    log: mpsc::Receiver<String>,
}

impl Relay {
    fn start(c: &Cairn, env: &[(&str, &str)]) -> Relay {
        let data = c.path("relay-data");
        let data = data.to_str().unwrap();
        let out = c
            .cmd()
            .args(["relay", "token", "create", "--data", data, "--graph", "*", "--role", "write"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_owned();
        let port = refused_port();
        let mut child = c
            .cmd()
            .envs(env.iter().copied())
            .args(["relay", "--listen", &format!("127.0.0.1:{port}"), "--data", data])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the relay did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Relay { child, url: format!("ws://127.0.0.1:{port}"), token, log }
    }

    /// Waits (bounded) for a log line containing `needle`; returns it.
    fn log_line(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every one-shot command on `db` through `relay` (unusable): each succeeds, says it is offline
/// and could not sync, and the writes are there locally. `after` checks each command's timing
/// against the relay (the silent one's accepted connections).
fn every_command_works_offline(c: &Cairn, db: &str, relay: &str, mut after: impl FnMut(&str, Duration)) {
    let import = c.path(&format!("{db}.jsonl"));
    std::fs::write(
        &import,
        "{\"type\":\"entity\",\"name\":\"Imported\",\"entityType\":\"file\",\"observations\":[\"x\"]}\n",
    )
    .unwrap();
    let export = c.path(&format!("{db}.export.jsonl"));
    let writes: &[&[&str]] = &[
        &["add", "entity", "Alice", "--type", "person", "-o", "written offline"],
        &["add", "entity", "Bob", "--type", "person"],
        &["add", "entity", "Gone", "--type", "temp"],
        &["add", "observation", "Alice", "likes tea"],
        &["add", "relation", "Alice", "knows", "Bob"],
        &["set-type", "Bob", "friend"],
        &["delete", "entity", "Gone"],
        &["import", import.to_str().unwrap()],
    ];
    // Succeeds, says once that it is offline, and (a write) what is not on the relay yet.
    let mut offline = |args: &[&str], wrote: bool| {
        let (out, took) = c.run(db, Some(relay), args);
        let err = stderr(&out);
        assert!(out.status.success(), "cairn {args:?} through {relay} failed: {err}");
        assert!(err.contains("offline") && err.contains("could not sync"), "cairn {args:?}: {err}");
        assert_eq!(err.lines().filter(|l| l.contains("offline")).count(), 1, "said once: {err}");
        let pending = err.contains("not on the relay yet") && err.contains("cairn sync");
        assert_eq!(pending, wrote, "cairn {args:?}: {err}");
        after(args[0], took);
    };
    for args in writes {
        offline(args, true);
    }
    // `changes --since` takes a version of this file (read locally, no relay).
    let (status, _) = c.ok(db, None, &["status", "--json"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    // "v36.3bb7e7fc": after the first change of the file "3bb7e7fc".
    let file = status["status"]["version"].as_str().unwrap().split_once('.').unwrap().1.to_owned();
    let since = format!("v1.{file}");
    let reads: &[&[&str]] = &[
        &["search", "tea"],
        &["show", "Alice"],
        &["history", "Alice"],
        &["changes", "--since", &since],
        &["graph"],
        &["status"],
        &["export", "--output", export.to_str().unwrap()],
    ];
    for args in reads {
        offline(args, false);
    }
    // Operating the file is local by design (docs/operations.md): it succeeds with the relay
    // configured and never mentions it.
    let backup = c.path(&format!("{db}.backup.db"));
    for args in [&["check"][..], &["backup", backup.to_str().unwrap()], &["repair"]] {
        let (out, _) = c.run(db, Some(relay), args);
        let err = stderr(&out);
        assert!(out.status.success(), "cairn {args:?} with {relay} set failed: {err}");
        assert!(!err.contains("offline") && !err.contains("sync"), "cairn {args:?} spoke of the relay: {err}");
    }
    // Reads show `offline` in their freshness, and `status --json` says so.
    let (out, _) = c.run(db, Some(relay), &["graph", "--json"]);
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["freshness"]["state"], "offline");
    let (out, _) = c.run(db, Some(relay), &["status", "--json"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["relay_state"], "offline");
    // Everything was written locally.
    let (out, _) = c.ok(db, None, &["graph", "--json"]);
    let g: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = g["entities"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Alice", "Bob", "Imported"], "{g}");
    assert_eq!(g["relations"][0]["relationType"], "knows");
    assert!(std::fs::read_to_string(&export).unwrap().contains("likes tea"));
}

/// What `writer` wrote offline reaches the relay with `cairn sync`, and a new replica reads it.
fn sync_pushes_what_was_written_offline(c: &Cairn, relay: &Relay, writer: &str, reader: &str) {
    let auth = ["--relay", relay.url.as_str(), "--token", relay.token.as_str()];
    let (out, _) = c.ok(writer, None, &[&["sync"][..], &auth].concat());
    assert!(out.contains("in step with"), "{out}");
    let (out, err) = c.ok(reader, None, &[&["graph", "--json"][..], &auth].concat());
    assert!(!err.contains("offline"), "{err}");
    let g: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(g["freshness"]["state"], "synced", "{g}");
    let alice =
        g["entities"].as_array().unwrap().iter().find(|e| e["name"] == "Alice").expect("Alice reached the relay");
    assert!(alice["observations"].as_array().unwrap().iter().any(|o| o == "likes tea"), "{alice}");
    assert!(g["entities"].as_array().unwrap().iter().any(|e| e["name"] == "Imported"), "{g}");
}

#[test]
fn a_refused_relay_is_offline_at_once_and_sync_pushes_later() {
    let c = Cairn::new();
    let relay = format!("ws://127.0.0.1:{}", refused_port());
    every_command_works_offline(&c, "refused.db", &relay, |_, took| assert!(took < BOUND, "{took:?}"));
    // A refused relay is not waited for at all, however long the wait allowed: with a 60 s sync
    // timeout the command still ends well within the bound.
    let (out, took) = c.run("refused.db", Some(&relay), &["--sync-timeout", "60", "show", "Alice"]);
    assert!(out.status.success() && stderr(&out).contains("offline"), "{}", stderr(&out));
    assert!(took < BOUND, "a refused relay was waited for: {took:?}");
    let mut env = c.cmd();
    let out = env
        .env("CAIRN_DB", c.path("refused.db"))
        .env("CAIRN_RELAY", &relay)
        .env("CAIRN_SYNC_TIMEOUT", "60")
        .args(["add", "observation", "Alice", "through the environment"])
        .output()
        .unwrap();
    assert!(out.status.success() && stderr(&out).contains("offline"), "{}", stderr(&out));
    // `cairn sync`, whose job is syncing, fails and says offline and what is not on the relay.
    let (out, took) = c.run("refused.db", Some(&relay), &["sync", "--sync-timeout", "60"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("offline") && err.contains("not confirmed on the relay"), "{err}");
    assert!(took < BOUND, "{took:?}");
    // A host name that does not resolve is offline at once too.
    let (out, took) = c.run("refused.db", Some("ws://cairn-test.invalid:7878"), &["--sync-timeout", "60", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("offline") && stderr(&out).contains("cairn-test.invalid"), "{}", stderr(&out));
    assert!(took < BOUND, "{took:?}");
    // The relay comes up: `cairn sync` pushes what was written offline.
    let relay = Relay::start(&c, &[]);
    sync_pushes_what_was_written_offline(&c, &relay, "refused.db", "reader.db");
}

#[test]
fn a_silent_relay_is_waited_a_second_and_sync_pushes_later() {
    let c = Cairn::new();
    let silent = SilentRelay::start();
    let url = format!("ws://127.0.0.1:{}", silent.port);
    let mut commands = 0;
    every_command_works_offline(&c, "silent.db", &url, |name, took| {
        commands += 1;
        assert!(took < BOUND, "{name}: {took:?}");
        // One connection per command, still held open by the relay when the command ended: the
        // command never waited out its client's own connect timeout (10 s), after which the
        // client would have dropped it and connected again.
        assert_eq!(silent.accepted(), commands, "{name}: one connection, never retried");
    });
    // 0: do not wait at all.
    let (out, took) = c.run("silent.db", Some(&url), &["show", "Alice", "--sync-timeout", "0"]);
    assert!(out.status.success() && stderr(&out).contains("offline"), "{}", stderr(&out));
    assert!(took < BOUND);
    // `cairn sync` waits its timeout, then fails saying offline.
    let (out, _) = c.run("silent.db", Some(&url), &["sync", "--sync-timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("offline: could not sync"), "{}", stderr(&out));
    let relay = Relay::start(&c, &[]);
    sync_pushes_what_was_written_offline(&c, &relay, "silent.db", "reader.db");
}

#[test]
fn replica_options_go_before_or_after_the_command() {
    let c = Cairn::new();
    let db = c.path("g.db");
    let db = db.to_str().unwrap();
    let other = c.path("other.db");
    let other = other.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = c.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "cairn {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["--db", db, "--agent", "first", "add", "entity", "Before", "--type", "t"]);
    run(&["add", "--db", db, "entity", "After", "--type", "t", "--agent", "second"]);
    run(&["--db", other, "--graph", "elsewhere", "--json", "add", "entity", "Other", "--type", "t"]);
    let before: Value = serde_json::from_str(&run(&["--db", db, "--json", "graph"])).unwrap();
    let after: Value = serde_json::from_str(&run(&["graph", "--db", db, "--json"])).unwrap();
    assert_eq!(before["entities"], after["entities"]);
    let names: Vec<&str> = before["entities"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["After", "Before"]);
    // The agent given before the command was recorded.
    let history = run(&["--db", db, "history", "Before"]);
    assert!(history.contains("first"), "{history}");
    // Given on both sides, the one after the command's name wins.
    let g: Value =
        serde_json::from_str(&run(&["--db", db, "graph", "--db", other, "--graph", "elsewhere", "--json"])).unwrap();
    assert_eq!(g["entities"][0]["name"], "Other");
    // `--graph` before the command is used, not the default.
    let g: Value = serde_json::from_str(&run(&["--graph", "elsewhere", "--db", other, "graph", "--json"])).unwrap();
    assert_eq!(g["entities"][0]["name"], "Other");
    // The top-level help lists them.
    let help = run(&["--help"]);
    assert!(
        help.contains("--db")
            && help.contains("--sync-timeout")
            && help.contains("Replica options (before or after the command)"),
        "{help}"
    );
    // A replica option before a command that opens none is an error, not silently ignored.
    let out = c.cmd().args(["--db", db, "relay", "token", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--db does not apply"), "{}", stderr(&out));
    // `cairn relay token create --graph --agent --json` keep their own meaning.
    let data = c.path("relay-data");
    let data = data.to_str().unwrap();
    let token: Value = serde_json::from_str(&run(&[
        "relay", "token", "create", "--data", data, "--graph", "a", "--graph", "b", "--agent", "bot@*", "--role",
        "read", "--json",
    ]))
    .unwrap();
    assert!(token.to_string().contains("bot@*"), "{token}");
}

#[test]
fn the_relay_logs_refused_handshakes_by_default_and_honours_rust_log() {
    let c = Cairn::new();
    // No CAIRN_LOG, no RUST_LOG: a wrong token's handshake is logged.
    let relay = Relay::start(&c, &[]);
    let (out, _) = c.run("w.db", Some(&relay.url), &["sync", "--token", "cairn_wrong"]);
    assert_eq!(out.status.code(), Some(1));
    let line = relay.log_line("refused a connection").expect("the refused handshake is in the default log");
    assert!(!line.contains("cairn_wrong"), "no token in logs: {line}");
    drop(relay);
    // RUST_LOG is honoured: at debug, an accepted connection is logged as opened.
    let relay = Relay::start(&c, &[("RUST_LOG", "cairn_sync=debug")]);
    c.ok("w.db", None, &["sync", "--relay", &relay.url, "--token", &relay.token]);
    assert!(relay.log_line("connection opened").is_some(), "RUST_LOG=cairn_sync=debug is honoured");
    drop(relay);
    // CAIRN_LOG wins over RUST_LOG.
    let relay = Relay::start(&c, &[("RUST_LOG", "off"), ("CAIRN_LOG", "cairn_sync=debug")]);
    c.ok("w.db", None, &["sync", "--relay", &relay.url, "--token", &relay.token]);
    assert!(relay.log_line("connection opened").is_some(), "CAIRN_LOG wins over RUST_LOG");
}
