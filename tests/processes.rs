//! Real OS processes on one file: concurrent writers lose nothing and see each other, writers
//! killed with SIGKILL mid-burst never lose a write whose call returned, and two processes under
//! one agent name still write under distinct actors.
//!
//! This binary has no libtest harness: run without arguments it runs each scenario; run as
//! `processes worker ...` it is one of the writer processes the scenarios spawn.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn spawn_worker(args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("worker")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// `worker <db> <agent> <prefix> <count> [wait]`: writes `count` times, printing `ok <i>` after
/// each write returns; with `wait`, then waits for a line on stdin and prints what it sees.
fn worker(args: &[String]) {
    let (db, agent, prefix, count) = (&args[0], &args[1], &args[2], args[3].parse::<usize>().unwrap());
    let dir = Path::new(db).parent().unwrap();
    let file = Path::new(db).file_name().unwrap().to_str().unwrap();
    let replica = open(dir, file, agent);
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let op = if i % 2 == 0 {
            entity(&format!("{prefix}-{i}"), "item", &["made"])
        } else {
            observe("Hub", &format!("{prefix}-{i}"))
        };
        replica.write(&[op]).unwrap();
        writeln!(out, "ok {i}").unwrap();
        out.flush().unwrap();
    }
    if args.get(4).map(String::as_str) == Some("wait") {
        writeln!(out, "done").unwrap();
        out.flush().unwrap();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        let g = replica.read_graph().unwrap().data;
        writeln!(out, "seen {} {}", g.entities.len(), texts(&g, "Hub").len()).unwrap();
    }
}

fn four_processes_lose_nothing_and_see_each_other() {
    const PROCS: usize = 4;
    const WRITES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    open(dir.path(), "shared.db", "setup").write(&[entity("Hub", "counter", &[])]).unwrap();
    let db = db.to_str().unwrap();
    // Two of the four share an agent name: they must still write under distinct actors.
    let agents = ["p0", "p1", "twin", "twin"];
    let mut children: Vec<Child> =
        (0..PROCS).map(|p| spawn_worker(&[db, agents[p], &format!("p{p}"), &WRITES.to_string(), "wait"])).collect();
    let mut readers: Vec<_> = children.iter_mut().map(|c| BufReader::new(c.stdout.take().unwrap())).collect();
    for r in &mut readers {
        let mut line = String::new();
        while line.trim() != "done" {
            line.clear();
            assert!(r.read_line(&mut line).unwrap() > 0, "a worker exited early");
        }
    }
    // Every worker has finished writing; now each reads and reports what it sees.
    for c in &mut children {
        writeln!(c.stdin.as_mut().unwrap(), "go").unwrap();
    }
    let expect = format!("seen {} {}", 1 + PROCS * WRITES / 2, PROCS * WRITES / 2);
    for (r, c) in readers.iter_mut().zip(&mut children) {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), expect, "each process ends seeing every write");
        assert!(c.wait().unwrap().success());
    }
    let g = open(dir.path(), "shared.db", "checker").read_graph().unwrap().data;
    assert_eq!(g.entities.len(), 1 + PROCS * WRITES / 2);
    assert_eq!(texts(&g, "Hub").len(), PROCS * WRITES / 2);
}

fn same_agent_in_two_processes_still_merges() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["a.db", "b.db"] {
        open(dir.path(), f, "setup").write(&[entity("Hub", "counter", &[])]).unwrap();
    }
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let mut children = [
        spawn_worker(&[a.to_str().unwrap(), "twin", "a", "60"]),
        spawn_worker(&[b.to_str().unwrap(), "twin", "b", "60"]),
    ];
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let ra = open(dir.path(), "a.db", "checker");
    let rb = open(dir.path(), "b.db", "checker");
    merge(&ra, &rb);
    let (ga, gb) = (ra.read_graph().unwrap().data, rb.read_graph().unwrap().data);
    assert_eq!(shape(&ga), shape(&gb));
    assert_eq!(ga.entities.len(), 1 + 60);
    assert_eq!(texts(&ga, "Hub").len(), 60);
    // Both files still load from scratch after the merge.
    drop((ra, rb));
    assert_eq!(open(dir.path(), "a.db", "x").read_graph().unwrap().data.entities.len(), 61);
}

fn killed_writers_never_lose_an_acknowledged_write() {
    const ROUNDS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    open(dir.path(), "crash.db", "setup").write(&[entity("Hub", "counter", &[])]).unwrap();
    let mut acked_total = Vec::new();
    // A fixed linear congruential sequence picks when to kill, so failures reproduce.
    let mut rng: u64 = 0x5eed;
    for round in 0..ROUNDS {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let kill_after = 5 + (rng >> 33) % 60;
        let prefix = format!("r{round}");
        let mut child = spawn_worker(&[db.to_str().unwrap(), "crasher", &prefix, "1000"]);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut acked = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut line = String::new();
        while acked < kill_after && Instant::now() < deadline {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            acked += 1;
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // Anything the worker printed before dying was also acknowledged.
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        acked += rest.lines().filter(|l| l.starts_with("ok ")).count() as u64;
        let replica = open(dir.path(), "crash.db", "checker");
        let g = replica.read_graph().unwrap().data;
        let hub = texts(&g, "Hub");
        for i in 0..acked {
            let present = if i % 2 == 0 {
                g.entities.iter().any(|e| e.name == format!("{prefix}-{i}"))
            } else {
                hub.contains(&format!("{prefix}-{i}").as_str())
            };
            assert!(present, "round {round}: acknowledged write {i} is missing after SIGKILL");
        }
        acked_total.push(acked);
    }
    assert!(acked_total.iter().all(|&a| a >= 5), "every round acknowledged writes before the kill: {acked_total:?}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return worker(&args[1..]);
    }
    // libtest-style filtering: `cargo test --test processes -- <substring>`.
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
    let scenarios: [(&str, fn()); 3] = [
        ("four_processes_lose_nothing_and_see_each_other", four_processes_lose_nothing_and_see_each_other),
        ("same_agent_in_two_processes_still_merges", same_agent_in_two_processes_still_merges),
        ("killed_writers_never_lose_an_acknowledged_write", killed_writers_never_lose_an_acknowledged_write),
    ];
    for (name, scenario) in scenarios.iter().filter(|(n, _)| n.contains(&filter)) {
        let start = Instant::now();
        scenario();
        println!("test {name} ... ok ({:.1}s)", start.elapsed().as_secs_f64());
    }
}
