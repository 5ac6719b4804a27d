//! The sans-IO state machines on a deterministic simulated network: client sessions and the
//! relay hub exchange encoded frames through queues that a seeded schedule delivers, drops,
//! duplicates, reorders, partitions and heals. Whatever the schedule, once the network heals and
//! everything is delivered, every replica and the relay hold the same graph.
//!
//! Seeds are fixed; `CAIRN_SEED` and `CAIRN_CASES` explore more.

use std::collections::VecDeque;
use std::sync::Arc;

use cairn::sync::wire::Message;
use cairn::sync::{ClientSession, Effect, Input, ReplicaDocs, SessionConfig};
use cairn::{Durability, Millis, Op, OpenOptions, Replica};
use cairn_sync::hub::{Action, Event, Hub, HubConfig};
use cairn_sync::{Access, RelayStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

const CLIENTS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    Write(usize, u8),
    DeliverUp(usize),
    DeliverDown(usize),
    Drop(usize, bool),
    Duplicate(usize, bool),
    Reorder(usize, bool),
    Partition(usize),
    Heal(usize),
    Tick(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let c = 0..CLIENTS;
    prop_oneof![
        3 => (c.clone(), any::<u8>()).prop_map(|(i, n)| Step::Write(i, n)),
        6 => c.clone().prop_map(Step::DeliverUp),
        6 => c.clone().prop_map(Step::DeliverDown),
        1 => (c.clone(), any::<bool>()).prop_map(|(i, up)| Step::Drop(i, up)),
        1 => (c.clone(), any::<bool>()).prop_map(|(i, up)| Step::Duplicate(i, up)),
        1 => (c.clone(), any::<bool>()).prop_map(|(i, up)| Step::Reorder(i, up)),
        1 => c.clone().prop_map(Step::Partition),
        1 => c.clone().prop_map(Step::Heal),
        2 => c.prop_map(Step::Tick),
    ]
}

/// One client and its link to the hub.
struct Node {
    replica: Arc<Replica>,
    session: ClientSession,
    conn: Option<u64>,
    up: VecDeque<Vec<u8>>,
    down: VecDeque<Vec<u8>>,
}

struct Sim {
    now: Millis,
    hub: Hub,
    store: RelayStore,
    nodes: Vec<Node>,
    next_conn: u64,
    writes: usize,
}

impl Sim {
    fn client_effects(&mut self, i: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send(m) => {
                    if self.nodes[i].conn.is_some() {
                        self.nodes[i].up.push_back(m.encode());
                    }
                }
                Effect::Close { .. } => self.partition(i),
                Effect::Behind | Effect::Synced | Effect::RemoteHeads(..) | Effect::PeerReadOnly => {}
            }
        }
    }

    fn hub_actions(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { conn, message } => {
                    if let Some(n) = self.nodes.iter_mut().find(|n| n.conn == Some(conn)) {
                        n.down.push_back(message.encode());
                    }
                }
                Action::Close { conn, .. } => {
                    if let Some(i) = self.nodes.iter().position(|n| n.conn == Some(conn)) {
                        self.partition(i);
                    }
                }
            }
        }
    }

    fn client(&mut self, i: usize, input: Input) {
        let mut docs = ReplicaDocs::new(self.nodes[i].replica.clone());
        let effects = self.nodes[i].session.handle(self.now, input, &mut docs).unwrap();
        self.client_effects(i, effects);
    }

    fn hub(&mut self, event: Event) {
        let mut actions = self.hub.handle(self.now, event, &mut self.store).unwrap();
        actions.extend(self.hub.flush(self.now, &mut self.store).unwrap());
        self.hub_actions(actions);
    }

    /// What the relay's adapter does on its timer: flush when the hub says something waits.
    fn hub_timer(&mut self) {
        if self.hub.next_flush().is_some_and(|at| at <= self.now) {
            let actions = self.hub.flush(self.now, &mut self.store).unwrap();
            self.hub_actions(actions);
        }
    }

    fn heal(&mut self, i: usize) {
        if self.nodes[i].conn.is_none() {
            self.next_conn += 1;
            let conn = self.next_conn;
            self.nodes[i].conn = Some(conn);
            self.hub(Event::Connected { conn, access: Access::full() });
            self.client(i, Input::Connected);
        }
    }

    fn partition(&mut self, i: usize) {
        if let Some(conn) = self.nodes[i].conn.take() {
            self.nodes[i].up.clear();
            self.nodes[i].down.clear();
            self.hub(Event::Disconnected { conn });
        }
    }

    fn deliver_up(&mut self, i: usize) {
        let (Some(conn), Some(frame)) = (self.nodes[i].conn, self.nodes[i].up.pop_front()) else { return };
        let message = Message::decode(&frame).expect("frames on the simulated wire are well-formed");
        self.hub(Event::Received { conn, message });
    }

    fn deliver_down(&mut self, i: usize) {
        let Some(frame) = self.nodes[i].down.pop_front() else { return };
        let message = Message::decode(&frame).expect("frames on the simulated wire are well-formed");
        self.client(i, Input::Received(message));
    }

    fn queue(&mut self, i: usize, up: bool) -> &mut VecDeque<Vec<u8>> {
        if up { &mut self.nodes[i].up } else { &mut self.nodes[i].down }
    }

    fn apply(&mut self, s: &Step) {
        match *s {
            Step::Write(i, n) => {
                self.writes += 1;
                let op = Op::create_entity(format!("e{}", n % 8), "t", &[&format!("{i}:{}", self.writes)]);
                self.nodes[i].replica.write(&[op]).unwrap();
                self.client(i, Input::LocalChange(None));
            }
            Step::DeliverUp(i) => self.deliver_up(i),
            Step::DeliverDown(i) => self.deliver_down(i),
            Step::Drop(i, up) => {
                self.queue(i, up).pop_front();
            }
            Step::Duplicate(i, up) => {
                let q = self.queue(i, up);
                if let Some(f) = q.front().cloned() {
                    q.push_front(f);
                }
            }
            Step::Reorder(i, up) => {
                let q = self.queue(i, up);
                if q.len() >= 2 {
                    q.swap(0, 1);
                }
            }
            Step::Partition(i) => self.partition(i),
            Step::Heal(i) => self.heal(i),
            Step::Tick(i) => {
                self.now += 1_000;
                self.hub_timer();
                self.client(i, Input::Tick);
            }
        }
    }

    /// Heals everything and delivers until nothing moves (bounded). A connection a session
    /// closes (a handshake that never finished, say) is reconnected, as the driver does.
    fn settle(&mut self) {
        for _ in 0..500 {
            for i in 0..CLIENTS {
                self.heal(i);
            }
            let mut moved = false;
            for i in 0..CLIENTS {
                while !self.nodes[i].up.is_empty() || !self.nodes[i].down.is_empty() {
                    moved = true;
                    self.deliver_up(i);
                    self.deliver_down(i);
                }
            }
            if !moved {
                // Quiet. What the hub holds back for its interval goes out first, when its
                // timer fires.
                if let Some(at) = self.hub.next_flush() {
                    self.now = self.now.max(at);
                    self.hub_timer();
                    continue;
                }
                // Then let time pass so any stalled exchange is retried.
                self.now += 6_000;
                for i in 0..CLIENTS {
                    self.client(i, Input::Tick);
                }
                if self.nodes.iter().all(|n| n.conn.is_some() && n.up.is_empty() && n.down.is_empty()) {
                    return;
                }
            }
        }
        panic!("the simulated network never went quiet");
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store = RelayStore::open(&dir.path().join("relay"), Durability::Normal).unwrap();
    let hub = Hub::new(HubConfig::new("relay", "relay-storage"));
    let nodes = (0..CLIENTS)
        .map(|i| {
            let options = OpenOptions::new(format!("agent{i}").parse().unwrap()).durability(Durability::Normal);
            let replica = Arc::new(Replica::open_with(dir.path().join(format!("{i}.db")), options).unwrap());
            let config = SessionConfig {
                peer_id: format!("client{i}").into(),
                storage_id: Some(ReplicaDocs::new(replica.clone()).storage_id()),
                docs: replica.docs().all().map(|(d, _)| d).collect(),
                resync_after: 5_000,
                handshake_timeout: 5_000,
            };
            Node {
                replica,
                session: ClientSession::new(config),
                conn: None,
                up: VecDeque::new(),
                down: VecDeque::new(),
            }
        })
        .collect();
    let mut sim = Sim { now: 1_000, hub, store, nodes, next_conn: 0, writes: 0 };
    for i in 0..CLIENTS {
        sim.heal(i);
    }
    for s in steps {
        sim.apply(s);
    }
    sim.settle();
    let heads: Vec<_> = sim.nodes.iter().map(|n| n.replica.heads().unwrap()).collect();
    for h in &heads[1..] {
        prop_assert_eq!(h, &heads[0], "replicas hold different heads after the network healed");
    }
    // The relay holds the same.
    let mut docs = sim.store;
    for (doc, doc_heads) in &heads[0].docs {
        let mut mine = cairn::sync::SyncDocs::heads(&mut docs, doc).unwrap();
        let mut theirs = doc_heads.clone();
        mine.sort();
        theirs.sort();
        prop_assert_eq!(mine, theirs, "the relay differs for {}", doc);
    }
    let graphs: Vec<_> = sim.nodes.iter().map(|n| n.replica.read_graph_as_of(None).unwrap().data).collect();
    for g in &graphs[1..] {
        prop_assert_eq!(g.entities.len(), graphs[0].entities.len());
        for (a, b) in g.entities.iter().zip(&graphs[0].entities) {
            prop_assert_eq!(&a.name, &b.name);
            prop_assert_eq!(a.observations.len(), b.observations.len());
        }
    }
    Ok(())
}

#[test]
fn every_schedule_that_eventually_delivers_converges() {
    let seed = std::env::var("CAIRN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_c0de);
    let cases = std::env::var("CAIRN_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    let config = Config { cases, rng_seed: RngSeed::Fixed(seed), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    runner
        .run(&proptest::collection::vec(step(), 1..80), |steps| run(&steps))
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
}
