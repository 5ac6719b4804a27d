//! `--discover`: finding peers on the LAN with mDNS/DNS-SD (the `mdns-sd` crate, no protocol
//! of our own). A listening replica announces a `_cairn._tcp` service (its listen port, with
//! its graph and replica id in TXT records) and browses for others; each instance of the same
//! graph that is not itself is dialed once, presenting `--peer-token`, as a `--peer` would be.
//! Whether the peer accepts is the peer's token check, as for any connection.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

use cairn::Replica;
use cairn_sync::SyncClient;

use crate::options::ReplicaOpts;
use crate::peer::{PeerArgs, peer_options};

/// The DNS-SD service type Cairn replicas announce.
pub(crate) const SERVICE: &str = "_cairn._tcp.local.";

/// Announcing, browsing, and the peers dialed so far.
pub(crate) struct Discovery {
    daemon: ServiceDaemon,
    stop: Arc<AtomicBool>,
    browser: Option<std::thread::JoinHandle<()>>,
    dialer: tokio::task::JoinHandle<Vec<SyncClient>>,
}

impl Discovery {
    /// Announces `replica` listening on `listen`, and dials the peers of its graph it finds.
    pub(crate) fn start(
        replica: &Arc<Replica>,
        listen: SocketAddr,
        args: &PeerArgs,
        opts: &ReplicaOpts,
    ) -> Result<Discovery> {
        let daemon = ServiceDaemon::new().context("cannot start mDNS discovery")?;
        // Loopback too: two replicas on one machine (and the tests) find each other there.
        if let Err(e) = daemon.enable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6]) {
            tracing::warn!(error = %e, "mDNS: cannot use the loopback interface");
        }
        let graph = replica.graph().to_string();
        let id = cairn::sync::ReplicaDocs::new(replica.clone()).storage_id().to_string();
        // An instance name is at most 63 bytes; the replica id keeps it unique.
        let short: String = id.chars().filter(char::is_ascii_alphanumeric).rev().take(16).collect();
        let instance = format!("cairn-{short}");
        let host = format!("{instance}.local.");
        let properties = [("graph", graph.as_str()), ("id", id.as_str())];
        let info = if listen.ip().is_unspecified() {
            ServiceInfo::new(SERVICE, &instance, &host, "", listen.port(), &properties[..])
                .map(ServiceInfo::enable_addr_auto)
        } else {
            ServiceInfo::new(SERVICE, &instance, &host, listen.ip(), listen.port(), &properties[..])
        }
        .context("cannot describe this replica for mDNS")?;
        daemon.register(info).context("cannot announce this replica with mDNS")?;
        let events = daemon.browse(SERVICE).context("cannot browse for peers with mDNS")?;
        let stop = Arc::new(AtomicBool::new(false));
        let (found, mut urls) = mpsc::unbounded_channel::<String>();
        // The crate's receiver blocks: it gets a thread of its own, which checks for a stop
        // every half second.
        let browser = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("cairn-mdns".into())
                .spawn(move || browse(&events, &graph, &id, &stop, &found))
                .context("cannot start the mDNS browser thread")?
        };
        let (replica, args, opts) = (replica.clone(), args.clone(), opts.clone());
        let dialer = tokio::spawn(async move {
            let mut dialed = BTreeSet::new();
            let mut clients = Vec::new();
            while let Some(url) = urls.recv().await {
                if dialed.insert(url.clone()) {
                    tracing::info!(%url, "found a peer with mDNS; dialing it");
                    clients.push(SyncClient::spawn(replica.clone(), peer_options(&url, &args, &opts)));
                }
            }
            clients
        });
        Ok(Discovery { daemon, stop, browser: Some(browser), dialer })
    }

    /// Stops announcing and browsing, and every sync client discovery started.
    pub(crate) async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(done) = self.daemon.shutdown() {
            // Bounded: the daemon says goodbye on the network first.
            let _ = tokio::task::spawn_blocking(move || done.recv_timeout(Duration::from_secs(2))).await;
        }
        if let Some(browser) = self.browser.take() {
            let _ = tokio::task::spawn_blocking(move || browser.join()).await;
        }
        // The browser's end closed the channel, so the dialer ends too.
        if let Ok(clients) = (&mut self.dialer).await {
            for c in clients {
                c.stop().await;
            }
        }
    }
}

/// Reads the browse events until stopped; sends the URL of each resolved instance of `graph`
/// other than this replica (`id`).
fn browse(
    events: &mdns_sd::Receiver<ServiceEvent>,
    graph: &str,
    id: &str,
    stop: &AtomicBool,
    found: &mpsc::UnboundedSender<String>,
) {
    while !stop.load(Ordering::SeqCst) {
        let event = match events.recv_timeout(Duration::from_millis(500)) {
            Ok(e) => e,
            Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
            Err(mdns_sd::RecvTimeoutError::Disconnected) => return,
        };
        let ServiceEvent::ServiceResolved(service) = event else { continue };
        if service.get_property_val_str("graph") != Some(graph) || service.get_property_val_str("id") == Some(id) {
            continue;
        }
        // Prefer an IPv4 address (loopback first, on one machine), then any.
        let mut addrs: Vec<IpAddr> = service.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
        addrs.sort_by_key(|a| (!a.is_ipv4(), !a.is_loopback()));
        if let Some(ip) = addrs.first() {
            let url = format!("ws://{}", SocketAddr::new(*ip, service.get_port()));
            if found.send(url).is_err() {
                return;
            }
        }
    }
}
