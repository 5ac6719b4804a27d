//! `cairn add`, `cairn delete`, `cairn set-type`.

use anyhow::Result;
use serde_json::json;

use cairn::{Op, Outcome, Receipt, Relation};

use crate::options::{ReplicaOpts, Session};
use crate::output;
use crate::{AddCommand, DeleteCommand, SupersedeCommand};

async fn apply(opts: &ReplicaOpts, ops: Vec<Op>, describe: impl Fn(&Op, Outcome) -> String) -> Result<()> {
    let session = Session::open(opts).await?;
    let to_write = ops.clone();
    let receipt: Receipt = session.write(move |r| Ok(r.write(&to_write)?)).await?;
    if opts.json {
        output::json(&json!({ "version": receipt.version, "outcomes": receipt.outcomes }));
    } else {
        for (op, outcome) in ops.iter().zip(&receipt.outcomes) {
            output::text(&describe(op, *outcome));
        }
        output::text(&format!("-- version {}", receipt.version));
    }
    Ok(())
}

fn note(outcome: Outcome, done: &str, already: &str, missing: &str) -> String {
    match outcome {
        Outcome::Applied => done.to_owned(),
        Outcome::AlreadyExists => already.to_owned(),
        Outcome::NotFound => missing.to_owned(),
    }
}

pub(crate) async fn add(opts: &ReplicaOpts, what: AddCommand) -> Result<()> {
    let ops = match what {
        AddCommand::Entity { name, entity_type, observations } => {
            vec![Op::CreateEntity { name, entity_type, observations }]
        }
        AddCommand::Observation { name, texts, valid } => texts
            .into_iter()
            .map(|text| Op::AddObservation { entity: name.clone(), text, validity: valid.validity() })
            .collect(),
        AddCommand::Relation { from, relation_type, to, valid } => {
            vec![Op::CreateRelation { relation: Relation { from, relation_type, to }, validity: valid.validity() }]
        }
    };
    apply(opts, ops, |op, outcome| match op {
        Op::CreateEntity { name, .. } => {
            note(outcome, &format!("created {name}"), &format!("{name} already exists (unchanged)"), "")
        }
        Op::AddObservation { entity, text, .. } => {
            note(outcome, &format!("{entity}: added {text:?}"), &format!("{entity}: already had {text:?}"), "")
        }
        Op::CreateRelation { relation: r, .. } => {
            let s = format!("{} --{}--> {}", r.from, r.relation_type, r.to);
            note(outcome, &format!("related {s}"), &format!("already related {s}"), "")
        }
        _ => String::new(),
    })
    .await
}

pub(crate) async fn delete(opts: &ReplicaOpts, what: DeleteCommand) -> Result<()> {
    let ops = match what {
        DeleteCommand::Entity { names } => names.into_iter().map(|name| Op::DeleteEntity { name }).collect(),
        DeleteCommand::Observation { name, texts } => {
            texts.into_iter().map(|text| Op::DeleteObservation { entity: name.clone(), text }).collect()
        }
        DeleteCommand::Relation { from, relation_type, to } => {
            vec![Op::DeleteRelation { relation: Relation { from, relation_type, to } }]
        }
    };
    apply(opts, ops, |op, outcome| match op {
        Op::DeleteEntity { name } => {
            note(outcome, &format!("deleted {name}"), "", &format!("{name}: not found (nothing to delete)"))
        }
        Op::DeleteObservation { entity, text } => {
            note(outcome, &format!("{entity}: deleted {text:?}"), "", &format!("{entity}: no observation {text:?}"))
        }
        Op::DeleteRelation { relation: r } => {
            let s = format!("{} --{}--> {}", r.from, r.relation_type, r.to);
            note(outcome, &format!("deleted {s}"), "", &format!("no relation {s}"))
        }
        _ => String::new(),
    })
    .await
}

pub(crate) async fn set_type(opts: &ReplicaOpts, name: String, entity_type: String) -> Result<()> {
    let ops = vec![Op::SetEntityType { name, entity_type }];
    apply(opts, ops, |op, _| match op {
        Op::SetEntityType { name, entity_type } => format!("{name} is now of type {entity_type:?}"),
        _ => String::new(),
    })
    .await
}

pub(crate) async fn supersede(opts: &ReplicaOpts, what: SupersedeCommand) -> Result<()> {
    let op = match what {
        SupersedeCommand::Observation { name, old, new, at } => Op::SupersedeObservation { entity: name, old, new, at },
        SupersedeCommand::Relation { from, relation_type, to, new_to, new_from, new_type, at } => {
            let new = Relation {
                from: new_from.unwrap_or_else(|| from.clone()),
                relation_type: new_type.unwrap_or_else(|| relation_type.clone()),
                to: new_to,
            };
            Op::SupersedeRelation { old: Relation { from, relation_type, to }, new, at }
        }
    };
    apply(opts, vec![op], |op, outcome| match op {
        Op::SupersedeObservation { entity, old, new, .. } => note(
            outcome,
            &format!("{entity}: {old:?} superseded by {new:?}"),
            "",
            &format!("{entity}: no observation {old:?} (nothing written)"),
        ),
        Op::SupersedeRelation { old, new, .. } => {
            let arrow = |r: &Relation| format!("{} --{}--> {}", r.from, r.relation_type, r.to);
            note(
                outcome,
                &format!("{} superseded by {}", arrow(old), arrow(new)),
                "",
                &format!("no relation {} (nothing written)", arrow(old)),
            )
        }
        _ => String::new(),
    })
    .await
}
