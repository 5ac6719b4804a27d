//! `cairn status` and `cairn sync`.

use anyhow::{Result, bail};
use serde_json::json;

use crate::options::{ReplicaOpts, Session};
use crate::output;

pub(crate) async fn status(opts: &ReplicaOpts) -> Result<()> {
    let session = Session::open(opts).await?;
    let replica = session.replica.clone();
    let status = tokio::task::spawn_blocking(move || replica.status()).await??;
    let pending = session.pending().await;
    let relay_error = session.last_error().map(|e| e.to_string());
    let path = opts.db_path();
    if opts.json {
        output::json(&json!({
            "db": path,
            "graph": opts.graph,
            "agent": opts.agent_name(),
            "relay": opts.relay.as_deref().map(cairn_sync::redacted_url),
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
                "relay      {}: {}; {} change(s) not yet on the relay",
                cairn_sync::redacted_url(url),
                match (&relay_error, p.settled) {
                    (_, true) => "in step".to_owned(),
                    (Some(why), false) => format!("not in step ({})", output::safe(why)),
                    (None, false) => "not in step".to_owned(),
                },
                p.changes
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

/// `cairn check`: the quarantine, with who sent each change and the rule it broke.
pub(crate) async fn check(opts: &ReplicaOpts) -> Result<()> {
    let session = Session::open(opts).await?;
    let replica = session.replica.clone();
    let quarantined = tokio::task::spawn_blocking(move || replica.quarantined()).await??;
    if opts.json {
        output::json(&json!({ "graph": opts.graph, "quarantined": quarantined }));
    } else if quarantined.is_empty() {
        output::text(&format!("graph {}: nothing quarantined", opts.graph));
    } else {
        output::text(&format!(
            "graph {}: {} change(s) kept out of every read (docs/schema.md, \"What a change may do\"):",
            opts.graph,
            quarantined.len()
        ));
        for q in &quarantined {
            let rule = q.rule.as_deref().map(|r| format!("rule \"{r}\"")).unwrap_or_else(|| "builds on one".into());
            output::text(&format!(
                "  {} by {} at {}: {rule}: {}",
                &q.hash[..q.hash.len().min(12)],
                q.agent.escape_debug(),
                q.at,
                q.detail.escape_debug()
            ));
        }
    }
    session.close().await;
    Ok(())
}

pub(crate) async fn sync(opts: &ReplicaOpts, watch: bool) -> Result<()> {
    let Some(url) = opts.relay.as_deref().map(|u| cairn_sync::redacted_url(u).to_owned()) else {
        bail!("no relay to sync with; pass --relay ws://HOST:PORT or set CAIRN_RELAY");
    };
    let session = Session::open(opts).await?;
    let pending = session.pending().await;
    let settled = pending.is_some_and(|p| p.settled);
    if opts.json {
        output::json(&json!({ "relay": url, "settled": settled, "pending": pending }));
    } else if settled {
        output::text(&format!("in step with {url}"));
    }
    if watch {
        if !opts.json {
            output::text("watching; Ctrl-C to stop");
        }
        cairn_sync::shutdown_signal().await;
    }
    let why = session.last_error();
    session.close().await;
    if !settled && !watch {
        match why {
            Some(e) => bail!("could not sync with {url}: {e}"),
            None => bail!("could not sync with {url}; is the relay running and the token right?"),
        }
    }
    Ok(())
}
