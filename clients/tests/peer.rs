//! Peer-to-peer stories with the real binary over loopback, and no relay anywhere: `cairn mcp`
//! agents (driven by a real MCP client, rmcp's) that listen (`--listen`) and dial (`--peer`),
//! with the tokens `cairn peer token create` makes; a stock automerge-repo client reading from a
//! listening replica (`clients/js/peer-read.mjs`); and discovery with mDNS (`--discover`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

const GRAPH: &str = "team";
/// How long a story waits for agents to converge before it fails (a bound, not a measure).
const CONVERGE: Duration = Duration::from_secs(90);

/// The environment variables a story must not inherit: each agent gets only what it is given.
const CLEARED: &[&str] = &[
    "CAIRN_AGENT",
    "CAIRN_RELAY",
    "CAIRN_TOKEN",
    "CAIRN_LISTEN",
    "CAIRN_PEERS",
    "CAIRN_PEER_TOKEN",
    "CAIRN_DISCOVER",
    "CAIRN_GRAPH",
    "MEMORY_FILE_PATH",
];

/// A running `cairn mcp` agent, its process id and where its stderr goes.
struct Agent {
    client: RunningService<RoleClient, ClientConfig>,
    pid: u32,
    log: PathBuf,
}

/// Starts `cairn mcp --db DB --graph team --agent NAME ARGS...`, its stderr in `DB.log`.
async fn agent(db: &Path, name: &str, args: &[&str]) -> Agent {
    let log = db.with_extension("log");
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
        for var in CLEARED {
            c.env_remove(var);
        }
        c.args(["mcp", "--db", db.to_str().unwrap(), "--graph", GRAPH, "--agent", name]).args(args);
        c.env("CAIRN_LOG", "info");
    });
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::from(stderr)).spawn().unwrap();
    let pid = transport.id().unwrap();
    let client = ClientConfig::new(ClientCapabilities::default(), Implementation::new(name, "1.0"))
        .serve(transport)
        .await
        .unwrap();
    Agent { client, pid, log }
}

impl Agent {
    async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        let Value::Object(args) = args else { panic!("arguments must be an object") };
        self.client.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await.unwrap()
    }

    /// `memory_status`'s structured answer.
    async fn status(&self) -> Value {
        let r = self.call("memory_status", json!({})).await;
        assert_ne!(r.is_error, Some(true), "memory_status failed: {}\n{}", text(&r), self.stderr());
        r.structured_content.unwrap()
    }

    /// The URL this agent listens on.
    async fn url(&self) -> String {
        self.status().await["listening"].as_str().unwrap_or_else(|| panic!("not listening: {}", self.stderr())).into()
    }

    async fn create(&self, names: &[&str]) {
        let entities: Vec<Value> =
            names.iter().map(|n| json!({"name": n, "entityType": "note", "observations": []})).collect();
        let r = self.call("create_entities", json!({ "entities": entities })).await;
        assert_ne!(r.is_error, Some(true), "create_entities failed: {}", text(&r));
    }

    async fn observe(&self, entity: &str, texts: &[&str]) {
        let r =
            self.call("add_observations", json!({"observations": [{"entityName": entity, "contents": texts}]})).await;
        assert_ne!(r.is_error, Some(true), "add_observations failed: {}", text(&r));
    }

    /// The graph as the agent reads it: entity names, and (name, observation) pairs.
    async fn graph(&self) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
        let r = self.call("read_graph", json!({})).await;
        let g = r.structured_content.unwrap();
        let mut names = BTreeSet::new();
        let mut observations = BTreeSet::new();
        for e in g["entities"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap().to_owned();
            for o in e["observations"].as_array().unwrap() {
                observations.insert((name.clone(), o.as_str().unwrap().to_owned()));
            }
            names.insert(name);
        }
        (names, observations)
    }

    async fn names(&self) -> BTreeSet<String> {
        self.graph().await.0
    }

    /// The agent's stderr so far, for a failing story's message.
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ends the agent (closing its stdin; the transport kills it) and waits until the process
    /// is gone, so that its port and database are free for a restart.
    async fn stop(self) {
        let pid = self.pid;
        let _ = self.client.cancel().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(pid) {
            assert!(Instant::now() < deadline, "agent {pid} did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether process `pid` still runs (Linux: it has a /proc entry and is not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text()).map(|t| t.text.clone()).collect::<Vec<_>>().join("\n")
}

/// Waits (bounded) until every agent's graph holds `names`; fails with what each holds.
async fn until_all_have(agents: &[&Agent], names: &[&str]) {
    let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let mut missing = Vec::new();
        for (i, a) in agents.iter().enumerate() {
            let have = a.names().await;
            if !want.is_subset(&have) {
                missing.push(format!("agent {i} lacks {:?}", want.difference(&have).collect::<Vec<_>>()));
            }
        }
        if missing.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = agents.iter().map(|a| a.stderr()).collect();
            panic!("not converged: {}\nlogs:\n{}", missing.join("; "), logs.join("\n---\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `cairn peer token create --db DB --graph team --role ROLE --json`: the token.
fn peer_token(db: &Path, role: &str) -> String {
    let out =
        cairn(&["peer", "token", "create", "--db", db.to_str().unwrap(), "--graph", GRAPH, "--role", role, "--json"]);
    assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn cairn(args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    for var in CLEARED {
        c.env_remove(var);
    }
    c.args(args).stdin(Stdio::null()).output().unwrap()
}

/// A loopback port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Ten rounds of: an entity of `who`'s own, the shared entity "Plan", an observation on it.
async fn write_rounds(who: &str, agent: &Agent) {
    for n in 0..10 {
        agent.create(&[&format!("{who}-{n}"), "Plan"]).await;
        agent.observe("Plan", &[&format!("{who} step {n}")]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_one_listening_one_dialing_write_concurrently_and_converge() {
    let dir = tempfile::tempdir().unwrap();
    let (a_db, b_db) = (dir.path().join("a.db"), dir.path().join("b.db"));
    // Step 1: A creates a write token for its peers, and listens; B dials A with it.
    let token = peer_token(&a_db, "write");
    let a = agent(&a_db, "alice", &["--listen", "127.0.0.1:0"]).await;
    let url = a.url().await;
    let b = agent(&b_db, "bob", &["--peer", &url, "--peer-token", &token]).await;
    // Step 2: both write at once: entities of their own, the same entity created on both
    // sides, and observations on it.
    tokio::join!(write_rounds("alice", &a), write_rounds("bob", &b));
    // Step 3: both hold everything both wrote, the shared entity once with every observation.
    let mut all: Vec<String> = (0..10).flat_map(|n| [format!("alice-{n}"), format!("bob-{n}")]).collect();
    all.push("Plan".into());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    until_all_have(&[&a, &b], &all).await;
    let deadline = Instant::now() + CONVERGE;
    loop {
        let (ga, gb) = (a.graph().await, b.graph().await);
        let plan = ga.1.iter().filter(|(e, _)| e == "Plan").count();
        if ga == gb && plan == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "not converged: {plan} observations on Plan\n{ga:?}\n{gb:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Step 4: B's freshness names A, in step.
    let status = b.status().await;
    assert_eq!(status["peers"][0]["peer"], url.as_str(), "{status}");
    assert_eq!(status["freshness"]["state"], "synced", "{status}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_three_converges_with_the_middle_one_restarted_and_carries_changes_to_an_offline_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = |n: &str| dir.path().join(format!("{n}.db"));
    // Step 1: A <- B <- C: A listens, B listens and dials A (and a peer that is not there),
    // C dials B. Loopback only, so no tokens (--insecure-no-auth).
    let a = agent(&db("a"), "a", &["--listen", "127.0.0.1:0", "--insecure-no-auth"]).await;
    let a_url = a.url().await;
    let dead = format!("ws://127.0.0.1:{}", dead_port());
    let b_args = |listen: String| {
        vec![
            "--listen".to_owned(),
            listen,
            "--insecure-no-auth".into(),
            "--peer".into(),
            a_url.clone(),
            "--peer".into(),
            dead.clone(),
        ]
    };
    let args = b_args("127.0.0.1:0".into());
    let b = agent(&db("b"), "b", &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let b_url = b.url().await;
    let b_listen = b_url.trim_start_matches("ws://").to_owned();
    let c = agent(&db("c"), "c", &["--peer", &b_url]).await;
    a.create(&["one"]).await;
    c.create(&["three"]).await;
    until_all_have(&[&a, &b, &c], &["one", "three"]).await;
    // B's reads say which peer it is in step with and which it cannot reach.
    let read = b.call("read_graph", json!({})).await;
    let notice = text(&read);
    assert!(notice.contains(&format!("in step with {a_url}")), "{notice}");
    assert!(notice.contains(&format!("CANNOT REACH {dead}")), "{notice}");
    let status = b.status().await;
    // Listed in the order the two dials attached, which is a race: compared as a set.
    let mut states: Vec<(&str, &str)> = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["peer"].as_str().unwrap(), p["state"].as_str().unwrap()))
        .collect();
    states.sort();
    let mut expected = [(a_url.as_str(), "synced"), (dead.as_str(), "offline")];
    expected.sort();
    assert_eq!(states, expected, "{status}");
    // Step 2: C goes offline; A writes; B takes it in.
    c.stop().await;
    a.create(&["two"]).await;
    until_all_have(&[&a, &b], &["two"]).await;
    // Step 3: B restarts (killed, then started again on the same port); meanwhile A writes.
    b.stop().await;
    a.create(&["four"]).await;
    let args = b_args(b_listen);
    let b = agent(&db("b"), "b", &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    until_all_have(&[&a, &b], &["two", "four"]).await;
    // Step 4: C comes back and gets, through B alone, what A wrote while it was away.
    let c = agent(&db("c"), "c", &["--peer", &b_url]).await;
    until_all_have(&[&a, &b, &c], &["one", "two", "three", "four"]).await;
    let status = c.status().await;
    assert_eq!(status["peers"][0]["peer"], b_url.as_str(), "{status}");
    for x in [a, b, c] {
        x.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_a_token_is_refused_and_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a_db = dir.path().join("a.db");
    let _ = peer_token(&a_db, "write");
    let a = agent(&a_db, "alice", &["--listen", "127.0.0.1:0"]).await;
    a.create(&["Secret"]).await;
    let url = a.url().await;
    // Step 1: no token, and a made-up one: each is refused, says so, and gets nothing.
    for (name, extra) in [("nobody", vec![]), ("forger", vec!["--peer-token", "cairn_00000000_nope"])] {
        let mut args = vec!["--peer", url.as_str()];
        args.extend(extra);
        let m = agent(&dir.path().join(format!("{name}.db")), name, &args).await;
        m.create(&[&format!("{name}-was-here")]).await;
        let deadline = Instant::now() + CONVERGE;
        let status = loop {
            let status = m.status().await;
            if status["dialing"][0]["error"].as_str().is_some_and(|e| e.contains("refused the token")) {
                break status;
            }
            assert!(Instant::now() < deadline, "{name} was not refused: {status}\n{}", m.stderr());
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(status["peers"][0]["state"], "offline", "{status}");
        assert!(!m.names().await.contains("Secret"), "{name} read the graph");
        assert!(!a.names().await.contains(&format!("{name}-was-here")), "{name} wrote to the graph");
        m.stop().await;
    }
    a.stop().await;
    // Step 2: --insecure-no-auth is refused on an address other machines can reach.
    let out = cairn(&[
        "sync",
        "--watch",
        "--db",
        dir.path().join("open.db").to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
        "--insecure-no-auth",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--insecure-no-auth is for loopback only"), "{stderr}");
}

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_automerge_repo_client_reads_the_graph_from_a_listening_replica() {
    let dir = tempfile::tempdir().unwrap();
    let a_db = dir.path().join("a.db");
    let token = peer_token(&a_db, "read");
    let a = agent(&a_db, "alice", &["--listen", "127.0.0.1:0"]).await;
    a.create(&["Tea", "Cup"]).await;
    a.observe("Tea", &["green", "hot"]).await;
    let url = a.url().await;
    let script = js_dir().join("peer-read.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args([&url, &token, GRAPH])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run `node`: install Node.js and `npm install --prefix clients/js`")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "peer-read.mjs failed: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.stderr()
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["entities"]["Tea"]["type"], "note", "{seen}");
    let mut tea: Vec<&str> =
        seen["entities"]["Tea"]["observations"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    tea.sort();
    assert_eq!(tea, ["green", "hot"]);
    assert!(seen["entities"]["Cup"].is_object(), "{seen}");
    a.stop().await;
}
