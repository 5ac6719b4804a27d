//! Discovery with mDNS/DNS-SD (`--discover`) between two real `cairn mcp` processes on
//! loopback: each announces its listen port and graph, finds the other, dials it, and what one
//! writes reaches the other with no `--peer` given.
//!
//! mDNS needs multicast on the loopback interface, which Linux leaves off (`lo` has no MULTICAST
//! flag by default). Without it, the story runs itself again in a network namespace of its own
//! with multicast on loopback when it can (root, `unshare` and `ip` present: as CI runs); else
//! it prints that it skipped and why.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ClientConfig>;

/// Set in the re-run inside a network namespace.
const IN_NAMESPACE: &str = "CAIRN_TEST_IN_NETNS";
const IFF_MULTICAST: u32 = 0x1000;

/// Why loopback has no multicast here, if it has none.
fn no_loopback_multicast() -> Option<String> {
    let flags = match std::fs::read_to_string("/sys/class/net/lo/flags") {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot read the loopback interface's flags ({e})")),
    };
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    (flags & IFF_MULTICAST == 0).then(|| "the loopback interface has no MULTICAST flag".to_owned())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

async fn agent(db: &Path, name: &str) -> Client {
    let log = std::fs::File::create(db.with_extension("log")).unwrap();
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
        for var in ["CAIRN_AGENT", "CAIRN_RELAY", "CAIRN_PEERS", "CAIRN_LISTEN", "CAIRN_PEER_TOKEN", "MEMORY_FILE_PATH"]
        {
            c.env_remove(var);
        }
        c.args(["mcp", "--db", db.to_str().unwrap(), "--graph", "team", "--agent", name]);
        c.args(["--listen", "127.0.0.1:0", "--insecure-no-auth", "--discover"]);
        c.env("CAIRN_LOG", "info");
    });
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::from(log)).spawn().unwrap();
    ClientConfig::new(ClientCapabilities::default(), Implementation::new(name, "1.0")).serve(transport).await.unwrap()
}

async fn call(c: &Client, tool: &str, args: Value) -> Value {
    let Value::Object(args) = args else { panic!("arguments must be an object") };
    let r = c.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
    r.structured_content.unwrap_or(Value::Null)
}

async fn discovery_story() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(&dir.path().join("a.db"), "a").await;
    let b = agent(&dir.path().join("b.db"), "b").await;
    call(&a, "create_entities", json!({"entities": [{"name": "FoundYou", "entityType": "note", "observations": []}]}))
        .await;
    let a_url = call(&a, "memory_status", json!({})).await["listening"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let graph = call(&b, "read_graph", json!({})).await;
        let names: Vec<&str> =
            graph["entities"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
        if names.contains(&"FoundYou") {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = ["a", "b"]
                .iter()
                .map(|n| std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default())
                .collect();
            panic!("b never found a: {graph}\nlogs:\n{}", logs.join("\n---\n"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // B reached A by what it discovered: A's address is among the peers B syncs with.
    let status = call(&b, "memory_status", json!({})).await;
    let peers: Vec<&str> = status["peers"].as_array().unwrap().iter().filter_map(|p| p["peer"].as_str()).collect();
    assert!(peers.contains(&a_url.as_str()), "b's peers {peers:?} do not include a ({a_url})");
    let _ = a.cancel().await;
    let _ = b.cancel().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_find_each_other_with_mdns_on_loopback_and_sync() {
    // In the re-run, `ip link set lo multicast on` has succeeded (the shell runs this only
    // then); /sys still shows the outer namespace's interfaces, so it is not asked again.
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return discovery_story().await;
    }
    let Some(why) = no_loopback_multicast() else {
        return discovery_story().await;
    };
    let tools = ["unshare", "ip"].iter().all(|t| Command::new(t).arg("-V").output().is_ok());
    if !(is_root() && tools) {
        eprintln!(
            "SKIPPED two_processes_find_each_other_with_mdns_on_loopback_and_sync: {why}, and without root, \
                  `unshare` and `ip` this test cannot make a network namespace that has it (run `ip link set lo multicast on`)"
        );
        return;
    }
    // Run this test again in a network namespace of its own, where loopback is up with
    // multicast on: nothing outside the namespace changes.
    eprintln!("{why}: running the story in a network namespace of its own with multicast on loopback");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", "ip link set lo up && ip link set lo multicast on && exec \"$0\" \"$@\""])
        .arg(exe)
        .args(["two_processes_find_each_other_with_mdns_on_loopback_and_sync", "--exact", "--nocapture"])
        .env(IN_NAMESPACE, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        eprintln!(
            "SKIPPED two_processes_find_each_other_with_mdns_on_loopback_and_sync: {why}, and `unshare --net` is \
                  not allowed here ({})",
            stderr.trim()
        );
        return;
    }
    assert!(out.status.success(), "the story failed in its network namespace:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the story did not run in its network namespace:\n{stdout}");
}
