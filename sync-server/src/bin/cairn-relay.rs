//! `cairn-relay`: the relay on its own (the `cairn relay` command runs the same code).
//!
//!     cairn-relay --listen 127.0.0.1:7878 --data ./relay-data [--tls-cert PEM --tls-key PEM] [--insecure-no-auth]
//!     cairn-relay --listen 127.0.0.1:7878 --store postgres://... [--bus nats://...]
//!
//! Tokens are managed with `cairn relay token ...` on the same data directory.

use std::net::SocketAddr;
use std::path::PathBuf;

fn usage() -> ! {
    eprintln!(
        "usage: cairn-relay [--listen ADDR] [--data DIR] [--tls-cert PEM --tls-key PEM] [--insecure-no-auth]
  --listen ADDR       address to listen on (default 127.0.0.1:7878)
  --data DIR          where the relay stores graphs and tokens (default ./relay-data)
  --tls-cert PEM      serve wss:// with this certificate chain (with --tls-key)
  --tls-key PEM       the private key for --tls-cert
  --insecure-no-auth  no tokens: anyone who can connect reads and writes everything (development only)
  --store URL         one node of a relay on this PostgreSQL database (docs/scaling.md)
  --bus URL           with --store: hear of other nodes' writes over this NATS server"
    );
    std::process::exit(2)
}

/// Logs at `info` (refused handshakes, closed connections, revocations: docs/security.md), or as
/// CAIRN_LOG says, else RUST_LOG, like `cairn relay`.
fn log_filter() -> tracing_subscriber::EnvFilter {
    for var in ["CAIRN_LOG", "RUST_LOG"] {
        let Some(value) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) else { continue };
        match tracing_subscriber::EnvFilter::try_new(&value) {
            Ok(filter) => return filter,
            Err(e) => eprintln!("warning: {var}={value:?} is not a log filter ({e}); logging at \"info\""),
        }
    }
    "info".into()
}

fn main() {
    tracing_subscriber::fmt().with_env_filter(log_filter()).with_writer(std::io::stderr).init();
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7878));
    let mut data = PathBuf::from("relay-data");
    let mut insecure = false;
    let (mut cert, mut key) = (None, None);
    let (mut store, mut bus) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().and_then(|a| a.parse().ok()).unwrap_or_else(|| usage()),
            "--data" => data = args.next().map(PathBuf::from).unwrap_or_else(|| usage()),
            "--insecure-no-auth" => insecure = true,
            "--tls-cert" => cert = Some(args.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "--tls-key" => key = Some(args.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "--store" => store = Some(args.next().unwrap_or_else(|| usage())),
            "--bus" => bus = Some(args.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => usage(),
    };
    if bus.is_some() && store.is_none() {
        usage()
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1)
        }
    };
    if let Err(e) = runtime.block_on(cairn_sync::run_relay(
        listen,
        &data,
        cairn_sync::RelayOptions { durability: cairn::Durability::Full, insecure_no_auth: insecure, tls, store, bus },
    )) {
        eprintln!("error: {e}");
        std::process::exit(1)
    }
}
