//! One tool call on a replica, synchronously: the arguments checked as the reference server
//! checks them, the operation, and the answer in the reference server's shape. `cairn mcp` runs
//! it off its runtime; the Python package runs it with the GIL released.

use serde_json::json;

use cairn::{DEFAULT_SEARCH_LIMIT, Graph, Op, Outcome, Read, Receipt, Replica, Version};

use crate::args::*;
use crate::error::ToolError;
use crate::reply::{self, Reply, Seen, done, notice, success};
use crate::shape::RefRelation;

/// Runs `tool` with `args` on `replica`. Every tool but `memory_status` (which reports the sync
/// clients and peers its caller runs) is here.
pub fn call(replica: &Replica, tool: &str, args: JsonObject) -> Result<Reply, ToolError> {
    match tool {
        "create_entities" => {
            let a: CreateEntities = arguments(tool, args)?;
            let ops = a
                .entities
                .iter()
                .map(|e| Op::CreateEntity {
                    name: e.name.clone(),
                    entity_type: e.entity_type.clone(),
                    observations: e.observations.clone(),
                })
                .collect();
            let receipt = write(replica, ops, a.expect)?;
            let (mut created, mut skipped) = (Vec::new(), Vec::new());
            for (entity, outcome) in a.entities.into_iter().zip(&receipt.outcomes) {
                match outcome {
                    Outcome::Applied => created.push(entity.stored()),
                    _ => skipped.push(entity.name),
                }
            }
            Ok(written(reply::created_entities(&created, skipped), receipt))
        }
        "create_relations" => {
            let a: CreateRelations = arguments(tool, args)?;
            let ops = a
                .relations
                .iter()
                .map(|r| Op::CreateRelation { relation: r.relation.to_cairn(), validity: r.validity.validity() })
                .collect();
            let receipt = write(replica, ops, a.expect)?;
            let created: Vec<&RefRelation> = a
                .relations
                .iter()
                .zip(&receipt.outcomes)
                .filter(|(_, o)| **o == Outcome::Applied)
                .map(|(r, _)| &r.relation)
                .collect();
            let r = success(&created, Some("relations"), None);
            Ok(written(r, receipt))
        }
        "add_observations" => {
            let a: AddObservations = arguments(tool, args)?;
            let mut ops = Vec::new();
            for item in &a.observations {
                for content in &item.contents {
                    ops.push(Op::AddObservation {
                        entity: item.entity_name.clone(),
                        text: content.text().to_owned(),
                        validity: content.validity(),
                    });
                }
            }
            let receipt = write(replica, ops, a.expect)?;
            let mut outcomes = receipt.outcomes.iter();
            let results: Vec<Added> = a
                .observations
                .into_iter()
                .map(|item| Added {
                    added_observations: item
                        .contents
                        .into_iter()
                        .filter(|_| outcomes.next() == Some(&Outcome::Applied))
                        .map(|c| c.text().to_owned())
                        .collect(),
                    entity_name: item.entity_name,
                })
                .collect();
            Ok(written(success(&results, Some("results"), None), receipt))
        }
        "delete_entities" => {
            let a: DeleteEntities = arguments(tool, args)?;
            let ops = a.entity_names.into_iter().map(|name| Op::DeleteEntity { name }).collect();
            let receipt = write(replica, ops, a.expect)?;
            Ok(written(done("Entities deleted successfully"), receipt))
        }
        "delete_observations" => {
            let a: DeleteObservations = arguments(tool, args)?;
            let mut ops = Vec::new();
            for d in a.deletions {
                for text in d.observations {
                    ops.push(Op::DeleteObservation { entity: d.entity_name.clone(), text });
                }
            }
            let receipt = write(replica, ops, a.expect)?;
            Ok(written(done("Observations deleted successfully"), receipt))
        }
        "delete_relations" => {
            let a: Relations = arguments(tool, args)?;
            let ops = a.relations.iter().map(|r| Op::DeleteRelation { relation: r.to_cairn() }).collect();
            let receipt = write(replica, ops, a.expect)?;
            Ok(written(done("Relations deleted successfully"), receipt))
        }
        "read_graph" => {
            let options = arguments::<ReadArgs>(tool, args)?.options()?;
            graph_read(replica, replica.read_graph_with(&options)?)
        }
        "search_nodes" => {
            let a: Query = arguments(tool, args)?;
            let options = a.read.options()?;
            graph_read(replica, replica.search_with(&a.query, DEFAULT_SEARCH_LIMIT, &options)?)
        }
        "open_nodes" => {
            let a: Names = arguments(tool, args)?;
            let options = a.read.options()?;
            graph_read(replica, replica.open_nodes_with(&a.names, &options)?)
        }
        "supersede_observations" => {
            let a: SupersedeObservations = arguments(tool, args)?;
            let ops = a
                .observations
                .iter()
                .map(|o| Op::SupersedeObservation {
                    entity: o.entity_name.clone(),
                    old: o.replaces.clone(),
                    new: o.content.clone(),
                    at: o.valid_from,
                })
                .collect();
            let receipt = write(replica, ops, a.expect)?;
            let items = a
                .observations
                .iter()
                .map(|o| json!({ "entityName": o.entity_name, "replaces": o.replaces, "content": o.content }));
            let r = reply::superseded("results", items, &receipt.outcomes, "observation");
            Ok(written(r, receipt))
        }
        "supersede_relations" => {
            let a: SupersedeRelations = arguments(tool, args)?;
            let ops = a
                .relations
                .iter()
                .map(|r| Op::SupersedeRelation {
                    old: r.replaces.to_cairn(),
                    new: r.relation.to_cairn(),
                    at: r.valid_from,
                })
                .collect();
            let receipt = write(replica, ops, a.expect)?;
            let items = a.relations.iter().map(|r| {
                let mut item = serde_json::to_value(&r.relation).unwrap_or_default();
                item["replaces"] = serde_json::to_value(&r.replaces).unwrap_or_default();
                item
            });
            let r = reply::superseded("relations", items, &receipt.outcomes, "relation");
            Ok(written(r, receipt))
        }
        "memory_changes_since" => {
            let a: Since = arguments(tool, args)?;
            let since: Version = a.since.parse().map_err(|e: cairn::ParseIdError| ToolError::invalid(e.to_string()))?;
            let read = replica.changes_since(since, a.limit.unwrap_or(200))?;
            changes(replica, read)
        }
        "memory_history" => {
            let a: Name = arguments(tool, args)?;
            changes(replica, replica.history(&a.name)?)
        }
        other => Err(ToolError::invalid(format!("MCP error -32602: Tool {other} not found"))),
    }
}

/// A write, conditional on `expect` when one is given: it then depends on every entity the
/// batch names.
fn write(replica: &Replica, ops: Vec<Op>, expect: Option<String>) -> Result<Receipt, ToolError> {
    let expect: Option<Version> = expect
        .map(|e| e.parse().map_err(|e: cairn::ParseIdError| ToolError::invalid(format!("invalid expect: {e}"))))
        .transpose()?;
    let touched = touched_entities(&ops);
    Ok(match expect {
        Some(v) => replica.write_if(&ops, v, &touched)?,
        None => replica.write(&ops)?,
    })
}

fn written(mut r: Reply, receipt: Receipt) -> Reply {
    r.written = Some(receipt.version);
    r
}

/// A graph read's answer: the graph, the freshness line, and the line about supersede conflicts.
fn graph_read(replica: &Replica, read: Read<Graph>) -> Result<Reply, ToolError> {
    let peers = replica.peers();
    let mut r = success(&reply::graph(&read.data), None, notice(&read.freshness, &peers, &read.unseen, read.read_only));
    r.texts.extend(reply::conflict_notice(&read.data.conflicts));
    r.seen = Some(Seen::of(&read));
    Ok(r)
}

/// A list of changes (history, changes since), with the version read.
fn changes(replica: &Replica, read: Read<Vec<cairn::EntityChange>>) -> Result<Reply, ToolError> {
    let value = json!({ "changes": read.data, "version": read.version });
    let mut r = success(&value, None, notice(&read.freshness, &replica.peers(), &read.unseen, read.read_only));
    r.seen = Some(Seen::of(&read));
    Ok(r)
}

/// The entities a batch names: what a conditional write depends on.
pub fn touched_entities(ops: &[Op]) -> Vec<String> {
    let mut names = Vec::new();
    for op in ops {
        match op {
            Op::CreateEntity { name, .. } | Op::SetEntityType { name, .. } | Op::DeleteEntity { name } => {
                names.push(name.clone())
            }
            Op::AddObservation { entity, .. }
            | Op::DeleteObservation { entity, .. }
            | Op::SupersedeObservation { entity, .. } => names.push(entity.clone()),
            Op::CreateRelation { relation, .. } | Op::DeleteRelation { relation } => {
                names.push(relation.from.clone());
                names.push(relation.to.clone());
            }
            Op::SupersedeRelation { old, new, .. } => {
                names.extend([old.from.clone(), old.to.clone(), new.from.clone(), new.to.clone()]);
            }
        }
    }
    names.sort();
    names.dedup();
    names
}
