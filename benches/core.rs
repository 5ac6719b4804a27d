//! Core benchmarks on seeded workloads. Prints a table; record it in BENCHMARKS.md.
//!
//!     cargo bench --bench core                 # everything (1k, 10k, 100k entities)
//!     cargo bench --bench core -- --quick      # 1k and 10k only
//!     cargo bench --bench core -- fill g.db 100000   # only build the seeded graph (to profile)
//!     cargo bench --bench core -- writes g.db 100000 # single durable writes on that graph, beside
//!                                                    # the floor (it adds to g.db: use a copy;
//!                                                    # after N, `normal`: without the fsync;
//!                                                    # `warm`: the graph loaded first;
//!                                                    # `bursts`: then 20 bursts of 100)
//!
//! Figures: durable single-write latency (new entity; observation on a random existing entity)
//! at three graph sizes, batch import throughput, cold open time and resident memory, search
//! latency, and the merge of two replicas that each wrote 1k changes offline.

#![allow(clippy::print_stdout)] // its report goes to stdout

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn::{Durability, Op, OpenOptions, Replica};

/// A small deterministic generator (PCG-style LCG), so every run writes the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A 5,000-word vocabulary of pronounceable pseudo-words, drawn with a skew so that a few words
/// are common and most are rare, as in real notes.
const VOCABULARY: u64 = 5_000;
const SYLLABLES: &[&str] =
    &["ka", "ri", "mo", "te", "lu", "sen", "dra", "pol", "vi", "na", "qua", "zet", "bo", "chi", "fer", "gal"];

fn word(n: u64) -> String {
    let mut w = String::new();
    let mut n = n + 16;
    while n > 0 {
        w.push_str(SYLLABLES[(n % 16) as usize]);
        n /= 16;
    }
    w
}

fn skewed_word(rng: &mut Rng) -> String {
    let r = rng.below(VOCABULARY);
    word(rng.below(r + 1))
}

fn sentence(rng: &mut Rng, i: u64) -> String {
    format!("{} {} {} {} note {i}", skewed_word(rng), skewed_word(rng), skewed_word(rng), skewed_word(rng))
}

fn open(path: &Path, agent: &str, durability: Durability) -> Replica {
    Replica::open_with(path, OpenOptions::new(agent.parse().unwrap()).durability(durability)).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The floor under a durable write on this disk: one small row committed alone to a SQLite
/// file in WAL mode with `synchronous=FULL` (what Cairn sets), p50 and p99 of 2,000.
fn floor(dir: &Path) -> (Duration, Duration) {
    let path = dir.join("floor.db");
    let _ = std::fs::remove_file(&path);
    let db = rusqlite::Connection::open(&path).unwrap();
    db.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).unwrap();
    db.pragma_update(None, "synchronous", "FULL").unwrap();
    db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)").unwrap();
    let out = latencies(
        |i| {
            db.execute_batch("BEGIN").unwrap();
            db.execute("INSERT INTO t (v) VALUES (?1)", [format!("a small row {i}")]).unwrap();
            db.execute_batch("COMMIT").unwrap();
        },
        2_000,
    );
    drop(db);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    out
}

fn floor_line(dir: &Path) -> String {
    let (p50, p99) = floor(dir);
    format!("floor: one small row, WAL, synchronous=FULL, p50 {} p99 {}", ms(p50), ms(p99))
}

/// Single durable writes (1,000 new entities, then 1,000 observations on random existing
/// entities), each its own transaction, as a table row.
fn write_latencies(replica: &Replica, n: u64, rng: &mut Rng, tag: &str) -> String {
    let (new_p50, new_p99) = latencies(
        |i| {
            replica.write(&[Op::create_entity(format!("new-{tag}{i}"), "person", &["fresh"])]).unwrap();
        },
        1_000,
    );
    let (obs_p50, obs_p99) = latencies(
        |i| {
            let e = format!("entity-{}", rng.below(n));
            replica.write(&[Op::add_observation(e, format!("added {tag}{i}"))]).unwrap();
        },
        1_000,
    );
    format!(
        "new entity p50 {} p99 {} | observation on existing p50 {} p99 {}",
        ms(new_p50),
        ms(new_p99),
        ms(obs_p50),
        ms(obs_p99)
    )
}

/// Fills a replica with `n` entities (2 observations each, a relation every other one) in
/// batches; returns facts per second.
fn fill(replica: &Replica, n: u64, rng: &mut Rng) -> f64 {
    const BATCH: u64 = 5_000;
    let start = Instant::now();
    let mut facts = 0u64;
    let mut i = 0;
    while i < n {
        let mut ops = Vec::new();
        for j in i..(i + BATCH).min(n) {
            ops.push(Op::create_entity(
                format!("entity-{j}"),
                ["person", "project", "document"][(j % 3) as usize],
                &[&sentence(rng, j), &sentence(rng, j + 1)],
            ));
            facts += 3;
            if j % 2 == 1 {
                ops.push(Op::create_relation(format!("entity-{j}"), "relates_to", format!("entity-{}", j - 1)));
                facts += 1;
            }
        }
        replica.write(&ops).unwrap();
        i += BATCH;
    }
    facts as f64 / start.elapsed().as_secs_f64()
}

fn latencies(mut f: impl FnMut(u64), n: u64) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        f(i);
        samples.push(t.elapsed());
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Run in a fresh process: cold open, first read, first write, then memory with every shard loaded.
fn cold_open(path: &str, n: u64) {
    let t = Instant::now();
    let replica = open(Path::new(path), "bench", Durability::Full);
    let opened = t.elapsed();
    let status = replica.status().unwrap();
    let t = Instant::now();
    replica.write(&[Op::add_observation("entity-7", "cold write")]).unwrap();
    let first_write = t.elapsed();
    let (rss_open, _) = rss_kib();
    let mut rng = Rng(99);
    for i in 0..2_000 {
        let e = format!("entity-{}", rng.below(n));
        replica.write(&[Op::add_observation(e, format!("warm {i}"))]).unwrap();
    }
    let (rss_loaded, hwm) = rss_kib();
    println!(
        "open {} | first write (loads a shard) {} | RSS after open {} MiB, all shards loaded {} MiB (peak {} MiB) | {} entities, db {} MiB",
        ms(opened),
        ms(first_write),
        rss_open / 1024,
        rss_loaded / 1024,
        hwm / 1024,
        status.entities,
        status.database_bytes / (1 << 20)
    );
}

/// Search latencies, as a table row. Queries are drawn like the data: an entity's name, one word,
/// two words (words are skewed as in the observations, so common words are queried often); and
/// the worst case, a word in every entity's observations.
fn search_latencies(replica: &Replica, n: u64) -> String {
    let mut qrng = Rng(7);
    let (name_p50, name_p99) =
        latencies(|_| drop(replica.search_limit(&format!("entity-{}", qrng.below(n)), 20).unwrap()), 300);
    let (word_p50, word_p99) = latencies(|_| drop(replica.search_limit(&skewed_word(&mut qrng), 20).unwrap()), 300);
    let (two_p50, two_p99) = latencies(
        |_| {
            let q = format!("{} {}", skewed_word(&mut qrng), skewed_word(&mut qrng));
            replica.search_limit(&q, 20).unwrap();
        },
        300,
    );
    // An infix that starts no word: the substring fallback.
    let (infix_p50, infix_p99) = latencies(
        |_| {
            let w = skewed_word(&mut qrng);
            let inner: String = w.chars().skip(1).take(4).collect();
            replica.search_limit(&inner, 20).unwrap();
        },
        100,
    );
    let (common_p50, _) = latencies(|_| drop(replica.search_limit("note", 20).unwrap()), 20);
    // Two characters found nowhere: a scan of every search row, folding case (the worst case).
    let (short_p50, _) = latencies(|_| drop(replica.search_limit("Zé", 20).unwrap()), 20);
    format!(
        "search: a name p50 {} p99 {} | one word p50 {} p99 {} | two words p50 {} p99 {} | infix p50 {} p99 {} | a word in every entity p50 {} | two characters found nowhere p50 {}",
        ms(name_p50),
        ms(name_p99),
        ms(word_p50),
        ms(word_p99),
        ms(two_p50),
        ms(two_p99),
        ms(infix_p50),
        ms(infix_p99),
        ms(common_p50),
        ms(short_p50)
    )
}

/// The 300 two-word queries of [`search_latencies`], drawn as it draws them (after its 300 name
/// and 300 one-word queries), for the modes that look at them one by one.
fn two_word_queries(n: u64) -> Vec<String> {
    let mut qrng = Rng(7);
    for _ in 0..300 {
        qrng.below(n);
    }
    for _ in 0..300 {
        skewed_word(&mut qrng);
    }
    (0..300).map(|_| format!("{} {}", skewed_word(&mut qrng), skewed_word(&mut qrng))).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("cold-open") {
        return cold_open(&args[2], args[3].parse().unwrap());
    }
    // `fill PATH N`: just build the seeded graph, to profile queries against it.
    if args.get(1).map(String::as_str) == Some("fill") {
        let n = args[3].parse().unwrap();
        let replica = open(Path::new(&args[2]), "bench", Durability::Normal);
        println!("{:.0} facts/s", fill(&replica, n, &mut Rng(n)));
        return;
    }
    // `slowest PATH N`: the ten slowest two-word queries of the search figures, to profile.
    if args.get(1).map(String::as_str) == Some("slowest") {
        let n: u64 = args[3].parse().unwrap();
        let replica = open(Path::new(&args[2]), "bench", Durability::Normal);
        let mut timed: Vec<(Duration, String, usize)> = two_word_queries(n)
            .into_iter()
            .map(|q| {
                let t = Instant::now();
                let found = replica.search_limit(&q, 20).unwrap().data.entities.len();
                (t.elapsed(), q, found)
            })
            .collect();
        timed.sort();
        for (d, q, found) in timed.iter().rev().take(10) {
            println!("{} {q:?} ({found} found)", ms(*d));
        }
        return;
    }
    // `results PATH N`: the two-word queries of the search figures and what each finds, in
    // order: to show that a change to search finds the same (compare two builds' outputs).
    if args.get(1).map(String::as_str) == Some("results") {
        let n: u64 = args[3].parse().unwrap();
        let replica = open(Path::new(&args[2]), "bench", Durability::Normal);
        for q in two_word_queries(n) {
            let found = replica.search_limit(&q, 20).unwrap().data;
            let names: Vec<&str> = found.entities.iter().map(|e| e.name.as_str()).collect();
            println!("{q:?} {names:?}");
        }
        return;
    }
    // `search PATH N`: only the search figures, on a graph `fill` built.
    if args.get(1).map(String::as_str) == Some("search") {
        let n = args[3].parse().unwrap();
        let replica = open(Path::new(&args[2]), "bench", Durability::Normal);
        println!("{n:>7} entities | {}", search_latencies(&replica, n));
        return;
    }
    // `wal PATH N WRITES`: WRITES single observation writes on a warm graph `fill` built, then
    // a copy of the write-ahead log taken while the replica is open (`PATH.wal`), for
    // `benches/wal_pages.py PATH --wal PATH.wal` to say which b-trees each commit wrote.
    if args.get(1).map(String::as_str) == Some("wal") {
        let (path, n, writes): (&Path, u64, u64) =
            (Path::new(&args[2]), args[3].parse().unwrap(), args[4].parse().unwrap());
        let replica = open(path, "bench", Durability::Full);
        replica.warm_up().unwrap().wait(Duration::from_secs(600)).unwrap();
        let mut rng = Rng(11);
        for i in 0..writes {
            let e = format!("entity-{}", rng.below(n));
            replica.write(&[Op::add_observation(e, format!("wal pages {}-{i}", std::process::id()))]).unwrap();
        }
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let mut copy = path.as_os_str().to_owned();
        copy.push(".wal");
        std::fs::copy(&wal, &copy).unwrap();
        return;
    }
    // `writes PATH N`: single durable writes on a graph `fill` built, beside the floor.
    if args.get(1).map(String::as_str) == Some("writes") {
        let (path, n) = (Path::new(&args[2]), args[3].parse().unwrap());
        println!("{}", floor_line(path.parent().unwrap_or(Path::new("."))));
        let t = Instant::now();
        // Flags after N: `normal`, the same writes with `synchronous=NORMAL` (no fsync per
        // commit), which leaves the write's own cost; `warm`, the graph loaded into memory
        // (`Replica::warm_up`, as `cairn mcp` does) before the writes start.
        let flag = |f: &str| args.iter().skip(4).any(|a| a == f);
        let durability = if flag("normal") { Durability::Normal } else { Durability::Full };
        let replica = open(path, "bench", durability);
        let opened = t.elapsed();
        if flag("warm") {
            let t = Instant::now();
            let loaded = replica.warm_up().unwrap().wait(Duration::from_secs(600)).unwrap();
            println!("{n:>7} entities | warm-up: {loaded} documents in {}", ms(t.elapsed()));
        }
        // New texts on every run, so a second run on the same file writes rather than no-ops.
        let tag = format!("w{}-", std::process::id());
        let mut rng = Rng(3);
        println!("{n:>7} entities | open {} | {}", ms(opened), write_latencies(&replica, n, &mut rng, &tag));
        // An agent's pace rather than a loop's: a pause after each write, long enough for
        // background work (a checkpoint) to run between writes.
        let mut samples = Vec::with_capacity(300);
        for i in 0..300 {
            std::thread::sleep(Duration::from_millis(30));
            let e = format!("entity-{}", rng.below(n));
            let t = Instant::now();
            replica.write(&[Op::add_observation(e, format!("paced {tag}{i}"))]).unwrap();
            samples.push(t.elapsed());
        }
        samples.sort();
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        println!("{n:>7} entities | 300 observations 30 ms apart: p50 {} p99 {}", ms(p50), ms(p99));
        if flag("bursts") {
            // An agent's rhythm: 20 bursts of 100 writes back to back, 400 ms apart; every
            // write's latency, the tail's far end included.
            let mut samples = Vec::with_capacity(2_000);
            for b in 0..20 {
                std::thread::sleep(Duration::from_millis(400));
                for i in 0..100 {
                    let e = format!("entity-{}", rng.below(n));
                    let t = Instant::now();
                    replica.write(&[Op::add_observation(e, format!("burst {tag}{b}-{i}"))]).unwrap();
                    samples.push(t.elapsed());
                }
            }
            samples.sort();
            println!(
                "{n:>7} entities | 20 bursts of 100 observations: p50 {} p99 {} p99.9 {} max {}",
                ms(percentile(&samples, 0.5)),
                ms(percentile(&samples, 0.99)),
                ms(percentile(&samples, 0.999)),
                ms(percentile(&samples, 1.0))
            );
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: &[u64] = if quick { &[1_000, 10_000] } else { &[1_000, 10_000, 100_000] };
    let dir = tempfile::tempdir().unwrap();
    println!("durability FULL (synchronous=FULL, WAL) unless noted; each write is its own SQLite transaction");
    println!("{}\n", floor_line(dir.path()));
    for &n in sizes {
        let path = dir.path().join(format!("g{n}.db"));
        let replica = open(&path, "bench", Durability::Full);
        let mut rng = Rng(n);
        let throughput = fill(&replica, n, &mut rng);
        let writes = write_latencies(&replica, n, &mut rng, "");
        let search = search_latencies(&replica, n);
        println!("{n:>7} entities | batch import {throughput:>7.0} facts/s | {writes}");
        println!("{n:>7} entities | {search}");
        if n == *sizes.last().unwrap() {
            drop(replica);
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["cold-open", path.to_str().unwrap(), &n.to_string()])
                .output()
                .unwrap();
            print!("{n:>7} entities | {}", String::from_utf8_lossy(&out.stdout));
        }
    }
    // Merge: two replicas that each wrote 1k changes offline (1 change = 1 write).
    let a = open(&dir.path().join("ma.db"), "alice", Durability::Normal);
    let b = open(&dir.path().join("mb.db"), "bob", Durability::Normal);
    let mut seed = Rng(5);
    fill(&a, 100, &mut seed);
    b.import(&a.export_since(&b.heads().unwrap()).unwrap()).unwrap();
    for i in 0..1_000 {
        a.write(&[Op::add_observation(format!("entity-{}", i % 100), format!("a{i}"))]).unwrap();
        b.write(&[Op::add_observation(format!("entity-{}", (i * 7) % 100), format!("b{i}"))]).unwrap();
    }
    let t = Instant::now();
    let to_b = a.export_since(&b.heads().unwrap()).unwrap();
    let to_a = b.export_since(&a.heads().unwrap()).unwrap();
    b.import(&to_b).unwrap();
    a.import(&to_a).unwrap();
    let merge = t.elapsed();
    assert_eq!(a.read_graph().unwrap().data, b.read_graph().unwrap().data);
    println!("merge of 1k + 1k offline changes (export, import both ways): {}", ms(merge));
    schema_check();
}

/// The schema check on its own (what every change from outside costs before it is stored):
/// 10k one-record changes and one 10k-record change, as Cairn's writer makes them.
fn schema_check() {
    use cairn::automerge::transaction::{CommitOptions, Transactable};
    use cairn::automerge::{ActorId, ROOT, ReadDoc};
    let graph = cairn::GraphName::default_graph();
    let id = cairn::GraphDocs::of(&graph).shard_for("entity-1");
    let rules = cairn::integrity::DocRules::new(&graph, id).unwrap();
    let shard = cairn::schema::shard_of("entity-1");
    let names: Vec<String> =
        (0..).map(|i| format!("entity-{i}")).filter(|n| cairn::schema::shard_of(n) == shard).take(100).collect();
    let mut doc = rules.genesis().with_actor(ActorId::random());
    let (_, observations) = doc.get(ROOT, "observations").unwrap().unwrap();
    let record = r#"{"by":"bench@host","at":1767225600000}"#;
    let message = || CommitOptions::default().with_message(r#"{"agent":"bench@host"}"#.to_owned());
    for i in 0..10_000 {
        let mut tx = doc.transaction();
        tx.put(&observations, format!("{}\u{1f}note {i}", names[i % names.len()]), record).unwrap();
        tx.commit_with(message());
    }
    let small: Vec<_> = doc.get_changes(&[]).into_iter().skip(1).collect();
    let mut tx = doc.transaction();
    for i in 0..10_000 {
        tx.put(&observations, format!("{}\u{1f}batch {i}", names[i % names.len()]), record).unwrap();
    }
    tx.commit_with(message());
    let big = doc.get_last_local_change().unwrap().clone();
    let t = Instant::now();
    rules.check_all(&small).unwrap();
    let one_by_one = t.elapsed();
    let t = Instant::now();
    rules.check(&big).unwrap();
    let batch = t.elapsed();
    println!(
        "schema check: 10k one-record changes {} ({:.1} µs each); one 10k-record change {}",
        ms(one_by_one),
        one_by_one.as_secs_f64() * 1e6 / 10_000.0,
        ms(batch)
    );
}
