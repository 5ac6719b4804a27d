//! One connection attempt: resolve, open TCP, the websocket handshake (TLS for `wss://`), and
//! what a failure means ([`ConnectError`]).

use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::ClientOptions;

/// Why the client is not connected, as of its last attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The relay refused the credentials (HTTP 401 or 403): no token, or a wrong, expired or
    /// revoked one (the relay's reason, if it gave one). Retrying will not help until the token
    /// changes.
    #[error("the relay refused the token (HTTP {status}): {reason}")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// What the relay said, or a summary.
        reason: String,
    },
    /// The relay is at its limit of connections for this token (HTTP 429).
    #[error("the relay has too many connections with this token (HTTP 429)")]
    TooManyConnections,
    /// Nothing can be reached at the relay's address right now: its host name does not resolve,
    /// or the connection was refused or has no route. No answer is on its way, so a caller that
    /// cannot wait long should not wait at all (unlike a relay that accepts the connection and is
    /// slow to answer, which is [`ConnectError::Failed`] once it times out).
    #[error("{0}")]
    Unreachable(String),
    /// Anything else: TLS failure, bad URL, a handshake that timed out, connection lost.
    #[error("{0}")]
    Failed(String),
}

impl ConnectError {
    /// Whether another attempt in a moment may succeed: false when the relay refused the token
    /// (until the token changes) or could not be reached at all (until the relay is back).
    pub fn retrying_soon_helps(&self) -> bool {
        !matches!(self, ConnectError::Unauthorized { .. } | ConnectError::Unreachable(_))
    }
}

/// The URL without its query: a `?token=` must not end up in logs or messages.
pub fn redacted_url(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

pub(super) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(super) async fn connect(options: &ClientOptions) -> Result<Ws, ConnectError> {
    let failed = ConnectError::Failed;
    let mut request = options
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| failed(format!("bad relay URL {}: {e}", redacted_url(&options.url))))?;
    if let Some(token) = &options.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| failed("the token has characters a header cannot carry".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(options.max_message_bytes))
        .max_frame_size(Some(options.max_message_bytes));
    // wss:// with our TLS configuration: the built-in web roots plus any extra CA.
    let connector = if request.uri().scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("wss")) {
        let tls = crate::tls::client_config(options.ca_file.as_deref()).map_err(|e| failed(e.to_string()))?;
        Some(tokio_tungstenite::Connector::Rustls(tls))
    } else {
        None
    };
    let attempt = async {
        let tcp = reach(request.uri()).await?;
        tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(config), connector)
            .await
            .map_err(Attempt::Ws)
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Err(Attempt::Unreachable(why))) => Err(ConnectError::Unreachable(why)),
        Ok(Err(Attempt::Failed(why))) => Err(failed(why)),
        Ok(Err(Attempt::Ws(e))) => Err(handshake_error(e, failed)),
        Ok(Ok((ws, _))) => Ok(ws),
        Err(_) => Err(failed("connecting timed out".into())),
    }
}

/// How a connection attempt failed: before anything answered, or in the websocket handshake.
enum Attempt {
    Unreachable(String),
    Failed(String),
    Ws(tokio_tungstenite::tungstenite::Error),
}

/// Resolves the relay's host and opens a TCP connection to it. Done here rather than inside
/// tokio-tungstenite so that "nothing is there" (no such name, refused, no route) is told apart
/// from a relay that is there and slow.
async fn reach(uri: &tokio_tungstenite::tungstenite::http::Uri) -> Result<tokio::net::TcpStream, Attempt> {
    let bad = |why: &str| Attempt::Failed(why.to_owned());
    let host = uri.host().ok_or_else(|| bad("the relay URL has no host"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some(s)) if s.eq_ignore_ascii_case("wss") => 443,
        (None, Some(s)) if s.eq_ignore_ascii_case("ws") => 80,
        _ => return Err(bad("the relay URL is not ws:// or wss://")),
    };
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Attempt::Unreachable(format!("cannot resolve {host}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Attempt::Unreachable(format!("{host} resolves to no address")));
    }
    let tcp = tokio::net::TcpStream::connect(&addrs[..]).await.map_err(|e| {
        use std::io::ErrorKind::{AddrNotAvailable, ConnectionRefused, HostUnreachable, NetworkUnreachable};
        match e.kind() {
            ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable => {
                Attempt::Unreachable(format!("{host}:{port}: {e}"))
            }
            _ => Attempt::Failed(format!("{host}:{port}: {e}")),
        }
    })?;
    // Sync messages are small and latency-bound.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// What a failed websocket handshake means for the client.
fn handshake_error(e: tokio_tungstenite::tungstenite::Error, failed: fn(String) -> ConnectError) -> ConnectError {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(response) => match response.status().as_u16() {
            status @ (401 | 403) => {
                let said = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                let said: String = said.trim().chars().filter(|c| !c.is_control()).take(200).collect();
                let reason =
                    if said.is_empty() { "the token is missing, wrong, expired or revoked".to_owned() } else { said };
                ConnectError::Unauthorized { status, reason }
            }
            429 => ConnectError::TooManyConnections,
            code => failed(format!("the relay answered HTTP {code} to the websocket upgrade")),
        },
        e => failed(e.to_string()),
    }
}
