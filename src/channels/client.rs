//! The only code that sends requests to channels: hyper 1.x over rustls (aws-lc-rs provider),
//! with a connect timeout and a total request timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::RawResponse;

/// Channel answers larger than this are refused (no payment API answer comes close).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why a request produced no response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// No connection was made: the request provably never reached the channel.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The request may have reached the channel; its outcome is unknown.
    #[error("no complete answer: {0}")]
    Incomplete(String),
    /// Timed out after the request may have been sent; outcome unknown.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl SendError {
    /// Only a failed connection guarantees nothing was sent.
    pub fn nothing_sent(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

/// Per-channel HTTP client.
#[derive(Clone, Debug)]
pub struct ChannelClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    request_timeout: Duration,
}

/// Installs aws-lc-rs as rustls' process-wide crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl ChannelClient {
    /// A client with the given connect and total request timeouts.
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> Self {
        install_crypto_provider();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::aws_lc_rs::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        ChannelClient {
            client,
            request_timeout,
        }
    }

    /// Sends one request and reads the whole response, within the request timeout.
    pub async fn send(&self, req: http::Request<Bytes>) -> Result<RawResponse, SendError> {
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.send_inner(req)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout(timeout)),
        }
    }

    async fn send_inner(&self, req: http::Request<Bytes>) -> Result<RawResponse, SendError> {
        let (parts, body) = req.into_parts();
        let req = http::Request::from_parts(parts, Full::new(body));
        let resp = self.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                SendError::Connect(error_chain(&e))
            } else {
                SendError::Incomplete(error_chain(&e))
            }
        })?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| SendError::Incomplete(e.to_string()))?
            .to_bytes();
        Ok(RawResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// What a download wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    /// SHA-1 of the bytes, lower-case hex.
    pub sha1: String,
}

/// Why a download did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Send(#[from] SendError),
    /// The server answered, but not with the file.
    #[error("HTTP {status}: {text}")]
    Status { status: u16, text: String },
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    #[error("writing the file: {0}")]
    Write(String),
}

impl ChannelClient {
    /// Streams a file's answer into `out` (statements run to hundreds of MB: never held in
    /// memory), at most `max_bytes`, each part of it arriving within the request timeout, and
    /// hashes it on the way.
    pub async fn download(
        &self,
        req: http::Request<Bytes>,
        out: &mut tokio::fs::File,
        max_bytes: u64,
    ) -> Result<Downloaded, DownloadError> {
        use sha1::Digest as _;
        use tokio::io::AsyncWriteExt as _;
        let timeout = self.request_timeout;
        let (parts, body) = req.into_parts();
        let req = http::Request::from_parts(parts, Full::new(body));
        let resp = tokio::time::timeout(timeout, self.client.request(req))
            .await
            .map_err(|_| SendError::Timeout(timeout))?
            .map_err(|e| match e.is_connect() {
                true => SendError::Connect(error_chain(&e)),
                false => SendError::Incomplete(error_chain(&e)),
            })?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        if !(200..300).contains(&status) {
            let text = Limited::new(body, 4096)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(DownloadError::Status { status, text });
        }
        let mut hash = sha1::Sha1::new();
        let mut bytes = 0u64;
        loop {
            let frame = match tokio::time::timeout(timeout, body.frame()).await {
                Err(_) => return Err(SendError::Timeout(timeout).into()),
                Ok(None) => break,
                Ok(Some(frame)) => frame.map_err(|e| SendError::Incomplete(error_chain(&e)))?,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            bytes += data.len() as u64;
            if bytes > max_bytes {
                return Err(DownloadError::TooLarge(max_bytes));
            }
            hash.update(&data);
            out.write_all(&data)
                .await
                .map_err(|e| DownloadError::Write(e.to_string()))?;
        }
        out.flush()
            .await
            .map_err(|e| DownloadError::Write(e.to_string()))?;
        Ok(Downloaded {
            bytes,
            sha1: hex::encode(hash.finalize()),
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Whether plain `http://` may be used for this host: only loopback addresses.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1", "openapi.alipay.com", "0.0.0.0", "192.168.1.1"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = ChannelClient::new(Duration::from_secs(1), Duration::from_secs(2));
        let req = http::Request::post(format!("http://127.0.0.1:{port}/x"))
            .body(Bytes::new())
            .unwrap();
        let err = c.send(req).await.unwrap_err();
        assert!(err.nothing_sent(), "{err:?}");
    }

    #[tokio::test]
    async fn silent_server_is_a_timeout_not_a_connect_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let c = ChannelClient::new(Duration::from_secs(1), Duration::from_millis(300));
        let req = http::Request::post(format!("http://{addr}/x"))
            .body(Bytes::new())
            .unwrap();
        let err = c.send(req).await.unwrap_err();
        assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
        assert!(!err.nothing_sent());
        hold.abort();
    }
}
