//! Facts that change over time, on a seeded workload. Prints a table; record it in BENCHMARKS.md.
//!
//!     cargo bench --bench temporal              # 100k entities, 10 versions of each fact
//!     cargo bench --bench temporal -- --quick   # 10k entities
//!
//! Figures: building the graph (each entity's fact superseded nine times), search latency for the
//! current facts, as of a world time and with every fact, on a rare term (one entity) and a
//! common one (every entity), and the history of one entity with 1,000 changes.

#![allow(clippy::print_stdout)] // its report goes to stdout

use std::time::{Duration, Instant};

use cairn::{Durability, Op, OpenOptions, ReadOptions, Replica, Validity};

const YEAR: i64 = 31_536_000_000;
const START: i64 = 1_262_304_000_000; // 2010-01-01
const VERSIONS: i64 = 10;
const BATCH: u64 = 2_000;

fn role(i: u64, v: i64) -> String {
    format!("e{i} holds role number r{v}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Median and 99th percentile of `runs` calls of `f` (given the run number).
fn latencies(runs: u64, mut f: impl FnMut(u64)) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 10_000 } else { 100_000 };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = OpenOptions::new("bench".parse().expect("a valid agent")).durability(Durability::Normal);
    let replica = Replica::open_with(dir.path().join("t.db"), options).expect("a replica");

    // Step 1: n entities, each with a fact valid from 2010, then superseded once a year.
    let built = Instant::now();
    for start in (0..n).step_by(BATCH as usize) {
        let ops: Vec<Op> = (start..(start + BATCH).min(n))
            .flat_map(|i| {
                [
                    Op::create_entity(format!("e{i}"), "thing", &[]),
                    Op::AddObservation {
                        entity: format!("e{i}"),
                        text: role(i, 0),
                        validity: Validity { valid_from: Some(START), valid_to: None },
                    },
                ]
            })
            .collect();
        replica.write(&ops).expect("the first version");
    }
    for v in 1..VERSIONS {
        for start in (0..n).step_by(BATCH as usize) {
            let ops: Vec<Op> = (start..(start + BATCH).min(n))
                .map(|i| Op::supersede_observation(format!("e{i}"), role(i, v - 1), role(i, v), Some(START + v * YEAR)))
                .collect();
            replica.write(&ops).expect("a supersede");
        }
    }
    let built = built.elapsed();
    println!("temporal, {n} entities x {VERSIONS} versions of one fact: built in {:.1} s", built.as_secs_f64());

    let now = ReadOptions::default();
    let mid = ReadOptions { as_of: Some(START + 4 * YEAR + YEAR / 2), ..ReadOptions::default() };
    let all = ReadOptions { include_superseded: true, ..ReadOptions::default() };
    println!("| search | term | median | p99 |");
    println!("|---|---|---|---|");
    for (label, options) in [("current", now), ("as of a world time", mid), ("every fact", all)] {
        let (p50, p99) = latencies(200, |i| {
            let query = format!("e{}", (i * 7919) % n);
            let found = replica.search_with(&query, 10, &options).expect("a search");
            assert!(!found.data.entities.is_empty());
        });
        println!("| {label} | rare (one entity) | {} | {} |", ms(p50), ms(p99));
        let (p50, p99) = latencies(50, |_| {
            let found = replica.search_with("role number", 200, &options).expect("a search");
            assert_eq!(found.data.entities.len(), 200);
        });
        println!("| {label} | common (every entity), 200 results | {} | {} |", ms(p50), ms(p99));
    }

    // Step 2: one entity changed 1,000 times, one write each.
    replica.write(&[Op::create_entity("busy", "thing", &["state 0"])]).expect("busy");
    for v in 1..=999 {
        let op = Op::supersede_observation("busy", format!("state {}", v - 1), format!("state {v}"), None);
        replica.write(&[op]).expect("a change");
    }
    let (p50, p99) = latencies(50, |_| {
        let history = replica.history("busy").expect("history");
        assert!(history.data.len() >= 1_000);
    });
    println!("| history of an entity with 1,000 changes | | {} | {} |", ms(p50), ms(p99));
}
