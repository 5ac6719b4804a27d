//! Access control and hardening, rule by rule, with real websocket clients on loopback: tokens
//! (missing, wrong, expired, revoked, other graph, read-only), every limit, and malformed input
//! of each kind — while other clients keep syncing correctly.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::sync::wire::Message;
use cairn::{DocId, Durability, GraphDocs, GraphName, Replica};
use cairn_sync::tokens::Role;
use cairn_sync::{Auth, ClientOptions, Relay, RelayConfig, RelayStore, SyncClient, Tokens};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const WAIT: Duration = Duration::from_secs(20);

/// A relay with tokens required, configured by `tune`.
async fn secured(
    dir: &Path,
    tune: impl FnOnce(&mut RelayConfig),
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, Tokens) {
    let file = RelayStore::file_in(dir);
    let mut config = RelayConfig::new(cairn_sync::hub_config_for(dir), Auth::Tokens(Tokens::open(&file).unwrap()));
    config.token_check_interval = Duration::from_millis(100);
    tune(&mut config);
    let store = RelayStore::open(dir, Durability::Normal).unwrap().with_metrics(config.metrics.clone());
    let relay = Relay::start(store, config).unwrap();
    let (addr, stop) = serve(relay).await;
    (addr, stop, Tokens::open(&file).unwrap())
}

fn token(tokens: &Tokens, graphs: &[&str], role: Role) -> String {
    let graphs: Vec<String> = graphs.iter().map(|g| g.to_string()).collect();
    tokens.create(&graphs, role, None, None, cairn::now_millis()).unwrap().1
}

fn client(replica: &Arc<Replica>, addr: SocketAddr, token: &str) -> SyncClient {
    SyncClient::spawn(replica.clone(), options(addr).token(Some(token.to_owned())))
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw websocket connection with a token in the Authorization header.
async fn raw(addr: SocketAddr, token: Option<&str>) -> Result<Ws, String> {
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    if let Some(t) = token {
        request.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            Err(format!("{} {body}", response.status().as_u16()))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn join(peer: &str) -> WsMessage {
    WsMessage::Binary(
        Message::Join { sender: peer.into(), storage_id: None, ephemeral: true, versions: Some(vec!["1".into()]) }
            .encode()
            .into(),
    )
}

/// Reads until a protocol message or a close; returns the message, or the close code and reason.
async fn next(ws: &mut Ws) -> Result<Message, (CloseCode, String)> {
    // One deadline for the whole wait: the relay's pings must not extend it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.expect("the relay answered in time") {
            Some(Ok(WsMessage::Binary(b))) => return Ok(Message::decode(&b).unwrap()),
            Some(Ok(WsMessage::Close(f))) => {
                return Err(f.map(|f| (f.code, f.reason.to_string())).unwrap_or((CloseCode::Status, String::new())));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err((CloseCode::Abnormal, e.to_string())),
            None => return Err((CloseCode::Abnormal, "ended".into())),
        }
    }
}

/// Reads until the connection closes; returns the close code and reason.
async fn closed(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        if let Err(close) = next(ws).await {
            return close;
        }
    }
}

async fn handshake(ws: &mut Ws) -> String {
    ws.send(join("raw-client")).await.unwrap();
    match next(ws).await.unwrap() {
        Message::Peer { sender, .. } => sender.to_string(),
        other => panic!("expected peer, got {other:?}"),
    }
}

fn sync_msg(relay: &str, doc: DocId, data: Vec<u8>) -> WsMessage {
    WsMessage::Binary(Message::Sync { sender: "raw-client".into(), target: relay.into(), doc, data }.encode().into())
}

/// An empty document's first sync message ("I have nothing").
fn empty_sync() -> Vec<u8> {
    use cairn::automerge::sync::SyncDoc;
    cairn::automerge::Automerge::new()
        .generate_sync_message(&mut cairn::automerge::sync::State::new())
        .unwrap()
        .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_without_a_valid_token_are_refused_with_401() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(dir.path(), |_| {}).await;
    let good = token(&tokens, &["team"], Role::Write);
    assert!(raw(addr, None).await.unwrap_err().starts_with("401 no token"));
    assert!(raw(addr, Some("cairn_00000000_guess")).await.unwrap_err().starts_with("401 unknown token"));
    assert!(raw(addr, Some(&format!("{good}x"))).await.unwrap_err().starts_with("401"));
    assert!(raw(addr, Some("not-a-token")).await.unwrap_err().starts_with("401 malformed"));
    let (_, expired) = tokens.create(&["team".into()], Role::Write, Some(cairn::now_millis() - 1), None, 0).unwrap();
    assert!(raw(addr, Some(&expired)).await.unwrap_err().contains("expired"));
    // The good token gets in, by header or by query parameter.
    raw(addr, Some(&good)).await.unwrap();
    let (_ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/?token={good}")).await.unwrap();
    // And the refusals are counted.
    let metrics = http_get(addr, "/metrics").await;
    assert!(metrics.contains("cairn_relay_rejected_handshakes_total{reason=\"no_token\"} 1"), "{metrics}");
    assert!(metrics.contains("cairn_relay_rejected_handshakes_total{reason=\"bad_token\"} 4"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_closes_its_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(dir.path(), |_| {}).await;
    let graphs = vec!["default".to_string()];
    let (id, t) = tokens.create(&graphs, Role::Write, None, None, cairn::now_millis()).unwrap();
    let mut ws = raw(addr, Some(&t)).await.unwrap();
    handshake(&mut ws).await;
    // Revoked from another handle on the data file, as `cairn relay token revoke` does.
    Tokens::open(&RelayStore::file_in(dir.path())).unwrap().revoke(&id, cairn::now_millis()).unwrap();
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("revoked"), "{reason}");
    assert!(raw(addr, Some(&t)).await.unwrap_err().contains("revoked"));
    // A sync client with the revoked token says why it is not connected, and stops waiting for
    // a sync that cannot happen well before its timeout.
    let replica = Arc::new(Replica::open(dir.path().join("r.db"), "agent").unwrap());
    let c = client(&replica, addr, &t);
    let started = Instant::now();
    assert!(!c.wait_settled(WAIT).await);
    assert!(started.elapsed() < WAIT, "gave up early on a refused token");
    match c.last_error() {
        Some(cairn_sync::ConnectError::Unauthorized { status: 401, reason }) => {
            assert!(reason.contains("revoked"), "the relay's reason comes through: {reason}")
        }
        other => panic!("expected a refused token, got {other:?}"),
    }
    assert!(!c.is_connected());
    assert_eq!(c.pending().await.unwrap().changes, 0, "genesis is nobody's write: nothing is pending");
    replica.write(&[entity("E", "t", &[])]).unwrap();
    assert_eq!(c.pending().await.unwrap().changes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sees_only_its_graphs() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(&dir.path().join("relay"), |_| {}).await;
    let team = token(&tokens, &["team"], Role::Write);
    // A replica of "team" syncs; a replica of graph "default" with the same token gets nothing.
    let options = cairn::OpenOptions::new("writer".parse().unwrap()).graph("team".parse().unwrap());
    let writer = Arc::new(Replica::open_with(dir.path().join("w.db"), options).unwrap());
    let other = replica(dir.path(), "outsider");
    write(&writer, vec![entity("Secret", "thing", &[])]).await;
    let _c1 = client(&writer, addr, &team);
    let _c2 = client(&other, addr, &team);
    eventually("the team replica is synced", WAIT, || matches!(writer.freshness(), cairn::Freshness::Synced { .. }))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!matches!(other.freshness(), cairn::Freshness::Synced { .. }), "nothing of another graph is served");
    // At the protocol level: a document of another graph is answered as if it did not exist,
    // even though it exists on this relay.
    let other_graph = GraphDocs::of(&"default".parse::<GraphName>().unwrap());
    let team_docs = GraphDocs::of(&"team".parse::<GraphName>().unwrap());
    let admin = token(&tokens, &["*"], Role::Write);
    let mut full = raw(addr, Some(&admin)).await.unwrap();
    let relay_id = handshake(&mut full).await;
    // (Make "default" exist on the relay through the all-graphs token.)
    let seeded = replica(dir.path(), "seeder");
    let seeder = client(&seeded, addr, &admin);
    eventually("default exists on the relay", WAIT, || matches!(seeded.freshness(), cairn::Freshness::Synced { .. }))
        .await;
    seeder.stop().await;
    let mut ws = raw(addr, Some(&team)).await.unwrap();
    let relay_id2 = handshake(&mut ws).await;
    assert_eq!(relay_id, relay_id2);
    ws.send(sync_msg(&relay_id, other_graph.root, empty_sync())).await.unwrap();
    assert!(matches!(next(&mut ws).await.unwrap(), Message::DocUnavailable { doc, .. } if doc == other_graph.root));
    ws.send(sync_msg(&relay_id, team_docs.root, empty_sync())).await.unwrap();
    assert!(matches!(next(&mut ws).await.unwrap(), Message::Sync { .. }), "its own graph is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_tokens_changes_go_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(&dir.path().join("relay"), |_| {}).await;
    let writer_token = token(&tokens, &["default"], Role::Write);
    let reader_token = token(&tokens, &["default"], Role::Read);
    let writer = replica(dir.path(), "writer");
    let reader = replica(dir.path(), "reader");
    let witness = replica(dir.path(), "witness");
    write(&writer, vec![entity("Shared", "thing", &["from the writer"])]).await;
    write(&reader, vec![entity("Sneaky", "thing", &["from a reader"])]).await;
    let _w = client(&writer, addr, &writer_token);
    let r = client(&reader, addr, &reader_token);
    let _x = client(&witness, addr, &writer_token);
    // The reader receives the writer's changes...
    eventually("the reader got Shared", WAIT, || {
        reader.open_nodes(&["Shared".into()]).unwrap().data.entities.len() == 1
    })
    .await;
    eventually("the reader knows it is read-only", WAIT, || r.is_read_only()).await;
    assert!(r.wait_settled(WAIT).await, "a read-only client settles once it has pulled everything");
    // ...but its own change is stored nowhere and forwarded to no one.
    write(&writer, vec![observe("Shared", "later")]).await;
    eventually("the witness got the later write", WAIT, || witness.status().unwrap().observations == 2).await;
    assert!(witness.open_nodes(&["Sneaky".into()]).unwrap().data.entities.is_empty());
    assert!(writer.open_nodes(&["Sneaky".into()]).unwrap().data.entities.is_empty());
    assert!(r.pending().await.unwrap().changes > 0, "the reader's change stays pending, and says so");
    let newcomer = replica(dir.path(), "newcomer");
    let _n = client(&newcomer, addr, &writer_token);
    eventually("the newcomer caught up", WAIT, || newcomer.status().unwrap().entities == 1).await;
    assert!(newcomer.open_nodes(&["Sneaky".into()]).unwrap().data.entities.is_empty(), "nor stored on the relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_token_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(dir.path(), |c| c.max_connections_per_token = 2).await;
    let t = token(&tokens, &["default"], Role::Write);
    let a = raw(addr, Some(&t)).await.unwrap();
    let _b = raw(addr, Some(&t)).await.unwrap();
    assert!(raw(addr, Some(&t)).await.unwrap_err().starts_with("429"));
    drop(a);
    eventually_async("a slot frees when a connection ends", || async { raw(addr, Some(&t)).await.is_ok() }).await;
}

async fn eventually_async<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two replicas syncing through the relay, to show others are unaffected by a misbehaving one.
struct Bystanders {
    a: Arc<Replica>,
    b: Arc<Replica>,
    _clients: [SyncClient; 2],
    n: usize,
}

impl Bystanders {
    async fn new(dir: &Path, addr: SocketAddr, token: &str) -> Bystanders {
        let (a, b) = (replica(dir, "bystander-a"), replica(dir, "bystander-b"));
        let clients = [client(&a, addr, token), client(&b, addr, token)];
        Bystanders { a, b, _clients: clients, n: 0 }
    }

    /// A writes; B must receive it.
    async fn still_syncing(&mut self) {
        self.n += 1;
        write(&self.a, vec![entity(&format!("ok-{}", self.n), "thing", &[])]).await;
        let (b, n) = (self.b.clone(), self.n as u64);
        eventually("bystanders keep syncing", WAIT, || b.status().unwrap().entities == n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_the_offending_connection_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let (addr, _stop, tokens) = secured(&data, |c| {
        c.max_message_bytes = 64 * 1024;
        c.hub.max_inflated_bytes = 1 << 20;
    })
    .await;
    let t = token(&tokens, &["*"], Role::Write);
    let mut bystanders = Bystanders::new(dir.path(), addr, &t).await;
    bystanders.still_syncing().await;
    let doc = GraphDocs::of(&"default".parse().unwrap()).shards[0];

    // Each bad input: the connection is told why and closed; everyone else carries on.
    let garbage: Vec<(&str, Vec<WsMessage>, CloseCode, &str)> = vec![
        (
            "invalid CBOR",
            vec![WsMessage::Binary(b"\xff\x00garbage".to_vec().into())],
            CloseCode::Protocol,
            "malformed message",
        ),
        (
            "unknown message type",
            vec![WsMessage::Binary({
                let mut e = minicbor::Encoder::new(Vec::new());
                e.map(2)
                    .unwrap()
                    .str("type")
                    .unwrap()
                    .str("teleport")
                    .unwrap()
                    .str("senderId")
                    .unwrap()
                    .str("x")
                    .unwrap();
                e.into_writer().into()
            })],
            CloseCode::Protocol,
            "unknown message type",
        ),
        ("a text frame", vec![WsMessage::Text("hello".into())], CloseCode::Unsupported, "text frames"),
        ("an oversized message", vec![WsMessage::Binary(vec![0u8; 100 * 1024].into())], CloseCode::Size, ""),
    ];
    for (what, frames, code, reason) in garbage {
        let mut ws = raw(addr, Some(&t)).await.unwrap();
        for f in frames {
            let _ = ws.send(f).await;
        }
        let (got_code, got_reason) = closed(&mut ws).await;
        assert_eq!(got_code, code, "{what}: {got_reason}");
        assert!(got_reason.contains(reason), "{what}: {got_reason}");
        bystanders.still_syncing().await;
    }

    // After the handshake: sync data that is not Automerge, a message before join, an
    // ephemeral message for a document never opened.
    let changes_before = count_changes(&data);
    // (what, whether to join first, the frame to send given the relay's id, the expected reason)
    type Case = (&'static str, bool, Box<dyn Fn(&str) -> WsMessage>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "not Automerge sync data",
            true,
            Box::new(move |relay: &str| sync_msg(relay, doc, b"definitely not automerge".to_vec())),
            "invalid sync data",
        ),
        (
            "a message before join",
            false,
            Box::new(move |relay: &str| sync_msg(relay, doc, empty_sync())),
            "before join",
        ),
        (
            "ephemeral for an unopened document",
            true,
            Box::new(move |relay: &str| {
                WsMessage::Binary(
                    Message::Ephemeral {
                        sender: "raw".into(),
                        target: relay.into(),
                        doc,
                        count: 1,
                        session: "s".into(),
                        data: vec![1],
                    }
                    .encode()
                    .into(),
                )
            }),
            "not opened",
        ),
        (
            "changes that do not decode",
            true,
            Box::new(move |relay: &str| sync_msg(relay, doc, corrupt_changes())),
            "invalid",
        ),
        (
            "a compressed change that inflates beyond the limit",
            true,
            Box::new(move |relay: &str| sync_msg(relay, doc, deflate_bomb())),
            "more than 1048576 bytes decompressed",
        ),
        (
            "a change whose run-length encoding claims ten million operations",
            true,
            Box::new(move |relay: &str| sync_msg(relay, doc, run_length_bomb())),
            "more than 1048576 bytes decompressed",
        ),
    ];
    for (what, join_first, frame, reason) in cases {
        let mut ws = raw(addr, Some(&t)).await.unwrap();
        let relay_id = if join_first { handshake(&mut ws).await } else { "relay".into() };
        ws.send(frame(&relay_id)).await.unwrap();
        let (code, got) = closed(&mut ws).await;
        assert_eq!(code, CloseCode::Protocol, "{what}: {got}");
        assert!(got.contains(reason), "{what}: {got}");
        bystanders.still_syncing().await;
    }
    // Nothing partial was stored: only the bystanders' writes were logged meanwhile.
    assert_eq!(count_changes(&data), changes_before + 6, "exactly the bystanders' writes, one per case");
}

/// A first sync message for a document holding one change (so the relay creates it).
fn sync_with_a_change() -> Vec<u8> {
    changes_message(false)
}

/// A sync message carrying one change whose bytes were damaged.
fn corrupt_changes() -> Vec<u8> {
    changes_message(true)
}

fn changes_message(corrupt: bool) -> Vec<u8> {
    use cairn::automerge::sync::SyncDoc;
    use cairn::automerge::transaction::Transactable;
    let mut doc = cairn::automerge::Automerge::new();
    let mut tx = doc.transaction();
    tx.put(cairn::automerge::ROOT, "k", "v").unwrap();
    tx.commit();
    let mut state = cairn::automerge::sync::State::new();
    state.their_heads = Some(vec![]);
    state.their_have = Some(vec![cairn::automerge::sync::Have::default()]);
    state.their_need = Some(vec![]);
    let mut msg = doc.generate_sync_message(&mut state).unwrap();
    let mut chunks: Vec<Vec<u8>> = msg.changes.iter().map(<[u8]>::to_vec).collect();
    assert!(!chunks.is_empty());
    if corrupt {
        let last = chunks[0].len() - 3;
        chunks[0][last] ^= 0xff;
    }
    msg.changes = chunks.into();
    msg.encode()
}

/// A sync message whose one chunk is a "compressed change" of 16 MiB of zeros: 16 KiB on the
/// wire, a thousand times that if anything inflated it without a bound.
fn deflate_bomb() -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut encoder, &vec![0u8; 16 << 20]).unwrap();
    let body = encoder.finish().unwrap();
    // Chunk header: magic, checksum (never reached), type 2 = compressed change, LEB128 length.
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    let mut len = body.len();
    while len >= 0x80 {
        chunk.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    chunk.push(len as u8);
    chunk.extend(body);
    let mut msg = cairn::automerge::sync::Message::decode(&changes_message(false)).unwrap();
    msg.changes = vec![chunk].into();
    msg.encode()
}

/// A sync message whose one chunk is a 41-byte change with one operation column holding a single
/// run of ten million rows.
fn run_length_bomb() -> Vec<u8> {
    // Body: no dependencies, a 16-byte actor, seq 1, start op 1, time 0, no message, no other
    // actors; one column (the action column, LEB128 integers): run of 10,000,000 × the value 1.
    let mut body = vec![0, 16];
    body.extend([7; 16]);
    body.extend([1, 1, 0, 0, 0, 1, 0x42, 5]);
    body.extend([0x80, 0xad, 0xe2, 0x04, 1]); // signed LEB128 10,000,000; then the value
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, body.len() as u8];
    chunk.extend(body);
    let mut msg = cairn::automerge::sync::Message::decode(&changes_message(false)).unwrap();
    msg.changes = vec![chunk].into();
    msg.encode()
}

fn count_changes(data: &Path) -> i64 {
    let db = rusqlite::Connection::open(RelayStore::file_in(data)).unwrap();
    db.query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_documents_idle_and_handshake_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(dir.path(), |c| {
        c.messages_per_second = 20.0;
        c.message_burst = 40.0;
        c.idle_timeout = Duration::from_millis(600);
        c.handshake_timeout = Duration::from_millis(300);
        c.hub.max_docs_per_connection = 3;
    })
    .await;
    let t = token(&tokens, &["*"], Role::Write);
    let docs = GraphDocs::of(&"default".parse().unwrap());

    // Rate: a burst past the bucket closes the connection.
    let mut ws = raw(addr, Some(&t)).await.unwrap();
    let relay_id = handshake(&mut ws).await;
    let harmless = Message::RemoteSubscriptionChange {
        sender: "raw-client".into(),
        target: relay_id.clone().into(),
        add: vec![],
        remove: vec![],
    };
    for _ in 0..200 {
        if ws.send(WsMessage::Binary(harmless.encode().into())).await.is_err() {
            break;
        }
    }
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy, "{reason}");
    assert!(reason.contains("rate"), "{reason}");

    // Documents per connection.
    let mut ws = raw(addr, Some(&t)).await.unwrap();
    let relay_id = handshake(&mut ws).await;
    for doc in docs.shards.iter().take(4) {
        ws.send(sync_msg(&relay_id, *doc, sync_with_a_change())).await.unwrap();
    }
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, CloseCode::Protocol);
    assert!(reason.contains("too many documents"), "{reason}");

    // Handshake: no join in time.
    let mut ws = raw(addr, Some(&t)).await.unwrap();
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("no join"), "{reason}");

    // Idle: joined, then silent — not even reading, so not answering the relay's pings — while a
    // control connection that reads (and so answers pings) stays open through the same wait.
    let mut idle = raw(addr, Some(&t)).await.unwrap();
    handshake(&mut idle).await;
    let mut control = raw(addr, Some(&t)).await.unwrap();
    handshake(&mut control).await;
    let alive = tokio::time::timeout(Duration::from_millis(1_500), control.next()).await;
    assert!(
        alive.is_err() || matches!(alive, Ok(Some(Ok(WsMessage::Ping(_))))),
        "the control connection stays open: {alive:?}"
    );
    let ended = tokio::time::timeout(Duration::from_millis(1_500), async {
        loop {
            control.next().await;
        }
    })
    .await;
    assert!(ended.is_err(), "the control connection is still open after 3 s");
    let (code, reason) = closed(&mut idle).await;
    assert!(
        reason.contains("idle") || code == CloseCode::Abnormal,
        "the silent connection was closed: {code:?} {reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_too_slow_for_its_queue_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop, tokens) = secured(dir.path(), |c| c.outgoing_queue = 1).await;
    let t = token(&tokens, &["*"], Role::Write);
    let docs: Vec<DocId> = GraphDocs::of(&"default".parse().unwrap()).all().map(|(d, _)| d).take(BIG_DOCS).collect();
    // A writer fills the relay: 1 MiB of incompressible text in each document.
    let mut writer = raw(addr, Some(&t)).await.unwrap();
    let relay_id = handshake(&mut writer).await;
    for (i, doc) in docs.iter().enumerate() {
        writer.send(sync_msg(&relay_id, *doc, big_change(i as u64, 1 << 20))).await.unwrap();
        assert!(matches!(next(&mut writer).await, Ok(Message::Sync { .. })), "the relay took document {i}");
    }
    // A reader asks for all of it and reads nothing. Far more than loopback's socket buffers
    // hold is on its way, so the relay's writes block, its one-frame queue fills, and the
    // connection is closed rather than buffered for.
    let mut ws = raw(addr, Some(&t)).await.unwrap();
    let relay_id = handshake(&mut ws).await;
    for doc in &docs {
        ws.send(sync_msg(&relay_id, *doc, empty_sync())).await.unwrap();
    }
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy, "{reason}");
    assert!(reason.contains("too slow"), "{reason}");
    let metrics = http_get(addr, "/metrics").await;
    assert!(metrics.contains("cairn_relay_closed_total{reason=\"slow\"} 1"), "{metrics}");
    // The writer, which reads, is still served.
    writer.send(sync_msg(&relay_id, docs[0], empty_sync())).await.unwrap();
    assert!(matches!(next(&mut writer).await, Ok(Message::Sync { .. })), "the writer is still served");
}

/// Documents the slow reader asks for: 32 MiB in all, several times loopback's socket buffers.
const BIG_DOCS: usize = 32;

/// A sync message carrying one change that puts `len` bytes of pseudo-random letters (which
/// DEFLATE cannot shrink much) in a document.
fn big_change(seed: u64, len: usize) -> Vec<u8> {
    use cairn::automerge::sync::SyncDoc;
    use cairn::automerge::transaction::Transactable;
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let text: String = (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            char::from(b'!' + ((x >> 33) % 90) as u8)
        })
        .collect();
    let mut doc = cairn::automerge::Automerge::new();
    let mut tx = doc.transaction();
    tx.put(cairn::automerge::ROOT, "blob", text).unwrap();
    tx.commit();
    let mut state = cairn::automerge::sync::State::new();
    state.their_heads = Some(vec![]);
    state.their_have = Some(vec![cairn::automerge::sync::Have::default()]);
    state.their_need = Some(vec![]);
    doc.generate_sync_message(&mut state).unwrap().encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_connections_with_going_away_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let t = token(&Tokens::open(&RelayStore::file_in(&data)).unwrap(), &["default"], Role::Write);
    let mut relay = std::process::Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
        .args(["--listen", &addr.to_string(), "--data", data.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the relay listens", WAIT, || std::net::TcpStream::connect(addr).is_ok()).await;
    let r = replica(dir.path(), "writer");
    write(&r, vec![entity("Kept", "thing", &[])]).await;
    let c = SyncClient::spawn(r.clone(), ClientOptions::new(format!("ws://{addr}")).token(Some(t.clone())));
    assert!(c.wait_settled(WAIT).await);
    let mut ws = raw(addr, Some(&t)).await.unwrap();
    handshake(&mut ws).await;
    let status = std::process::Command::new("kill").args(["-TERM", &relay.id().to_string()]).status().unwrap();
    assert!(status.success());
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, CloseCode::Away, "{reason}");
    assert!(relay.wait().unwrap().success(), "the relay exits cleanly on SIGTERM");
    c.stop().await;
    // Everything acknowledged is there after a restart.
    let mut relay = std::process::Command::new(env!("CARGO_BIN_EXE_cairn-relay"))
        .args(["--listen", &addr.to_string(), "--data", data.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the relay listens again", WAIT, || std::net::TcpStream::connect(addr).is_ok()).await;
    let fresh = replica(dir.path(), "fresh");
    let c = SyncClient::spawn(fresh.clone(), ClientOptions::new(format!("ws://{addr}")).token(Some(t)));
    eventually("the fresh replica got Kept", WAIT, || fresh.status().unwrap().entities == 1).await;
    c.stop().await;
    relay.kill().unwrap();
    relay.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_hold_up_shutdown() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = RelayConfig::new(cairn_sync::hub_config_for(dir.path()), Auth::InsecureNoAuth);
    config.write_timeout = Duration::from_millis(500);
    let store = RelayStore::open(dir.path(), Durability::Normal).unwrap();
    let relay = Relay::start(store, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(relay.serve(listener, async move {
        let _ = stopped.await;
    }));
    // Half a request, then silence (the connection stays open).
    let mut quiet = tokio::net::TcpStream::connect(addr).await.unwrap();
    quiet.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(http_get(addr, "/healthz").await.contains("ok"));
    stop.send(()).unwrap();
    // axum alone would wait for the rest of that request forever.
    let ended = tokio::time::timeout(WAIT, served).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "the relay stopped despite the quiet client: {ended:?}");
    drop(quiet);
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_native_tls() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let config = RelayConfig::new(
        cairn_sync::hub_config_for(&data),
        Auth::Tokens(Tokens::open(&RelayStore::file_in(&data)).unwrap()),
    );
    let store = RelayStore::open(&data, Durability::Normal).unwrap();
    let relay = Relay::start(store, config).unwrap();
    let tls = cairn_sync::tls::server_config(&fixtures.join("relay.pem"), &fixtures.join("relay.key")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(relay.serve_tls(listener, tls, std::future::pending()));
    let t = token(&Tokens::open(&RelayStore::file_in(&data)).unwrap(), &["default"], Role::Write);
    let url = format!("wss://localhost:{}", addr.port());
    let (a, b) = (replica(dir.path(), "a"), replica(dir.path(), "b"));
    write(&a, vec![entity("Over TLS", "thing", &[])]).await;
    let with_ca = |r: &Arc<Replica>| {
        let mut o = options(addr).token(Some(t.clone()));
        o.url = url.clone();
        o.ca_file = Some(fixtures.join("ca.pem"));
        SyncClient::spawn(r.clone(), o)
    };
    let (ca, cb) = (with_ca(&a), with_ca(&b));
    converge(&[a.clone(), b.clone()], WAIT).await;
    assert_eq!(b.status().unwrap().entities, 1);
    // Without trusting the test CA, the certificate is refused: no connection.
    let stranger = replica(dir.path(), "stranger");
    let mut o = options(addr).token(Some(t.clone()));
    o.url = url.clone();
    let mut cs = SyncClient::spawn(stranger.clone(), o);
    assert!(!cs.wait_connected(Duration::from_millis(800)).await);
    assert!(matches!(stranger.freshness(), cairn::Freshness::Offline { .. }));
    // And plain ws:// to a TLS port does not get in either.
    assert!(raw(addr, Some(&t)).await.is_err());
    for c in [ca, cb, cs] {
        c.stop().await;
    }
}
