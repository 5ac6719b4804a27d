//! The commands. Each opens what it needs, does one job, and prints through `output`.

pub(crate) mod demo;
mod edit;
mod read;
pub(crate) mod relay;
mod status;
pub(crate) mod transfer;

use anyhow::Result;

use crate::{Cli, Command};

/// Runs the command line's command on a runtime of its own.
pub(crate) fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<()> {
    let opts = &cli.replica;
    match cli.command {
        Command::Add(what) => edit::add(opts, what).await,
        Command::Delete(what) => edit::delete(opts, what).await,
        Command::SetType { name, entity_type } => edit::set_type(opts, name, entity_type).await,
        Command::Search { query, limit } => read::search(opts, &query, limit).await,
        Command::Show { names } => read::show(opts, &names).await,
        Command::History { name } => read::history(opts, &name).await,
        Command::Changes { since, limit } => read::changes(opts, &since, limit).await,
        Command::Graph { format, all } => read::graph(opts, format, all).await,
        Command::Status => status::status(opts).await,
        Command::Sync { watch } => status::sync(opts, watch).await,
        Command::Import { file, batch } => transfer::import(opts, &file, batch).await,
        Command::Export { output } => transfer::export(opts, output.as_deref()).await,
        Command::Mcp => crate::mcp::serve(cli.replica).await,
        Command::Relay(args) => relay::run(args).await,
        Command::Demo => demo::run(opts.json).await,
    }
}
