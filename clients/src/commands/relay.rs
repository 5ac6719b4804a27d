//! `cairn relay`: run a relay.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Options of `cairn relay`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RelayArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the relay stores graphs [default: <data dir>/cairn/relay]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Commit with synchronous=NORMAL instead of FULL (survives a crash, not a power loss)
    #[arg(long)]
    fast_commits: bool,
}

pub(crate) async fn run(args: RelayArgs) -> Result<()> {
    let data = args.data.unwrap_or_else(|| crate::options::data_dir().join("relay"));
    let durability = if args.fast_commits { cairn::Durability::Normal } else { cairn::Durability::Full };
    cairn_sync::run_relay(args.listen, &data, durability).await?;
    Ok(())
}
