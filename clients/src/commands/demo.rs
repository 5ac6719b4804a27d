//! `cairn demo`: a relay and three agents in one process on loopback. They write concurrently,
//! one of them offline, and converge; every step prints what each agent sees and how fresh it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use cairn::{Durability, Error, Freshness, Op, OpenOptions, Relation, Replica, Validity};
use cairn_sync::{ClientOptions, Relay, RelayConfig, RelayStore, SyncClient};

use crate::output;

struct Agent {
    name: &'static str,
    replica: Arc<Replica>,
    client: Option<SyncClient>,
}

fn entity(name: &str, ty: &str, obs: &[&str]) -> Op {
    Op::CreateEntity {
        name: name.into(),
        entity_type: ty.into(),
        observations: obs.iter().map(|s| s.to_string()).collect(),
    }
}

fn observe(entity: &str, text: &str) -> Op {
    Op::AddObservation { entity: entity.into(), text: text.into(), validity: Validity::default() }
}

async fn write(agent: &Agent, ops: Vec<Op>) -> Result<cairn::Receipt> {
    on(&agent.replica, move |r| r.write(&ops)).await
}

/// Replica work on tokio's blocking pool: the relay and the sync clients share this runtime.
async fn on<T: Send + 'static>(
    replica: &Arc<Replica>,
    f: impl FnOnce(&Replica) -> cairn::Result<T> + Send + 'static,
) -> Result<T> {
    Ok(cairn_sync::off_runtime(replica, move |r| f(r)).await?)
}

/// Waits until `ok` holds, asking it on the blocking pool (it may read replicas).
async fn wait(what: &str, timeout: Duration, ok: impl Fn() -> bool + Clone + Send + 'static) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !tokio::task::spawn_blocking(ok.clone()).await? {
        if Instant::now() > deadline {
            bail!("demo: timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

pub(crate) async fn run(json_out: bool) -> Result<()> {
    let say = |s: &str| {
        if !json_out {
            output::text(s);
        }
    };
    let dir = tempfile::tempdir()?;
    let relay_dir = dir.path().join("relay");
    // A demo on loopback: the relay runs without tokens (`cairn relay` requires them).
    let config = RelayConfig::new(cairn_sync::hub_config_for(&relay_dir), cairn_sync::Auth::InsecureNoAuth);
    let store = RelayStore::open(&relay_dir, Durability::Normal)?.with_metrics(config.metrics.clone());
    let relay = Relay::start(store, config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(relay.serve(listener, async move {
        let _ = relay_stopped.await;
    }));
    let url = format!("ws://{addr}");
    let connect = |r: &Arc<Replica>| {
        let mut o = ClientOptions::new(url.clone());
        o.min_backoff = Duration::from_millis(50);
        o.tick = Duration::from_millis(50);
        SyncClient::spawn(r.clone(), o)
    };
    let mut agents = Vec::new();
    for name in ["planner", "researcher", "writer"] {
        let options = OpenOptions::new(name.parse()?).durability(Durability::Normal);
        let path = dir.path().join(format!("{name}.db"));
        let replica = Arc::new(tokio::task::spawn_blocking(move || Replica::open_with(path, options)).await??);
        let client = Some(connect(&replica));
        agents.push(Agent { name, replica, client });
    }
    let timeout = Duration::from_secs(20);
    say(&format!(
        "Step 1. A relay listens on {url}; three agents (planner, researcher, writer) connect, each with its own SQLite replica."
    ));
    for a in &agents {
        let r = a.replica.clone();
        wait("every agent is synced", timeout, move || matches!(r.freshness(), Freshness::Synced { .. })).await?;
        on(&a.replica, |r| r.read_graph()).await?;
    }
    say("        all three report: synced\n");

    say("Step 2. The planner records a project; the others see it, and are told who changed what.");
    write(
        &agents[0],
        vec![entity("Launch", "project", &["ships in March"]), entity("Alice", "person", &["leads Launch"])],
    )
    .await?;
    for a in &agents[1..] {
        let r = a.replica.clone();
        wait("the project reaches everyone", timeout, move || r.status().is_ok_and(|s| s.entities == 2)).await?;
        let read = on(&a.replica, |r| r.read_graph()).await?;
        say(&format!(
            "        {:<10} sees {} entities; {}",
            a.name,
            read.data.entities.len(),
            output::unseen(&read.unseen).unwrap_or_default()
        ));
    }
    say("");

    say("Step 3. The researcher loses its connection and keeps working offline...");
    if let Some(c) = agents[1].client.take() {
        c.stop().await;
    }
    // Stopping detaches the sync driver (reads say `local`); a configured but unreachable relay
    // reads `offline`: show that honestly by pointing the researcher at a dead address.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let mut offline_options = ClientOptions::new(format!("ws://{dead}"));
    offline_options.min_backoff = Duration::from_millis(50);
    let offline_client = SyncClient::spawn(agents[1].replica.clone(), offline_options);
    let r = agents[1].replica.clone();
    wait("the researcher is offline", timeout, move || matches!(r.freshness(), Freshness::Offline { .. })).await?;
    write(
        &agents[1],
        vec![
            observe("Launch", "competitor launches in February"),
            Op::SetEntityType { name: "Launch".into(), entity_type: "product launch".into() },
            entity("Rival Inc", "company", &["cut prices"]),
        ],
    )
    .await?;
    write(
        &agents[1],
        vec![Op::CreateRelation {
            relation: Relation { from: "Rival Inc".into(), relation_type: "competes_with".into(), to: "Launch".into() },
            validity: Validity::default(),
        }],
    )
    .await?;
    say(&format!(
        "        researcher, offline: +\"competitor launches in February\", type := \"product launch\", +Rival Inc\n        its reads say: {}",
        output::freshness(&agents[1].replica.freshness())
    ));
    // The type writes that must conflict are the offline researcher's and the planner's: two
    // connected agents writing "at once" may not be concurrent (one can see the other's change
    // within milliseconds), so the demo does not rely on that.
    say("        ...while the planner and the writer, both connected, write to Launch too:");
    let (p, w) = tokio::join!(
        write(
            &agents[0],
            vec![
                observe("Launch", "budget approved"),
                Op::SetEntityType { name: "Launch".into(), entity_type: "milestone".into() }
            ]
        ),
        write(&agents[2], vec![observe("Launch", "press release drafted")]),
    );
    p?;
    w?;
    say("        planner: +\"budget approved\", type := \"milestone\"; writer: +\"press release drafted\"\n");

    say("Step 4. The researcher reconnects; everyone converges.");
    offline_client.stop().await;
    agents[1].client = Some(connect(&agents[1].replica));
    let replicas: Vec<Arc<Replica>> = agents.iter().map(|a| a.replica.clone()).collect();
    let all = replicas.clone();
    wait("all three hold the same heads", timeout, move || {
        let heads: Vec<_> = all.iter().filter_map(|r| r.heads().ok()).collect();
        heads.len() == 3 && heads.windows(2).all(|w| w[0] == w[1])
    })
    .await?;
    let mut graphs = Vec::new();
    for r in &replicas {
        let synced = r.clone();
        wait("synced", timeout, move || matches!(synced.freshness(), Freshness::Synced { .. })).await?;
        graphs.push(on(r, |r| r.read_graph()).await?);
    }
    for (a, g) in agents.iter().zip(&graphs) {
        say(&format!(
            "        {:<10} {}; {}",
            a.name,
            output::freshness(&g.freshness),
            output::unseen(&g.unseen).unwrap_or_else(|| "nothing new".into())
        ));
    }
    let converged = graphs.windows(2).all(|w| w[0].data == w[1].data);
    if !converged {
        bail!("demo: the agents did not converge");
    }
    let launch = graphs[0].data.entities.iter().find(|e| e.name == "Launch").cloned();
    say("\n        The converged graph, identical on all three agents:");
    if !json_out {
        for line in output::graph(&graphs[0].data).lines() {
            output::text(&format!("          {line}"));
        }
    }
    say(
        "        Every observation survived; the concurrent type writes settled on one winner everywhere, and the loser is reported.\n",
    );

    say("Step 5. The writer acts on a stale view: its conditional write is refused, listing what changed.");
    let stale = on(&agents[2].replica, |r| r.read_graph()).await?.version;
    write(&agents[0], vec![observe("Launch", "moved to April")]).await?;
    let writer = agents[2].replica.clone();
    wait("the change reaches the writer", timeout, move || {
        writer
            .open_nodes(&["Launch".into()])
            .is_ok_and(|r| r.data.entities.iter().any(|e| e.observations.iter().any(|o| o.text == "moved to April")))
    })
    .await?;
    let attempt = cairn_sync::off_runtime(&agents[2].replica, move |r| {
        r.write_if(&[observe("Launch", "announce on March 1")], stale, &["Launch".into()])
    })
    .await;
    let refused = match attempt {
        Err(Error::Conflict { changes, .. }) => {
            for c in &changes {
                say(&format!("        conflict: {}", output::change(c)));
            }
            true
        }
        Ok(_) => false,
        Err(e) => return Err(e.into()),
    };
    if !refused {
        bail!("demo: the stale conditional write was not refused");
    }
    say("        nothing was written; the writer reads again before acting.\n");

    say("Step 6. The planner resolves the type conflict by writing the type again.");
    write(&agents[0], vec![Op::SetEntityType { name: "Launch".into(), entity_type: "product launch".into() }]).await?;
    let all = replicas.clone();
    wait("the resolution reaches everyone", timeout, move || {
        all.iter().all(|replica| {
            replica.open_nodes(&["Launch".into()]).is_ok_and(|r| {
                r.data.entities.first().is_some_and(|e| e.conflicts.is_empty() && e.entity_type == "product launch")
            })
        })
    })
    .await?;
    say("        all three: Launch is a \"product launch\", no conflict.\n");
    let final_graph = on(&agents[0].replica, |r| r.read_graph()).await?;
    say(&format!(
        "converged: all three agents hold the same graph ({} entities, {} relations) — relay {url}, replicas in {}",
        final_graph.data.entities.len(),
        final_graph.data.relations.len(),
        dir.path().display()
    ));
    if json_out {
        output::json(&json!({
            "converged": true,
            "relay": url,
            "entities": final_graph.data.entities.len(),
            "relations": final_graph.data.relations.len(),
            "launch_after_merge": launch,
            "stale_write_refused": refused,
        }));
    }
    for a in agents {
        if let Some(c) = a.client {
            c.stop().await;
        }
    }
    let _ = stop_relay.send(());
    Ok(())
}
