//! One form POST to a token endpoint over TLS (HTTP/1.1, a connection per exchange: they are
//! rare), from idgate's own socket (the bypass mark, so its own interception never sees it).
use crate::config::{HttpsUrl, KeyExchange};
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;

/// The largest answer read from a token endpoint.
const MAX_ANSWER: usize = 64 * 1024;

/// Where exchanges of one source go, ready to dial.
pub struct Endpoint {
    pub url: HttpsUrl,
    server_name: ServerName<'static>,
    port: u16,
    tls: Arc<ClientConfig>,
}

/// The token endpoint's answer.
pub struct Answer {
    pub status: http::StatusCode,
    pub body: Bytes,
}

impl Endpoint {
    pub fn new(url: HttpsUrl, ca_bundle: Option<&Path>) -> anyhow::Result<Self> {
        let host = url.0.host().unwrap_or_default();
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let server_name = ServerName::try_from(bare.to_string()).with_context(|| format!("`{host}` is not a TLS server name"))?;
        let port = url.0.port_u16().unwrap_or(443);
        let provider = crate::credential::crypto_provider(&[KeyExchange::X25519Mlkem768, KeyExchange::X25519, KeyExchange::Secp256r1]);
        let mut tls = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(crate::http::origin::roots(ca_bundle, &url.0.to_string())?)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Endpoint { url, server_name, port, tls: Arc::new(tls) })
    }

    /// POSTs `form` (`application/x-www-form-urlencoded`) and reads the answer, all within
    /// `timeout`.
    pub async fn post_form(&self, form: String, mark: u32, timeout: Duration) -> anyhow::Result<Answer> {
        match tokio::time::timeout(timeout, self.post(form, mark)).await {
            Ok(answer) => answer,
            Err(_) => bail!("no answer within {timeout:?}"),
        }
    }

    async fn post(&self, form: String, mark: u32) -> anyhow::Result<Answer> {
        let host = self.url.0.host().unwrap_or_default();
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, self.port)).await.with_context(|| format!("resolving {host}"))?.collect();
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match crate::sys::socket::connect_marked(addr, mark, Duration::from_secs(30)).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(anyhow::anyhow!("connecting to {addr}: {e}")),
            }
        }
        let tcp = tcp.ok_or_else(|| last.unwrap_or_else(|| anyhow::anyhow!("{host} has no address")))?;
        let tls = TlsConnector::from(self.tls.clone()).connect(self.server_name.clone(), tcp).await.context("TLS handshake")?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.context("HTTP/1.1")?;
        tokio::spawn(conn);
        let authority = self.url.0.authority().map(|a| a.as_str()).unwrap_or(host);
        let path = self.url.0.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let request = http::Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json, text/xml")
            .body(Full::new(Bytes::from(form)))?;
        let response = sender.send_request(request).await.context("sending the request")?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer (at most {MAX_ANSWER} bytes): {e}"))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}
