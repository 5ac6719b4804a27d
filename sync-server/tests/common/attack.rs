//! Attack helpers: a relay that requires tokens, and raw websocket clients that speak the
//! protocol by hand (or break it on purpose).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::sync::wire::Message;
use cairn::{DocId, Durability, Replica};
use cairn_sync::tokens::Role;
use cairn_sync::{Auth, Relay, RelayConfig, RelayStore, SyncClient, Tokens};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::*;

pub const WAIT: Duration = Duration::from_secs(20);

/// A relay with tokens required, configured by `tune`.
pub async fn secured(
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

pub fn token(tokens: &Tokens, graphs: &[&str], role: Role) -> String {
    let graphs: Vec<String> = graphs.iter().map(|g| g.to_string()).collect();
    tokens.create(&graphs, role, None, None, cairn::now_millis()).unwrap().1
}

pub fn client(replica: &Arc<Replica>, addr: SocketAddr, token: &str) -> SyncClient {
    SyncClient::spawn(replica.clone(), options(addr).token(Some(token.to_owned())))
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw websocket connection with a token in the Authorization header.
pub async fn raw(addr: SocketAddr, token: Option<&str>) -> Result<Ws, String> {
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

pub fn join(peer: &str) -> WsMessage {
    WsMessage::Binary(
        Message::Join { sender: peer.into(), storage_id: None, ephemeral: true, versions: Some(vec!["1".into()]) }
            .encode()
            .into(),
    )
}

/// Reads until a protocol message or a close; returns the message, or the close code and reason.
pub async fn next(ws: &mut Ws) -> Result<Message, (CloseCode, String)> {
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
pub async fn closed(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        if let Err(close) = next(ws).await {
            return close;
        }
    }
}

pub async fn handshake(ws: &mut Ws) -> String {
    ws.send(join("raw-client")).await.unwrap();
    match next(ws).await.unwrap() {
        Message::Peer { sender, .. } => sender.to_string(),
        other => panic!("expected peer, got {other:?}"),
    }
}

pub fn sync_msg(relay: &str, doc: DocId, data: Vec<u8>) -> WsMessage {
    WsMessage::Binary(Message::Sync { sender: "raw-client".into(), target: relay.into(), doc, data }.encode().into())
}

/// Shard `doc` of the default graph as its genesis makes it, under a fresh actor for writes.
pub fn cairn_doc(doc: DocId) -> cairn::automerge::Automerge {
    let graph: cairn::GraphName = "default".parse().unwrap();
    let rules = cairn::integrity::DocRules::new(&graph, doc).expect("a document of the default graph");
    rules.genesis().with_actor(cairn::automerge::ActorId::random())
}

/// One Cairn write to shard `am`: each of `texts` (at most 64 KiB each) as an observation of an
/// entity living there.
pub fn cairn_observe(am: &mut cairn::automerge::Automerge, texts: &[String]) {
    use cairn::automerge::ReadDoc;
    use cairn::automerge::transaction::{CommitOptions, Transactable};
    let Some((cairn::automerge::Value::Scalar(shard), _)) = am.get(cairn::automerge::ROOT, "shard").unwrap() else {
        panic!("a shard")
    };
    let shard = shard.as_i64().unwrap() as u32;
    let entity = (0..).map(|i| format!("e{i}")).find(|n| cairn::schema::shard_of(n) == shard).unwrap();
    let (_, observations) = am.get(cairn::automerge::ROOT, "observations").unwrap().unwrap();
    let mut tx = am.transaction();
    for text in texts {
        tx.put(&observations, format!("{entity}\u{1f}{text}"), r#"{"by":"raw-client","at":1}"#).unwrap();
    }
    tx.commit_with(CommitOptions::default().with_message(r#"{"agent":"raw-client"}"#.to_owned()));
}

/// A sync message claiming `heads` and carrying `chunks`.
pub fn sync_carrying(heads: Vec<cairn::automerge::ChangeHash>, chunks: Vec<Vec<u8>>) -> Vec<u8> {
    cairn::automerge::sync::Message {
        heads,
        need: vec![],
        have: vec![cairn::automerge::sync::Have::default()],
        changes: chunks.into(),
        flags: None,
        version: cairn::automerge::sync::MessageVersion::V1,
    }
    .encode()
}

/// A sync message for `doc` (a shard of the default graph) carrying its genesis and one Cairn
/// write of `texts` (see [`cairn_observe`]).
pub fn cairn_write(doc: DocId, texts: &[String]) -> Vec<u8> {
    let mut am = cairn_doc(doc);
    cairn_observe(&mut am, texts);
    let changes: Vec<Vec<u8>> = am.get_changes(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
    sync_carrying(am.get_heads(), changes)
}

/// An empty document's first sync message ("I have nothing").
pub fn empty_sync() -> Vec<u8> {
    use cairn::automerge::sync::SyncDoc;
    cairn::automerge::Automerge::new()
        .generate_sync_message(&mut cairn::automerge::sync::State::new())
        .unwrap()
        .encode()
}

pub async fn eventually_async<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two replicas syncing through the relay, to show others are unaffected by a misbehaving one.
pub struct Bystanders {
    pub a: Arc<Replica>,
    pub b: Arc<Replica>,
    _clients: [SyncClient; 2],
    n: usize,
}

impl Bystanders {
    pub async fn new(dir: &Path, addr: SocketAddr, token: &str) -> Bystanders {
        let (a, b) = (replica(dir, "bystander-a"), replica(dir, "bystander-b"));
        let clients = [client(&a, addr, token), client(&b, addr, token)];
        Bystanders { a, b, _clients: clients, n: 0 }
    }

    /// A writes; B must receive it.
    pub async fn still_syncing(&mut self) {
        self.n += 1;
        write(&self.a, vec![entity(&format!("ok-{}", self.n), "thing", &[])]).await;
        let (b, n) = (self.b.clone(), self.n as u64);
        eventually("bystanders keep syncing", WAIT, || b.status().unwrap().entities == n).await;
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
