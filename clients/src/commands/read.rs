//! `cairn search`, `show`, `history`, `changes`, `graph`.

use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;

use cairn::{Graph, Read, ReadOptions, Replica, Version};

use crate::GraphFormat;
use crate::options::{ReplicaOpts, Session};
use crate::output;
use cairn_tools::shape::RefGraph;

/// Runs a read on a blocking thread after syncing, and closes the session.
async fn read<T: Send + 'static>(
    opts: &ReplicaOpts,
    f: impl FnOnce(&Replica) -> cairn::Result<Read<T>> + Send + 'static,
) -> Result<Read<T>> {
    let session = Session::open(opts).await?;
    let replica: Arc<Replica> = session.replica.clone();
    let result = tokio::task::spawn_blocking(move || f(&replica)).await??;
    session.close().await;
    Ok(result)
}

fn print_graph(opts: &ReplicaOpts, read: &Read<Graph>) {
    if opts.json {
        output::json(&json!({
            "entities": RefGraph::from(&read.data).entities,
            "relations": RefGraph::from(&read.data).relations,
            "details": read.data,
            "version": read.version,
            "freshness": read.freshness,
            "unseen": read.unseen,
            "read_only": read.read_only,
        }));
    } else {
        output::text(&output::graph(&read.data));
        output::text(&output::footer(&read.version, &read.freshness, &read.unseen, read.read_only));
    }
}

pub(crate) async fn search(opts: &ReplicaOpts, query: &str, limit: usize, when: ReadOptions) -> Result<()> {
    let query = query.to_owned();
    let r = read(opts, move |rep| rep.search_with(&query, limit, &when)).await?;
    print_graph(opts, &r);
    Ok(())
}

pub(crate) async fn show(opts: &ReplicaOpts, names: &[String], when: ReadOptions) -> Result<()> {
    let names = names.to_vec();
    let r = read(opts, move |rep| rep.open_nodes_with(&names, &when)).await?;
    print_graph(opts, &r);
    Ok(())
}

pub(crate) async fn graph(opts: &ReplicaOpts, format: GraphFormat, when: ReadOptions) -> Result<()> {
    let r = read(opts, move |rep| rep.read_graph_with(&when)).await?;
    match (format, opts.json) {
        (GraphFormat::Dot, _) => output::text(&output::dot(&r.data)),
        (GraphFormat::Json, _) | (_, true) => {
            let g = RefGraph::from(&r.data);
            output::json(&json!({
                "entities": g.entities,
                "relations": g.relations,
                "version": r.version,
                "freshness": r.freshness,
                "unseen": r.unseen,
                "read_only": r.read_only,
            }));
        }
        (GraphFormat::Text, false) => print_graph(opts, &r),
    }
    Ok(())
}

pub(crate) async fn history(opts: &ReplicaOpts, name: &str) -> Result<()> {
    let name = name.to_owned();
    let r = read(opts, move |rep| rep.history(&name)).await?;
    print_changes(opts, &r);
    Ok(())
}

pub(crate) async fn changes(opts: &ReplicaOpts, since: &str, limit: usize) -> Result<()> {
    let since: Version = since.parse().context("invalid --since")?;
    let r = read(opts, move |rep| rep.changes_since(since, limit)).await?;
    print_changes(opts, &r);
    Ok(())
}

fn print_changes(opts: &ReplicaOpts, r: &Read<Vec<cairn::EntityChange>>) {
    if opts.json {
        output::json(&json!({
            "changes": r.data,
            "version": r.version,
            "freshness": r.freshness,
            "unseen": r.unseen,
            "read_only": r.read_only,
        }));
    } else {
        if r.data.is_empty() {
            output::text("(no changes)");
        }
        for c in &r.data {
            output::text(&output::change(c));
        }
        output::text(&output::footer(&r.version, &r.freshness, &r.unseen, r.read_only));
    }
}
