//! Integrity stories: a write-token holder, Mallory, sends protocol-valid Automerge changes that
//! break the document schema (`docs/schema.md`), built with the stock JavaScript packages
//! (`clients/js/attack.mjs`, one function per attack), to a live relay on loopback. Alice and Bob,
//! honest Rust replicas with tokens of their own, keep writing through it.
//!
//! Each story checks what principle 7 of the design promises: the relay refuses the change with
//! an automerge-repo `error` message naming the rule it broke (`refused`, `rule "<id>"`), then
//! closes the connection; the change is never stored or forwarded, so Alice and Bob converge with
//! nothing they wrote lost, and a fresh replica synced afterwards reads the same valid graph.
//! Checks run in that order, so that a story shows the damage an accepted attack does before it
//! notes that Mallory was not told. The last story guards against refusing too much: an honest
//! stock client writing the documented format is accepted.
//!
//! The stories, one per class of attack (the rule ids are the contract's): the root document and
//! a shard's root map (`root`), objects and non-string values in the three maps (`object`,
//! `value`), keys beyond the limits (`key`), an entity in another shard (`shard`), records that
//! are not the documented JSON (`record`), a change with no agent (`message`), a second history
//! (`genesis`), a change under another writer's actor while she is offline (`actor`), a forged
//! genesis before the graph exists (`genesis`), and an honest stock client (not refused). Where
//! one change breaks several rules and the contract does not say which is checked first, a story
//! accepts any of them.
//!
//! The stories need Node.js and the packages under `clients/js` (`npm install --prefix
//! clients/js`), like `js_interop.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn::automerge::ChangeHash;
use cairn::sync::{ReplicaDocs, SyncDocs};
use cairn::{DocId, Durability, Op, OpenOptions, Replica};
use cairn_sync::tokens::Role;
use cairn_sync::{SyncClient, Tokens};
use serde_json::Value;

use common::attack::*;
use common::*;

const GRAPH: &str = "team";
/// The entity whose shard the attacks aim at, and which Alice and Bob keep observing.
const TARGET: &str = "Target";
const CONVERGE: Duration = Duration::from_secs(30);

/// The stories run one at a time: each runs a relay, three replicas and several Node
/// processes, and on a two-core machine running them all at once starves the Node clients of
/// the time their own handshakes need.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static STORIES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    STORIES.lock().await
}

// ---- Mallory ----------------------------------------------------------------------------------

/// What one run of `attack.mjs` reported.
#[derive(Debug)]
struct Outcome {
    attack: String,
    report: Value,
}

impl Outcome {
    fn outcome(&self) -> &str {
        self.report["outcome"].as_str().unwrap_or("")
    }

    fn error(&self) -> &str {
        self.report["error"].as_str().unwrap_or("")
    }

    /// The changes it sent, as (document, hash).
    fn changes(&self) -> Vec<(DocId, ChangeHash)> {
        let changes = self.report["changes"].as_array().expect("attack.mjs lists the changes it sent");
        assert!(!changes.is_empty(), "{} sent nothing: {}", self.attack, self.report);
        changes
            .iter()
            .map(|c| (c["doc"].as_str().unwrap().parse().unwrap(), c["hash"].as_str().unwrap().parse().unwrap()))
            .collect()
    }

    /// Whether the relay refused it with an `error` naming one of `rules`, and closed the
    /// connection.
    fn refused_for(&self, rules: &[&str]) -> bool {
        let error = self.error();
        self.outcome() == "refused"
            && !self.report["close"].is_null()
            && error.contains("refused")
            && rules.iter().any(|rule| error.contains(&format!("rule \"{rule}\"")))
    }
}

/// Runs one attack from `attack.mjs` (with its extra arguments) as a client with `token`.
async fn mallory(addr: SocketAddr, token: &str, attack: &str, extra: &[&str]) -> Outcome {
    let mut args = vec![format!("ws://{addr}"), token.to_owned(), GRAPH.to_owned(), attack.to_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let stdout = node("attack.mjs", args).await;
    let line = stdout.lines().last().unwrap_or_default();
    let report: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("attack.mjs printed {stdout:?}, not a report: {e}"));
    // Shown with a failing story's output: what Mallory saw.
    eprintln!("mallory: {attack}: {report}");
    Outcome { attack: attack.to_owned(), report }
}

/// The graph as a stock JavaScript reader sees it (`attack.mjs read`), rendered as `graph_of`
/// renders a replica's, sorted; what it could not read fails the story.
async fn stock_reader(addr: SocketAddr, token: &str) -> Vec<String> {
    let args = vec![format!("ws://{addr}"), token.to_owned(), GRAPH.to_owned(), "read".to_owned()];
    let stdout = node("attack.mjs", args).await;
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("attack.mjs read printed {stdout:?}: {e}"));
    let broken = seen["broken"].as_array().unwrap();
    assert!(broken.is_empty(), "a stock reader cannot read the graph: {broken:?}");
    let mut out: Vec<String> = seen["entities"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, e)| {
            let mut obs: Vec<&str> =
                e["observations"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
            obs.sort();
            format!("{name}:{}:{obs:?}", e["type"].as_str().unwrap())
        })
        .collect();
    out.extend(seen["relations"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()));
    tidy(out)
}

/// Every attack was refused, each with one of the rules given for it (several where the contract
/// lets more than one rule name the same change, e.g. a new map put at a shard's root key both
/// writes the root map and creates an object). Reports all that were not, at once.
fn assert_refused(outcomes: &[(Outcome, &[&str])]) {
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|(o, rules)| !o.refused_for(rules))
        .map(|(o, rules)| format!("{} (wanted rule {rules:?}): {}", o.attack, o.report))
        .collect();
    assert!(wrong.is_empty(), "mallory was not refused with the rule:\n{}", wrong.join("\n"));
}

// ---- Alice and Bob ----------------------------------------------------------------------------

fn team_replica(path: &Path, agent: &str) -> Arc<Replica> {
    let options = OpenOptions::new(agent.parse().unwrap()).graph(GRAPH.parse().unwrap()).durability(Durability::Normal);
    Arc::new(Replica::open_with(path, options).unwrap())
}

/// What the honest writers wrote: the graph every replica must read.
#[derive(Debug, Default)]
struct Expected {
    /// Entity name → (type, observations).
    entities: BTreeMap<String, (String, BTreeSet<String>)>,
    /// `from-type->to`, as `graph_of` writes them.
    relations: BTreeSet<String>,
}

impl Expected {
    fn entity(&mut self, name: &str, entity_type: &str, observations: &[&str]) -> Op {
        let e = self.entities.entry(name.into()).or_default();
        e.0 = entity_type.into();
        e.1.extend(observations.iter().map(|o| o.to_string()));
        entity(name, entity_type, observations)
    }

    fn observe(&mut self, name: &str, text: &str) -> Op {
        self.entities.get_mut(name).expect("observations go on entities written first").1.insert(text.into());
        observe(name, text)
    }

    /// The graph as `graph_of` prints it, sorted.
    fn render(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .entities
            .iter()
            .map(|(name, (t, obs))| format!("{name}:{t}:{:?}", obs.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect();
        out.extend(self.relations.iter().cloned());
        tidy(out)
    }
}

/// Sorted, with lines over 200 bytes cut (Mallory's 100 KB names would drown a failure message).
fn tidy(mut lines: Vec<String>) -> Vec<String> {
    for line in &mut lines {
        if line.len() > 200 {
            let cut = (0..=80).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
            *line = format!("{}…({} bytes)", &line[..cut], line.len());
        }
    }
    lines.sort();
    lines
}

fn sorted_graph(r: &Replica) -> Vec<String> {
    tidy(graph_of(r))
}

/// Alice and Bob, each with a write token of their own, syncing graph `team` through the relay.
struct Team {
    dir: PathBuf,
    addr: SocketAddr,
    alice: Arc<Replica>,
    bob: Arc<Replica>,
    alice_token: String,
    reader_token: String,
    alice_client: Option<SyncClient>,
    bob_client: SyncClient,
    expected: Expected,
    rounds: usize,
}

impl Team {
    /// Step 1 of every story: Alice creates the target and herself, Bob himself; they connect
    /// and converge; Bob observes the target, and they converge again.
    async fn new(dir: &Path, addr: SocketAddr, tokens: &Tokens) -> Team {
        let alice = team_replica(&dir.join("alice.db"), "alice");
        let bob = team_replica(&dir.join("bob.db"), "bob");
        let alice_token = token(tokens, &[GRAPH], Role::Write);
        let bob_token = token(tokens, &[GRAPH], Role::Write);
        let mut expected = Expected::default();
        write(
            &alice,
            vec![expected.entity(TARGET, "place", &["alice was here"]), expected.entity("Alice", "person", &[])],
        )
        .await;
        write(&bob, vec![expected.entity("Bob", "person", &[])]).await;
        let alice_client = Some(client(&alice, addr, &alice_token));
        let bob_client = client(&bob, addr, &bob_token);
        let mut team = Team {
            dir: dir.to_owned(),
            addr,
            alice,
            bob,
            alice_token,
            reader_token: token(tokens, &[GRAPH], Role::Read),
            alice_client,
            bob_client,
            expected,
            rounds: 0,
        };
        team.settle("alice and bob sync the graph").await;
        let op = team.expected.observe(TARGET, "bob was here");
        write(&team.bob, vec![op]).await;
        team.converge("before the attack").await;
        team
    }

    /// Alice and Bob each write a new entity and an observation of the target (in the shard the
    /// attacks aim at).
    async fn write_round(&mut self) {
        self.rounds += 1;
        let n = self.rounds;
        for (r, who) in [(self.alice.clone(), "alice"), (self.bob.clone(), "bob")] {
            let ops = vec![
                self.expected.entity(&format!("{who}-{n}"), "note", &[&format!("round {n}")]),
                self.expected.observe(TARGET, &format!("{who} {n}")),
            ];
            write(&r, ops).await;
        }
    }

    /// Waits (bounded) until Alice and Bob hold the same heads; if they never do, says why their
    /// clients last lost their connection (a relay refusing an honest change, say).
    async fn settle(&self, when: &str) {
        let deadline = std::time::Instant::now() + CONVERGE;
        // A reconnecting client's error clears while it is connected: keep the last one seen.
        let (mut alice_error, mut bob_error) = (None, None);
        while self.alice.heads().unwrap() != self.bob.heads().unwrap() {
            alice_error = self.alice_client.as_ref().and_then(SyncClient::last_error).or(alice_error);
            bob_error = self.bob_client.last_error().or(bob_error);
            assert!(
                std::time::Instant::now() < deadline,
                "alice and bob did not converge within {CONVERGE:?} ({when}); their clients' last errors: \
                 alice: {alice_error:?}, bob: {bob_error:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Alice and Bob hold the same heads, and read exactly what the honest writers wrote.
    async fn converge(&self, when: &str) {
        self.settle(when).await;
        converge(&[self.alice.clone(), self.bob.clone()], CONVERGE).await;
        let want = self.expected.render();
        for r in [&self.alice, &self.bob] {
            assert_eq!(sorted_graph(r), want, "{} reads what the honest writers wrote ({when})", r.agent());
        }
    }

    /// A fresh replica (read-only, so it reads only what the relay holds) syncs, converges with
    /// Alice and Bob, and all three read the same valid graph; so does a stock JavaScript reader.
    async fn newcomer(&self) -> Arc<Replica> {
        let carol = team_replica(&self.dir.join("carol.db"), "carol");
        let c = client(&carol, self.addr, &self.reader_token);
        converge(&[self.alice.clone(), self.bob.clone(), carol.clone()], CONVERGE).await;
        let graphs: Vec<_> = [&self.alice, &self.bob, &carol].iter().map(|r| r.read_graph().unwrap().data).collect();
        assert_eq!(graphs[0], graphs[1], "alice and bob read the same graph");
        assert_eq!(graphs[0], graphs[2], "a fresh replica reads the graph alice and bob read");
        assert_eq!(sorted_graph(&carol), self.expected.render(), "a fresh replica reads the honest graph");
        c.stop().await;
        let js = stock_reader(self.addr, &self.reader_token).await;
        assert_eq!(js, self.expected.render(), "a stock javascript reader reads the honest graph");
        carol
    }

    /// No replica holds any change an outcome reports sending.
    fn assert_nowhere(&self, outcomes: &[&Outcome], others: &[&Arc<Replica>]) {
        let replicas: Vec<&Arc<Replica>> = [&self.alice, &self.bob].into_iter().chain(others.iter().copied()).collect();
        for o in outcomes {
            for (doc, hash) in o.changes() {
                for r in &replicas {
                    let held = ReplicaDocs::new((*r).clone()).has_all(&doc, &[hash]).unwrap();
                    assert!(
                        !held,
                        "{} holds {}'s change {hash} in {doc}: it was stored and forwarded",
                        r.agent(),
                        o.attack
                    );
                }
            }
        }
    }
}

/// The story most attacks share: Alice and Bob are syncing; Mallory, with a write token for the
/// graph, makes each attack (one connection each: a refusal closes it); Alice and Bob keep
/// writing and converge, losing nothing; a fresh replica reads the same valid graph; nobody holds
/// Mallory's changes; Mallory was refused with the rule each attack broke.
async fn mallory_attacks(attacks: &[(&str, &[&str])]) {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(&dir.path().join("relay"), |_| {}).await;
    // Step 1: Alice and Bob sync the graph.
    let mut team = Team::new(dir.path(), addr, &tokens).await;
    // Step 2: Mallory attacks.
    let mallory_token = token(&tokens, &[GRAPH], Role::Write);
    let mut outcomes = Vec::new();
    for (attack, rules) in attacks {
        outcomes.push((mallory(addr, &mallory_token, attack, &[]).await, *rules));
    }
    // Step 3: Alice and Bob keep writing, also into the attacked shard, and converge.
    team.write_round().await;
    team.write_round().await;
    team.converge("after the attack").await;
    // Step 4: a fresh replica reads the same graph, and nobody holds what Mallory sent.
    let carol = team.newcomer().await;
    team.assert_nowhere(&outcomes.iter().map(|(o, _)| o).collect::<Vec<_>>(), &[&carol]);
    // Step 5: Mallory was told why.
    assert_refused(&outcomes);
}

// ---- The stories, one per class of attack --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_cannot_rewrite_the_root_document_or_a_shards_root_map() {
    let _serial = one_at_a_time().await;
    mallory_attacks(&[
        ("root-write", &["root"]),
        ("entities-string", &["root"]),
        // Last: it leaves the target shard with no maps at all if accepted.
        ("delete-maps", &["root"]),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_cannot_put_objects_or_non_strings_into_a_shard() {
    let _serial = one_at_a_time().await;
    mallory_attacks(&[
        // A new map at the root's `entities` key: a write to the root map that creates an object.
        ("entities-map", &["root", "object"]),
        // A plain JS string is a text object, put where a string scalar belongs: one operation
        // per character, which a size rule may count first.
        ("plain-string", &["object", "value", "ops"]),
        ("number-record", &["value"]),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_cannot_write_keys_beyond_the_limits() {
    let _serial = one_at_a_time().await;
    mallory_attacks(&[("separator-name", &["key"]), ("huge-name", &["key"]), ("huge-observation", &["key"])]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_cannot_put_an_entity_in_a_shard_its_name_does_not_hash_to() {
    let _serial = one_at_a_time().await;
    mallory_attacks(&[("wrong-shard", &["shard"])]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_cannot_write_records_that_are_not_the_documented_json() {
    let _serial = one_at_a_time().await;
    mallory_attacks(&[("bad-record", &["record"]), ("bad-record-type", &["record"])]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_cannot_write_without_naming_an_agent() {
    let _serial = one_at_a_time().await;
    mallory_attacks(&[("no-message", &["message"])]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_with_a_token_bound_to_her_name_cannot_write_as_alice() {
    let _serial = one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(&dir.path().join("relay"), |_| {}).await;
    let mut team = Team::new(dir.path(), addr, &tokens).await;
    // The operator bound Mallory's token to her own agent names.
    let bound = cairn_sync::tokens::AgentPatterns::new(&["mallory@*".into()]).unwrap();
    let (_, mallory_token) =
        tokens.create_bound(&[GRAPH.into()], Role::Write, None, None, Some(&bound), cairn::now_millis()).unwrap();
    // A well-formed write that claims to be Alice's is refused; the same write as herself is not.
    let lie = mallory(addr, &mallory_token, "claim", &["--agent", "alice", "--target", TARGET]).await;
    let own = mallory(addr, &mallory_token, "claim", &["--agent", "mallory@laptop", "--target", TARGET]).await;
    assert_eq!(own.outcome(), "accepted", "{}", own.report);
    team.expected.observe(TARGET, "claimed by mallory@laptop");
    team.write_round().await;
    team.converge("after the claim").await;
    let carol = team.newcomer().await;
    team.assert_nowhere(&[&lie], &[&carol]);
    assert_refused(&[(lie, &["agent"])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_cannot_graft_a_second_history_onto_a_shard() {
    let _serial = one_at_a_time().await;
    // A change with no dependencies is a second genesis; its operations also write the root map
    // and create an object, and the contract does not say which rule is checked first.
    mallory_attacks(&[("no-deps", &["genesis", "root", "object"])]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_cannot_write_under_alices_actor_while_she_is_offline() {
    let _serial = one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(&dir.path().join("relay"), |_| {}).await;
    // Step 1: Alice and Bob sync the graph.
    let mut team = Team::new(dir.path(), addr, &tokens).await;
    // Step 2: Alice goes offline and keeps writing: her next changes in the target's shard take
    // the sequence numbers after the last one the relay has seen.
    team.alice_client.take().unwrap().stop().await;
    for n in 1..=3 {
        let op = team.expected.observe(TARGET, &format!("alice offline {n}"));
        write(&team.alice, vec![op]).await;
    }
    // Step 3: Mallory reads Alice's actor id from the shard's history and sends a change under
    // it, with the next sequence number the relay knows for it.
    let mallory_token = token(&tokens, &[GRAPH], Role::Write);
    let forged = mallory(addr, &mallory_token, "forged-actor", &["--victim", "alice", "--target", TARGET]).await;
    // Step 4: Alice reconnects; her offline writes and later ones arrive everywhere.
    team.alice_client = Some(client(&team.alice, addr, &team.alice_token));
    team.write_round().await;
    team.converge("after alice reconnects").await;
    // Step 5: a new process on Alice's file (a fresh actor) still syncs and writes.
    team.alice_client.take().unwrap().stop().await;
    team.alice = team_replica(&dir.path().join("alice.db"), "alice");
    team.alice_client = Some(client(&team.alice, addr, &team.alice_token));
    team.write_round().await;
    team.converge("after alice reopens her file").await;
    // Step 6: a fresh replica reads the same graph; nobody holds the forged change.
    let carol = team.newcomer().await;
    team.assert_nowhere(&[&forged], &[&carol]);
    // Step 7: Mallory was told why.
    assert_refused(&[(forged, &["actor"])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mallory_cannot_forge_a_graphs_genesis_before_it_exists() {
    let _serial = one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(&dir.path().join("relay"), |_| {}).await;
    // Step 1: before anyone has synced graph `team`, Mallory sends a first change under the
    // target shard's genesis actor, sequence 1, that is not its genesis.
    let mallory_token = token(&tokens, &[GRAPH], Role::Write);
    let forged = mallory(addr, &mallory_token, "forged-genesis", &["--target", TARGET]).await;
    // Step 2: Alice and Bob create the graph (each from its own genesis), sync, keep writing and
    // converge.
    let mut team = Team::new(dir.path(), addr, &tokens).await;
    team.write_round().await;
    team.converge("after the forged genesis").await;
    // Step 3: their genesis was never refused as a duplicate of Mallory's.
    for c in [team.alice_client.as_ref().unwrap(), &team.bob_client] {
        let error = format!("{:?}", c.last_error());
        assert!(!error.to_lowercase().contains("duplicate"), "a client hit a duplicate sequence number: {error}");
    }
    // Step 4: a fresh replica reads the same graph; nobody holds the forged genesis.
    let carol = team.newcomer().await;
    team.assert_nowhere(&[&forged], &[&carol]);
    // Step 5: Mallory was told why.
    assert_refused(&[(forged, &["genesis"])]);
}

// ---- Not an attack ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_stock_javascript_client_is_not_refused() {
    let _serial = one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(&dir.path().join("relay"), |_| {}).await;
    let mut team = Team::new(dir.path(), addr, &tokens).await;
    let js_token = token(&tokens, &[GRAPH], Role::Write);
    // Step 1: the worked example, interop.mjs, joins with the token in the URL and writes.
    node("interop.mjs", vec![format!("ws://{addr}/?token={js_token}"), GRAPH.into(), "js-agent".into()]).await;
    team.expected.entity("FromJS", "js-thing", &["written by stock automerge-repo"]);
    // Step 2: a stock client makes every documented operation: entity and observations, a
    // relation, a re-type with an observation deleted, a delete-then-put of the same record, and
    // a change with no time (seconds). All of it is accepted.
    let honest = mallory(addr, &js_token, "honest", &["--agent", "js-agent", "--target", TARGET]).await;
    assert_eq!(honest.outcome(), "accepted", "an honest stock client was refused: {}", honest.report);
    team.expected.entity("JsThing", "js-thing-2", &["hello from js"]);
    team.expected.relations.insert(format!("JsThing-knows->{TARGET}"));
    team.expected.observe(TARGET, "seen by js");
    // Step 3: Alice and Bob read it, keep writing, and converge; a fresh replica reads it too.
    team.write_round().await;
    team.converge("after the javascript client wrote").await;
    let carol = team.newcomer().await;
    for (doc, hash) in honest.changes() {
        assert!(ReplicaDocs::new(carol.clone()).has_all(&doc, &[hash]).unwrap(), "the relay stored {hash}");
    }
    let history = carol.history("JsThing").unwrap().data;
    assert!(history.iter().all(|c| c.agent == "js-agent"), "{history:?}");
}
