//! Reads, each with its version and freshness, and the per-agent read cursor behind "unseen".

use std::time::{Duration, Instant};

use super::Replica;
use crate::error::Result;
use crate::freshness::{Freshness, PeerFreshness, Unseen};
use crate::ids::{DocId, LogPosition, Version};
use crate::model::{EntityChange, Graph, Millis, Read, ReadOptions, SupersedeConflict};
use crate::store::{Txn, events, index, search};
use crate::temporal::{self, Filter};

/// How many results [`Replica::search`] returns at most.
pub const DEFAULT_SEARCH_LIMIT: usize = 200;

/// A replica's state at a glance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The current version.
    pub version: Version,
    /// How fresh the view is.
    pub freshness: Freshness,
    /// Each relay or peer this replica syncs with, and its freshness with respect to that one
    /// alone (empty when `local`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerFreshness>,
    /// What other agents changed since this agent's last read.
    pub unseen: Unseen,
    /// Visible entities.
    pub entities: u64,
    /// Observations present (whatever their validity).
    pub observations: u64,
    /// Relations present (whatever their validity).
    pub relations: u64,
    /// Size of the database file and its WAL.
    pub database_bytes: u64,
    /// Changes an older version stored that the schema check refuses, kept out of every read
    /// ([`Replica::quarantined`] lists them).
    pub quarantined: usize,
    /// Why the replica is read-only, if it is (its reads do not move the read cursor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<crate::store::ReadOnlyCause>,
    /// Facts superseded more than once whose replacements all hold now (concurrent supersedes
    /// nobody has resolved), across the whole graph.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<SupersedeConflict>,
}

/// What a graph read selects from every fact present, once the facts are gathered.
enum Select<'a> {
    Everything,
    Named(&'a [String]),
    Search(&'a str, usize),
}

impl Replica {
    /// Runs a read and moves this agent's cursor past everything it saw (not on a read-only
    /// replica, which writes nothing: there, what the read reports as unseen stays unseen, and
    /// the read says so).
    fn read<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<Read<T>> {
        self.read_with(true, f)
    }

    /// [`Replica::read`], moving the cursor only with `advance`.
    fn read_with<T>(&self, advance: bool, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<Read<T>> {
        let (graph, agent) = (self.graph.as_str(), self.agent.as_str());
        let (data, seq, cursor, unseen) = self.log.read(|tx| {
            let seq = tx.position()?;
            let data = f(tx)?;
            let (cursor, unseen) = self.unseen(tx, seq)?;
            Ok((data, seq, cursor, unseen))
        })?;
        let read_only = self.log.read_only();
        if advance && read_only.is_none() && cursor.is_none_or(|c| c < seq) {
            self.log.write(|tx| events::advance_cursor(tx, graph, agent, seq))?;
        }
        Ok(Read { data, version: self.version(seq), freshness: self.freshness(), unseen, read_only })
    }

    /// This agent's cursor and what other agents logged after it, up to `seq`. An agent's first
    /// read sees the whole graph: nothing in it is "unseen".
    fn unseen(&self, tx: &Txn<'_>, seq: LogPosition) -> Result<(Option<LogPosition>, Unseen)> {
        let (graph, agent) = (self.graph.as_str(), self.agent.as_str());
        let cursor = events::cursor(tx, graph, agent)?;
        let unseen = match cursor {
            Some(c) if c < seq => events::unseen(tx, graph, agent, c, seq)?,
            _ => Unseen::default(),
        };
        Ok((cursor, unseen))
    }

    /// The whole graph: entities with their currently valid observations, and currently valid
    /// relations; [`Graph::left_out`] counts what is not current.
    pub fn read_graph(&self) -> Result<Read<Graph>> {
        self.read_graph_with(&ReadOptions::default())
    }

    /// The whole graph as it was believed to be at world time `t` (facts valid then), or with
    /// `None` every fact ever recorded and not deleted, whatever its validity.
    pub fn read_graph_as_of(&self, t: Option<Millis>) -> Result<Read<Graph>> {
        self.read_graph_with(&ReadOptions { as_of: t, include_superseded: t.is_none(), ..ReadOptions::default() })
    }

    /// The whole graph on either clock, or both (see [`ReadOptions`]).
    pub fn read_graph_with(&self, options: &ReadOptions) -> Result<Read<Graph>> {
        self.graph_read(options, Select::Everything)
    }

    /// The named entities (unknown names are skipped) and every relation from or to them.
    pub fn open_nodes(&self, names: &[String]) -> Result<Read<Graph>> {
        self.open_nodes_with(names, &ReadOptions::default())
    }

    /// [`Replica::open_nodes`] on either clock, or both (see [`ReadOptions`]).
    pub fn open_nodes_with(&self, names: &[String], options: &ReadOptions) -> Result<Read<Graph>> {
        self.graph_read(options, Select::Named(names))
    }

    /// Entities whose name, type or observations contain every whitespace-separated term of
    /// `query` (case-insensitive, BM25-ranked, at most [`DEFAULT_SEARCH_LIMIT`]), and the
    /// relations touching them. Terms match at the start of a word (`tea`: "green tea",
    /// "Teapot"); only if no entity matches that way, anywhere (`lic`: "Alice"). Any text is a
    /// valid query.
    pub fn search(&self, query: &str) -> Result<Read<Graph>> {
        self.search_limit(query, DEFAULT_SEARCH_LIMIT)
    }

    /// [`Replica::search`] with an explicit result limit.
    pub fn search_limit(&self, query: &str, limit: usize) -> Result<Read<Graph>> {
        self.search_with(query, limit, &ReadOptions::default())
    }

    /// [`Replica::search_limit`] on either clock, or both (see [`ReadOptions`]). An entity matches
    /// through any fact it holds, current or not, and is returned with the facts the options
    /// select. At an earlier version (`at_version`) the documents are searched directly, without
    /// the index: every term anywhere (the reference memory server's rule), entities by name.
    pub fn search_with(&self, query: &str, limit: usize, options: &ReadOptions) -> Result<Read<Graph>> {
        self.graph_read(options, Select::Search(query, limit))
    }

    /// Gathers every fact the selection names, now or at `options.at_version`, then keeps
    /// those that hold at `options.as_of` (default now) unless every fact is asked for.
    fn graph_read(&self, options: &ReadOptions, select: Select<'_>) -> Result<Read<Graph>> {
        let filter = Filter { at: options.as_of.unwrap_or_else(super::now_millis), all: options.include_superseded };
        let graph = self.graph.as_str();
        let Some(version) = options.at_version else {
            return self.read(|tx| {
                let all = match select {
                    Select::Everything => index::read_graph(tx, graph)?,
                    Select::Named(names) => index::open_nodes(tx, graph, names)?,
                    Select::Search(query, limit) => search::search(tx, graph, query, limit)?,
                };
                Ok(temporal::sieve(all, filter))
            });
        };
        // What the replica knew then: the read says so by returning that version, and moves no
        // cursor (the agent has not seen what came after).
        let mut read = self.read_with(false, |tx| {
            self.check_version(tx, version)?;
            let all = crate::past::graph_at(tx, &self.docs, version.seq)?;
            let all = match select {
                Select::Everything => all,
                Select::Named(names) => crate::past::named(all, names),
                Select::Search(query, limit) => crate::past::matching(all, query, limit),
            };
            Ok(temporal::sieve(all, filter))
        })?;
        read.version = version;
        Ok(read)
    }

    /// Everything that ever happened to an entity, oldest first, including deleted observations
    /// and relations and the entity's own deletion.
    pub fn history(&self, entity: &str) -> Result<Read<Vec<EntityChange>>> {
        self.read(|tx| events::history(tx, self.graph.as_str(), entity))
    }

    /// Entity-level changes logged after `since` (oldest first, at most `limit`).
    pub fn changes_since(&self, since: Version, limit: usize) -> Result<Read<Vec<EntityChange>>> {
        self.read(|tx| {
            self.check_version(tx, since)?;
            events::since(tx, self.graph.as_str(), since.seq, limit)
        })
    }

    /// Waits until a change is logged after `since` (by this or any other process on the file,
    /// or arriving from a peer), or until `timeout`; returns the changes after `since` (empty on
    /// timeout). Blocks the calling thread; `cairn_sync::wait_for_change` is the async variant.
    pub fn wait_for_change(&self, since: Version, timeout: Duration) -> Result<Read<Vec<EntityChange>>> {
        // Another process's writes wake nothing here, so the wait also looks at the file every
        // few milliseconds; this process's own and synced changes wake it at once.
        const POLL: Duration = Duration::from_millis(25);
        let deadline = Instant::now() + timeout;
        loop {
            let generation = self.link.generation();
            if self.log_position()? > since.seq || Instant::now() >= deadline {
                return self.changes_since(since, usize::MAX);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            self.link.wait_past(generation, left.min(POLL));
        }
    }

    /// The current version and freshness without reading any data (does not move the agent's
    /// read cursor, so it reports unseen changes without marking them seen).
    pub fn status(&self) -> Result<Status> {
        let ids: Vec<DocId> = self.docs.all().map(|(id, _)| id).collect();
        let now = super::now_millis();
        let (seq, unseen, counts, quarantined, replacements) = self.log.read(|tx| {
            let seq = tx.position()?;
            let (_, unseen) = self.unseen(tx, seq)?;
            let graph = self.graph.as_str();
            let replacements = index::replacements_holding_at(tx, graph, now)?;
            Ok((seq, unseen, index::counts(tx, graph)?, tx.quarantined(&ids)?.len(), replacements))
        })?;
        Ok(Status {
            version: self.version(seq),
            freshness: self.freshness(),
            peers: self.peers(),
            unseen,
            entities: counts.0,
            observations: counts.1,
            relations: counts.2,
            database_bytes: self.log.size_bytes(),
            quarantined,
            read_only: self.log.read_only(),
            conflicts: temporal::conflicts_among(&replacements),
        })
    }

    /// The changes of this graph that an older version stored and the schema check refuses:
    /// kept out of every read, with who sent them and the rule they break (`cairn check`).
    pub fn quarantined(&self) -> Result<Vec<crate::store::QuarantinedChange>> {
        let ids: Vec<DocId> = self.docs.all().map(|(id, _)| id).collect();
        self.log.read(|tx| tx.quarantined(&ids))
    }

    /// How fresh this replica's view is (`local` unless a sync driver is attached).
    pub fn freshness(&self) -> Freshness {
        self.link.freshness()
    }

    /// Each relay or peer a sync driver of this process is attached to, with the replica's
    /// freshness with respect to it alone, in the order they attached; what [`Replica::freshness`]
    /// combines (docs/freshness.md, "Several peers").
    pub fn peers(&self) -> Vec<PeerFreshness> {
        self.link.peers()
    }
}
