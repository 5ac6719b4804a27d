//! Writes: a batch of operations becomes one Automerge change per touched shard, committed with
//! every index update in one SQLite transaction.

use std::collections::BTreeMap;

use automerge::Change;
use automerge::transaction::CommitOptions;

use super::Replica;
use crate::decode::ChangeMessage;
use crate::error::{Error, Result};
use crate::ids::{DocId, Version};
use crate::model::{Millis, Op, Receipt};
use crate::plan::{self, Edit, Planner};
use crate::store::{Cached, events};

/// Below this many edits in a batch, editing documents on one thread is faster than starting more.
const PARALLEL_EDITS: usize = 2_000;

impl Replica {
    /// Applies a batch of operations atomically as one change per touched shard, committed with
    /// every index update in one SQLite transaction before it returns.
    pub fn write(&self, ops: &[Op]) -> Result<Receipt> {
        self.transact(ops, None)
    }

    /// Applies a batch only if no change after `expect` touched any of `depends_on`; otherwise
    /// returns [`Error::Conflict`] listing those changes and writes nothing. The check and the
    /// write are one transaction, atomic against other threads and processes on this file.
    pub fn write_if(&self, ops: &[Op], expect: Version, depends_on: &[String]) -> Result<Receipt> {
        self.transact(ops, Some((expect, depends_on)))
    }

    fn transact(&self, ops: &[Op], precondition: Option<(Version, &[String])>) -> Result<Receipt> {
        plan::validate(ops)?;
        let now = super::now_millis();
        // Serialising one string field cannot fail.
        let message = serde_json::to_string(&ChangeMessage { agent: self.agent.to_string() }).unwrap_or_default();
        let (receipt, changed) = self.log.write(|tx| {
            if let Some((expect, entities)) = precondition {
                self.check_version(tx, expect)?;
                let changes = events::since_touching(tx, self.graph.as_str(), expect.seq, entities)?;
                if !changes.is_empty() {
                    return Err(Error::Conflict { expected: expect, entities: entities.to_vec(), changes });
                }
            }
            let mut planner = Planner::new(tx, self.graph.as_str(), &self.docs, self.agent.as_str(), now);
            for op in ops {
                planner.push(op)?;
            }
            let plan = planner.finish();
            let mut newest = tx.position()?;
            let ids: Vec<DocId> = plan.edits.keys().copied().collect();
            let edited = tx.with_docs(&ids, |docs| edit_docs(docs, &plan.edits, (&message, now)))?;
            for (id, change) in edited {
                if let Some(seq) = tx.log(&self.graph, id, &[change], true)? {
                    newest = seq;
                }
            }
            Ok((Receipt { version: self.version(newest), outcomes: plan.outcomes }, ids))
        })?;
        if !changed.is_empty() {
            self.link.notify(&changed);
        }
        Ok(receipt)
    }
}

/// Applies each document's edits as one change and returns the changes. Large batches edit
/// different shards on several threads (Automerge's per-operation cost dominates them); the
/// threads are scoped and joined before this returns, so nothing outlives the call.
fn edit_docs(
    docs: &mut [(DocId, Cached)],
    edits: &BTreeMap<DocId, Vec<Edit>>,
    commit: (&str, Millis),
) -> Result<Vec<(DocId, Change)>> {
    let run = |chunk: &mut [(DocId, Cached)]| -> Result<Vec<(DocId, Change)>> {
        let mut out = Vec::new();
        for (id, doc) in chunk {
            if let Some(edits) = edits.get(id) {
                out.extend(edit_one(*id, doc, edits, commit)?);
            }
        }
        Ok(out)
    };
    let total: usize = edits.values().map(Vec::len).sum();
    if total < PARALLEL_EDITS {
        return run(docs);
    }
    // Asking the OS is not free (it reads cgroup files); once per process is enough.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = cores.min(docs.len());
    if threads < 2 {
        return run(docs);
    }
    let per_thread = docs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = docs.chunks_mut(per_thread).map(|chunk| s.spawn(move || run(chunk))).collect();
        let mut out = Vec::new();
        for h in handles {
            // A panic inside Automerge is a bug; surface it as one rather than unwinding through.
            let part = h.join().map_err(|_| Error::CorruptStore {
                doc: "batch".into(),
                reason: "a document edit panicked (please report this)".into(),
            })??;
            out.extend(part);
        }
        Ok(out)
    })
}

/// One document's edits as one change (`None` if they changed nothing).
fn edit_one(id: DocId, cached: &mut Cached, edits: &[Edit], commit: (&str, Millis)) -> Result<Option<(DocId, Change)>> {
    let Cached { doc, layout } = cached;
    let layout = layout.as_ref().ok_or_else(|| Error::CorruptStore {
        doc: id.to_string(),
        reason: "the document is not a Cairn shard".into(),
    })?;
    let mut tx = doc.transaction();
    for edit in edits {
        edit.apply(&mut tx, layout)?;
    }
    let options = CommitOptions::default().with_message(commit.0).with_time(commit.1);
    if tx.commit_with(options).0.is_none() {
        return Ok(None);
    }
    let change = doc
        .get_last_local_change()
        .ok_or_else(|| Error::CorruptStore { doc: id.to_string(), reason: "a committed change is missing".into() })?;
    Ok(Some((id, change)))
}
