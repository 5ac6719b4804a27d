//! `cairn status` and `cairn sync`.

use anyhow::{Result, bail};
use serde_json::json;

use crate::options::{ReplicaOpts, SYNC_COMMAND_WAIT, Session};
use crate::output;
use crate::peer::{PeerArgs, Peering};

pub(crate) async fn status(opts: &ReplicaOpts) -> Result<()> {
    let session = Session::open(opts).await?;
    let replica = session.replica.clone();
    let status = tokio::task::spawn_blocking(move || replica.status()).await??;
    let pending = session.pending().await;
    let relay_error = session.last_error().map(|e| e.to_string());
    let relay_state = session.relay_state();
    let path = opts.db_path();
    if opts.json {
        output::json(&json!({
            "db": path,
            "graph": opts.graph,
            "agent": opts.agent_name(),
            "relay": opts.relay.as_deref().map(cairn_sync::redacted_url),
            "relay_state": relay_state,
            "status": status,
            "pending": pending,
            "relay_error": relay_error,
        }));
    } else {
        output::text(&format!(
            "database   {} ({:.1} MiB)",
            path.display(),
            status.database_bytes as f64 / (1 << 20) as f64
        ));
        output::text(&format!("graph      {} (agent {})", opts.graph, opts.agent_name()));
        output::text(&format!(
            "contents   {} entities, {} observations, {} relations",
            status.entities, status.observations, status.relations
        ));
        output::text(&format!("version    {}", status.version));
        match (&opts.relay, pending) {
            (None, _) => output::text("relay      none (local only; set --relay or CAIRN_RELAY to sync)"),
            (Some(url), Some(p)) => output::text(&format!(
                "relay      {}: {}; {} change(s) {}",
                cairn_sync::redacted_url(url),
                match (&relay_error, p.settled, relay_state) {
                    (_, true, _) => "in step".to_owned(),
                    (Some(why), false, Some("offline")) => format!("offline ({})", output::safe(why)),
                    (None, false, Some("offline")) => "offline (no answer)".to_owned(),
                    (Some(why), false, _) => format!("not in step ({})", output::safe(why)),
                    (None, false, _) => "not in step".to_owned(),
                },
                p.changes,
                // Offline, the relay's copy is unknown: every change counts as not confirmed.
                if relay_state == Some("offline") { "not confirmed on the relay" } else { "not yet on the relay" }
            )),
            (Some(url), None) => output::text(&format!("relay      {}", cairn_sync::redacted_url(url))),
        }
        output::text(&format!("freshness  {}", output::freshness(&status.freshness)));
        if let Some(line) = output::unseen(&status.unseen) {
            output::text(&format!("unseen     {line}"));
        }
        if let Some(cause) = status.read_only {
            output::text(&format!("access     read-only: {cause}"));
        }
        if status.quarantined > 0 {
            output::text(&format!(
                "quarantine {} change(s) an older version stored break the schema and are kept out of reads; `cairn check` lists them",
                status.quarantined
            ));
        }
    }
    session.close().await;
    Ok(())
}

pub(crate) async fn sync(opts: &ReplicaOpts, watch: bool, peer: &PeerArgs) -> Result<()> {
    if peer.configured() && !watch {
        bail!("--listen, --peer and --discover keep syncing with peers: add --watch");
    }
    let Some(url) = opts.relay.as_deref().map(|u| cairn_sync::redacted_url(u).to_owned()) else {
        if peer.configured() {
            return watch_peers(opts, peer).await;
        }
        bail!(
            "no relay to sync with; pass --relay ws://HOST:PORT or set CAIRN_RELAY (or, with --watch, sync with \
             peers: --listen ADDR, --peer URL)"
        );
    };
    // Syncing is this command's job: once, it waits longer than other commands for a relay that
    // answers slowly and fails when it cannot sync; watching, it only waits to say how it stands
    // and then keeps syncing (and reconnecting) until interrupted.
    let session =
        if watch { Session::open(opts).await? } else { Session::open_waiting(opts, SYNC_COMMAND_WAIT, true).await? };
    let pending = session.pending().await;
    let settled = pending.is_some_and(|p| p.settled);
    let relay_state = session.relay_state();
    if opts.json {
        output::json(&json!({ "relay": url, "relay_state": relay_state, "settled": settled, "pending": pending }));
    } else if settled {
        output::text(&format!("in step with {url}"));
    }
    if watch {
        let peering = match peer.configured() {
            true => Some(start_peers(&session, opts, peer).await?),
            false => None,
        };
        if !opts.json {
            output::text("watching; Ctrl-C to stop");
        }
        cairn_sync::shutdown_signal().await;
        if let Some(p) = peering {
            p.stop().await;
        }
    }
    let why = session.last_error();
    let offline = relay_state == Some("offline");
    session.close().await;
    if !settled && !watch {
        let changes = pending.map(|p| p.changes).unwrap_or(0);
        let state = if offline { "offline: " } else { "" };
        match why {
            Some(e) => {
                bail!("{state}could not sync with {url}: {e} ({changes} change(s) here not confirmed on the relay)")
            }
            None => bail!(
                "{state}could not sync with {url} within the sync timeout ({changes} change(s) here not confirmed on \
                 the relay); is the relay running and the token right? --sync-timeout waits longer"
            ),
        }
    }
    Ok(())
}

/// Starts the peers of `cairn sync --watch` on the session's replica and says where it listens
/// and whom it dials.
async fn start_peers(session: &Session, opts: &ReplicaOpts, peer: &PeerArgs) -> Result<Peering> {
    let peering = Peering::start(&session.replica, peer, opts).await?;
    let listening = peering.listening();
    let dialing: Vec<String> = peering.dialed().into_iter().map(|(url, _)| url).collect();
    if opts.json {
        output::json(&json!({ "listening": listening, "peers": dialing, "discover": peer.discover }));
    } else {
        if let Some(url) = &listening {
            output::text(&format!("listening for peers on {url}"));
        }
        for url in &dialing {
            output::text(&format!("syncing with peer {url}"));
        }
    }
    Ok(peering)
}

/// `cairn sync --watch` with peers and no relay: syncs with them until interrupted.
async fn watch_peers(opts: &ReplicaOpts, peer: &PeerArgs) -> Result<()> {
    let session = Session::open(opts).await?;
    let peering = start_peers(&session, opts, peer).await?;
    if !opts.json {
        output::text("watching; Ctrl-C to stop");
    }
    cairn_sync::shutdown_signal().await;
    peering.stop().await;
    session.close().await;
    Ok(())
}
