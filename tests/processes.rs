//! Real OS processes on one file: concurrent writers lose nothing and see each other, writers
//! killed with SIGKILL mid-burst never lose a write whose call returned, and two processes under
//! one agent name still write under distinct actors.
//!
//! This binary has no libtest harness: run without arguments it runs each scenario; run as
//! `processes worker ...` it is one of the writer processes the scenarios spawn.

#![allow(clippy::print_stdout)] // its report goes to stdout

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn spawn_worker(args: &[&str]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("__worker")
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

/// `conditional <db> <agent> <count>`: reads the version, then writes to `Counter` only if
/// nothing touched it since; prints `ok <expected seq> <written seq>` or `conflict` each time.
fn conditional_worker(args: &[String]) {
    let (db, agent, count) = (Path::new(&args[0]), &args[1], args[2].parse::<usize>().unwrap());
    let replica = open(db.parent().unwrap(), db.file_name().unwrap().to_str().unwrap(), agent);
    let mut out = std::io::stdout().lock();
    // Start together, so that the two writers really race.
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    std::io::stdin().read_line(&mut String::new()).unwrap();
    for i in 0..count {
        let seen = replica.status().unwrap().version;
        // Widen the window between reading and writing, where the other writer may slip in.
        std::thread::sleep(Duration::from_micros(300));
        match replica.write_if(&[observe("Counter", &format!("{agent}-{i}"))], seen, &["Counter".into()]) {
            Ok(receipt) => writeln!(out, "ok {} {}", seen.seq(), receipt.version.seq()).unwrap(),
            Err(cairn::Error::Conflict { .. }) => writeln!(out, "conflict").unwrap(),
            Err(e) => panic!("{e}"),
        }
    }
}

fn conditional_writes_are_atomic_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    open(dir.path(), "shared.db", "setup").write(&[entity("Counter", "counter", &[])]).unwrap();
    let mut children: Vec<Child> = ["left", "right"]
        .iter()
        .map(|agent| {
            Command::new(std::env::current_exe().unwrap())
                .args(["__conditional", db.to_str().unwrap(), agent, "150"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<_> = children.iter_mut().map(|c| BufReader::new(c.stdout.take().unwrap())).collect();
    for out in &mut outputs {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
    }
    for c in &mut children {
        writeln!(c.stdin.as_mut().unwrap(), "go").unwrap();
    }
    let mut successes = Vec::new();
    let mut conflicts = 0;
    for (mut child, mut out) in children.into_iter().zip(outputs) {
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut out, &mut stdout).unwrap();
        let status = child.wait().unwrap();
        let out = std::process::Output { status, stdout: stdout.into_bytes(), stderr: Vec::new() };
        assert!(out.status.success());
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[..] {
                ["ok", expected, written] => {
                    successes.push((written.parse::<i64>().unwrap(), expected.parse::<i64>().unwrap()))
                }
                ["conflict"] => conflicts += 1,
                _ => panic!("unexpected line {line:?}"),
            }
        }
    }
    // Every success was based on a version that already included the success before it: no
    // two writers both passed the check on the same stale version.
    successes.sort();
    for pair in successes.windows(2) {
        let ((previous_written, _), (_, expected)) = (pair[0], pair[1]);
        assert!(expected >= previous_written, "a conditional write passed on a stale version: {pair:?}");
    }
    let g = open(dir.path(), "shared.db", "checker").read_graph().unwrap().data;
    assert_eq!(texts(&g, "Counter").len(), successes.len(), "exactly the accepted writes landed");
    assert_eq!(successes.len() + conflicts, 300);
}

fn unseen_changes_cross_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let reader = open(dir.path(), "shared.db", "reader");
    reader.write(&[entity("Hub", "counter", &[])]).unwrap();
    reader.read_graph().unwrap();
    let mut child = spawn_worker(&[db.to_str().unwrap(), "writer", "w", "4"]);
    assert!(child.wait().unwrap().success());
    let read = reader.read_graph().unwrap();
    assert_eq!(read.unseen.agents, ["writer"]);
    assert_eq!(read.unseen.entities, ["Hub", "w-0", "w-2"]);
    assert!(reader.read_graph().unwrap().unseen.is_empty());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__worker") {
        return worker(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("__conditional") {
        return conditional_worker(&args[1..]);
    }
    // libtest-style filtering: `cargo test --test processes -- <substring>`.
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
    let scenarios: [(&str, fn()); 5] = [
        ("four_processes_lose_nothing_and_see_each_other", four_processes_lose_nothing_and_see_each_other),
        ("same_agent_in_two_processes_still_merges", same_agent_in_two_processes_still_merges),
        ("killed_writers_never_lose_an_acknowledged_write", killed_writers_never_lose_an_acknowledged_write),
        ("conditional_writes_are_atomic_across_processes", conditional_writes_are_atomic_across_processes),
        ("unseen_changes_cross_processes", unseen_changes_cross_processes),
    ];
    for (name, scenario) in scenarios.iter().filter(|(n, _)| n.contains(&filter)) {
        let start = Instant::now();
        scenario();
        println!("test {name} ... ok ({:.1}s)", start.elapsed().as_secs_f64());
    }
}
