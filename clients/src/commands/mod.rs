//! The commands. Each opens what it needs, does one job, and prints through `output`.

pub(crate) mod demo;
mod edit;
mod operate;
mod read;
pub(crate) mod relay;
mod status;
pub(crate) mod transfer;

use anyhow::Result;

use crate::{Cli, Command};

/// A command that printed its report and ends with this exit code and one line on stderr.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Exit {
    pub(crate) code: u8,
    pub(crate) message: String,
}

/// Runs the command line's command on a runtime of its own.
pub(crate) fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Add { opts, what } => edit::add(&opts, what).await,
        Command::Delete { opts, what } => edit::delete(&opts, what).await,
        Command::SetType { opts, name, entity_type } => edit::set_type(&opts, name, entity_type).await,
        Command::Search { opts, when, query, limit } => read::search(&opts, &query, limit, when.options()).await,
        Command::Show { opts, when, names } => read::show(&opts, &names, when.options()).await,
        Command::Supersede { opts, what } => edit::supersede(&opts, what).await,
        Command::History { opts, name } => read::history(&opts, &name).await,
        Command::Changes { opts, since, limit } => read::changes(&opts, &since, limit).await,
        Command::Graph { opts, format, when } => read::graph(&opts, format, when.options()).await,
        Command::Status { opts } => status::status(&opts).await,
        Command::Check { opts } => operate::check(&opts).await,
        Command::Repair { opts } => operate::repair(&opts).await,
        Command::Backup { opts, dest, force } => operate::backup(&opts, &dest, force).await,
        Command::Sync { opts, watch, peer } => status::sync(&opts, watch, &peer).await,
        Command::Import { opts, file, batch, skip_bad_lines, pick, dry_run, .. } => {
            let options = transfer::ImportOptions { batch, skip_bad_lines, ..transfer::ImportOptions::default() };
            match file {
                Some(file) => transfer::import(&opts, &file, options).await,
                None => crate::locate::import_from_reference(&opts, pick.as_deref(), dry_run, options).await,
            }
        }
        Command::Export { opts, output } => transfer::export(&opts, output.as_deref()).await,
        Command::Mcp { opts, import_reference, peer } => crate::mcp::serve(opts, import_reference, peer).await,
        Command::Relay(args) => relay::run(args).await,
        Command::Peer(args) => crate::peer::run(args).await,
        Command::Demo { json } => demo::run(json).await,
    }
}
