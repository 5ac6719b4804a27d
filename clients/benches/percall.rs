//! The cost of one memory call by each way in, side by side in one run on graphs of the same
//! size: the Rust API (`Replica::write`, `search`, `open_nodes`), the JSON tools layer
//! (`cairn_tools::call`, what `cairn mcp` and Python both run), the Python package (blocking
//! and async, `clients/python/bench.py percall`), and `cairn mcp` over stdio. Every side gets a
//! file of its own seeded with the same entities, at the default (full) durability.
//!
//!     maturin develop --release -m clients/python/Cargo.toml   # in a venv: a release build
//!     CAIRN_PYTHON=.venv/bin/python cargo bench -p cairn-cli --bench percall
//!
//! CAIRN_PYTHON is the interpreter with `cairn` installed (default `.venv/bin/python` at the
//! root of the checkout); a debug build of the package measures the debug build, so install a
//! release one. Prints a table; record it in BENCHMARKS.md.

#![allow(clippy::print_stdout)] // its report goes to stdout

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use cairn::{Op, Replica};
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt, service::RunningService};
use serde_json::{Value, json};

/// Entities in every side's graph before the timed calls; each has one observation holding one
/// of `WORDS` words, so a search matches about `ENTITIES / WORDS` of them.
const ENTITIES: usize = 5_000;
const WORDS: usize = 97;
/// Timed calls of each kind, per side.
const CALLS: usize = 300;
const OPS: [&str; 4] = ["create", "observe", "search", "open"];

/// Samples in microseconds by operation.
type Samples = BTreeMap<String, Vec<f64>>;

fn seed(path: &Path) -> Replica {
    let replica = Replica::open(path, "bench").unwrap();
    for start in (0..ENTITIES).step_by(500) {
        let ops: Vec<Op> = (start..start + 500)
            .map(|k| Op::create_entity(format!("seed-{k}"), "seed", &[&format!("word{} text", k % WORDS)]))
            .collect();
        replica.write(&ops).unwrap();
    }
    replica
}

/// What call `j` of operation `op` names: the entity it creates, adds to or opens, or the query;
/// every side makes the same calls in the same order.
fn target(op: &str, j: usize) -> String {
    match op {
        "create" => format!("new-{j}"),
        "observe" => format!("seed-{}", (j * 7919) % ENTITIES),
        "search" => format!("word{}", j % WORDS),
        _ => format!("seed-{}", (j * 104_729) % ENTITIES),
    }
}

/// The arguments of call `j` of operation `op`, in the reference server's shapes.
fn args(op: &str, j: usize) -> Value {
    let target = target(op, j);
    match op {
        "create" => json!({"entities": [{"name": target, "entityType": "bench", "observations": ["fresh"]}]}),
        "observe" => json!({"observations": [{"entityName": target, "contents": [format!("note {j}")]}]}),
        "search" => json!({"query": target}),
        _ => json!({"names": [target]}),
    }
}

fn tool(op: &str) -> &'static str {
    match op {
        "create" => "create_entities",
        "observe" => "add_observations",
        "search" => "search_nodes",
        _ => "open_nodes",
    }
}

fn timed(samples: &mut Samples, op: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    samples.entry(op.to_owned()).or_default().push(t.elapsed().as_secs_f64() * 1e6);
}

fn rust_api(dir: &Path) -> Samples {
    let replica = seed(&dir.join("rust.db"));
    let mut s = Samples::new();
    for op in OPS {
        for j in 0..CALLS {
            let target = target(op, j);
            timed(&mut s, op, || match op {
                "create" => drop(replica.write(&[Op::create_entity(target, "bench", &["fresh"])]).unwrap()),
                "observe" => drop(replica.write(&[Op::add_observation(target, format!("note {j}"))]).unwrap()),
                "search" => drop(replica.search(&target).unwrap()),
                _ => drop(replica.open_nodes(&[target]).unwrap()),
            });
        }
    }
    s
}

fn tools_layer(dir: &Path) -> Samples {
    let replica = seed(&dir.join("tools.db"));
    let mut s = Samples::new();
    for op in OPS {
        for j in 0..CALLS {
            let Value::Object(a) = args(op, j) else { unreachable!("args builds objects") };
            timed(&mut s, op, || {
                // The reply holds its value already rendered as the JSON text MCP sends.
                drop(cairn_tools::call(&replica, tool(op), a).unwrap());
            });
        }
    }
    s
}

async fn mcp(dir: &Path) -> Samples {
    let db = dir.join("mcp.db");
    drop(seed(&db));
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn")).configure(|c| {
        c.args(["mcp", "--db", db.to_str().unwrap(), "--agent", "bench"]);
    });
    let (transport, _) = TokioChildProcess::builder(cmd).stderr(Stdio::null()).spawn().unwrap();
    let client: RunningService<RoleClient, ClientConfig> =
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("cairn-bench", "1"))
            .serve(transport)
            .await
            .unwrap();
    let mut s = Samples::new();
    for op in OPS {
        for j in 0..CALLS {
            let Value::Object(a) = args(op, j) else { unreachable!("args builds objects") };
            let t = Instant::now();
            let r = client.call_tool(CallToolRequestParams::new(tool(op)).with_arguments(a)).await.unwrap();
            s.entry(op.to_owned()).or_default().push(t.elapsed().as_secs_f64() * 1e6);
            assert_ne!(r.is_error, Some(true), "{op} failed: {:?}", r.content);
        }
    }
    client.cancel().await.unwrap();
    s
}

fn python_bin() -> PathBuf {
    std::env::var_os("CAIRN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

/// Runs `bench.py percall` on a seeded file: `{"sync": Samples, "async": Samples}`.
fn python(dir: &Path) -> BTreeMap<String, Samples> {
    let db = dir.join("python.db");
    drop(seed(&db));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/bench.py");
    let python = python_bin();
    let out = std::process::Command::new(&python)
        .arg(script)
        .args(["percall", "--db", db.to_str().unwrap(), "--calls", &CALLS.to_string()])
        .args(["--entities", &ENTITIES.to_string(), "--words", &WORDS.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (set CAIRN_PYTHON)", python.display()));
    assert!(
        out.status.success(),
        "bench.py percall failed with {} (is `cairn` installed for {}?)",
        out.status,
        python.display()
    );
    serde_json::from_slice(&out.stdout).expect("bench.py percall prints its samples as JSON")
}

fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut sides: Vec<(&str, Samples)> =
        vec![("Rust API", rust_api(dir.path())), ("tools layer (JSON)", tools_layer(dir.path()))];
    let mut py = python(dir.path());
    sides.push(("Python, blocking", py.remove("sync").expect("bench.py reports sync")));
    sides.push(("Python, async", py.remove("async").expect("bench.py reports async")));
    sides.push(("cairn mcp (stdio)", mcp(dir.path()).await));

    println!(
        "per-call latency in µs, p50 / p99, {CALLS} calls of each, graph of {ENTITIES} entities, durability full\n"
    );
    print!("| way in |");
    for op in OPS {
        print!(" {op} |");
    }
    println!("\n|---|{}", "---:|".repeat(OPS.len()));
    for (name, s) in &sides {
        print!("| {name} |");
        for op in OPS {
            let v = &s[op];
            print!(" {:.0} / {:.0} |", quantile(v, 0.5), quantile(v, 0.99));
        }
        println!();
    }
    let base = &sides[0].1;
    println!("\np50 over the Rust API's p50:");
    for (name, s) in &sides[1..] {
        let r: Vec<String> =
            OPS.iter().map(|op| format!("{op} {:.2}x", quantile(&s[*op], 0.5) / quantile(&base[*op], 0.5))).collect();
        println!("  {name}: {}", r.join(", "));
    }
}
