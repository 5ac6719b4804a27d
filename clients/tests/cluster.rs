//! `cairn relay --store postgres://... --bus nats://...`: real relay node processes on one real
//! PostgreSQL and one real nats-server (started by the test, unprivileged, in temporary
//! directories), and real `cairn` commands writing through one node and reading through another.

#[path = "../../sync-server/tests/common/servers.rs"]
#[allow(dead_code, unreachable_pub)] // shared with sync-server's tests, which use all of it
mod servers;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use servers::{Nats, Postgres};

/// The bound on every wait: wide, since these run on a loaded machine; nothing is timed.
const WAIT: Duration = Duration::from_secs(60);

struct Cairn {
    dir: tempfile::TempDir,
}

impl Cairn {
    fn cmd(&self, db: &str, agent: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CAIRN_DB", self.db(db))
            .env("CAIRN_AGENT", agent);
        c
    }

    fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, db: &str, agent: &str, args: &[&str]) -> Output {
        self.cmd(db, agent).args(args).output().unwrap()
    }

    fn ok(&self, db: &str, agent: &str, args: &[&str]) -> String {
        let out = self.run(db, agent, args);
        assert!(out.status.success(), "cairn {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A relay node process, killed on drop.
struct Node {
    child: Child,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn start_node(pg: &Postgres, nats: &Nats) -> Node {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["relay", "--listen", &format!("127.0.0.1:{port}"), "--store", &pg.url(), "--bus", &nats.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = Node { child, port };
    let deadline = Instant::now() + WAIT;
    // Healthy once it reaches both its store and its bus.
    while !http_get(port, "/healthz").starts_with("HTTP/1.1 200") {
        assert!(Instant::now() < deadline, "the node did not become healthy: {}", http_get(port, "/healthz"));
        std::thread::sleep(Duration::from_millis(50));
    }
    node
}

#[test]
fn a_write_through_one_node_is_read_through_another_and_tokens_live_in_the_store() {
    let (pg, nats) = (Postgres::start(), Nats::start());
    let c = Cairn { dir: tempfile::tempdir().unwrap() };
    let store = pg.url();
    let out = c.ok(
        "x.db",
        "admin",
        &["relay", "token", "create", "--store", &store, "--graph", "default", "--role", "write"],
    );
    let token = out.lines().last().unwrap().to_owned();
    assert!(token.starts_with("cairn_"), "{out}");
    let listed = c.ok("x.db", "admin", &["relay", "token", "list", "--store", &store]);
    assert!(listed.contains("write") && listed.contains("default"), "{listed}");
    let (one, two) = (start_node(&pg, &nats), start_node(&pg, &nats));
    let health = http_get(one.port, "/healthz");
    assert!(health.ends_with("store: ok\nbus: ok\n"), "{health}");
    let (url1, url2) = (format!("ws://127.0.0.1:{}", one.port), format!("ws://127.0.0.1:{}", two.port));
    c.ok(
        "a.db",
        "alice",
        &["add", "entity", "Shared", "--type", "note", "-o", "from alice", "--relay", &url1, "--token", &token],
    );
    let out = c.ok("b.db", "bob", &["sync", "--relay", &url2, "--token", &token]);
    assert!(out.contains("in step with"), "{out}");
    let graph = c.ok("b.db", "bob", &["graph", "--json"]);
    assert!(graph.contains("from alice"), "bob reads alice's write through the other node: {graph}");
    let metrics = http_get(one.port, "/metrics");
    assert!(metrics.contains("cairn_relay_bus_published_total"), "{metrics}");
    // Revoked in the store: refused by every node.
    let id = token.split('_').nth(1).unwrap();
    c.ok("x.db", "admin", &["relay", "token", "revoke", "--store", &store, id]);
    let out = c.run("b.db", "bob", &["sync", "--relay", &url1, "--token", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A node whose bus went away says so, and stays up.
    drop(nats);
    let deadline = Instant::now() + WAIT;
    loop {
        let health = http_get(two.port, "/healthz");
        if health.starts_with("HTTP/1.1 503") {
            assert!(health.ends_with("store: ok\nbus: unreachable\n"), "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "the node never said its bus is gone: {health}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_store_and_bus_urls_are_refused_with_what_to_give() {
    let c = Cairn { dir: tempfile::tempdir().unwrap() };
    let out = c.run("x.db", "a", &["relay", "--store", "mysql://db/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected a PostgreSQL URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.run("x.db", "a", &["relay", "--store", "postgres://127.0.0.1:1/x", "--bus", "redis://x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected a NATS URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.run("x.db", "a", &["relay", "--bus", "nats://127.0.0.1:4222"]);
    assert_eq!(out.status.code(), Some(2), "--bus needs --store");
    // A store nobody serves: one clear line, a nonzero exit, nothing left running.
    let port = free_port();
    let out = c.run(
        "x.db",
        "a",
        &["relay", "--listen", "127.0.0.1:0", "--store", &format!("postgres://cairn@127.0.0.1:{port}/x")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the relay's PostgreSQL store"), "{err}");
}
