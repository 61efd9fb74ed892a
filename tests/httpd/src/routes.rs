//! Request handlers. Paths match by prefix (`/inspect/anything` is `/inspect`), so tests can tell
//! requests apart by path; like many servers, routing merges repeated slashes (`//inspect`).
//!
//! - `/inspect`: the whole request as JSON (headers in order, trailers, body length and sha256).
//! - `/echo` (POST, PUT): the request body streamed back as it arrives (no content-length).
//! - `/bytes/N`: N bytes of `bytes(range(256))` repeated, in 64 KiB chunks (no content-length).
//! - any HTTP/1.1 request with `Upgrade: websocket`: 101, then every raw byte echoed until EOF.
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, BodyStream, Full, StreamBody};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWriteExt;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, Error>;

const CHUNK: usize = 64 * 1024;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the server knows about the connection a request came on.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub sni: Option<String>,
    pub alpn: Option<String>,
}

pub async fn handle(req: Request<Incoming>, conn: Arc<ConnInfo>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    println!("request {} {} {:?} from {}", req.method(), path, req.version(), conn.peer);
    let is_ws = req.headers().get_all(UPGRADE).iter().any(|v| v.to_str().is_ok_and(|s| s.to_ascii_lowercase().contains("websocket")));
    let routed = merge_slashes(&path);
    let route = |p: &str| routed == p || routed.starts_with(&format!("{p}/"));
    let resp = if is_ws {
        websocket(req)
    } else if route("/inspect") {
        inspect(req, &conn).await
    } else if route("/echo") {
        if req.method() == Method::POST || req.method() == Method::PUT {
            echo(req)
        } else {
            text(StatusCode::METHOD_NOT_ALLOWED, "POST or PUT\n")
        }
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        match n.parse::<u64>() {
            Ok(n) => stream_response(Pattern::new(n).boxed()),
            Err(_) => text(StatusCode::BAD_REQUEST, "bad byte count\n"),
        }
    } else if path == "/" {
        text(StatusCode::OK, "idgate-test-httpd\n")
    } else {
        text(StatusCode::NOT_FOUND, "not found\n")
    };
    Ok(resp)
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn stream_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    r
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn inspect(req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let (body, trailers) = match body.collect().await {
        Ok(b) => {
            let trailers = b.trailers().cloned().unwrap_or_default();
            (b.to_bytes(), trailers)
        }
        Err(e) => {
            eprintln!("reading body from {}: {e}", conn.peer);
            return text(StatusCode::BAD_REQUEST, "could not read the body\n");
        }
    };
    let fields = |map: &hyper::HeaderMap| {
        let mut out = Map::new();
        for (name, value) in map {
            let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
            match out.entry(name.as_str()).or_insert_with(|| Value::Array(vec![])) {
                Value::Array(list) => list.push(v),
                _ => unreachable!("only arrays are inserted"),
            }
        }
        out
    };
    let headers = fields(&parts.headers);
    let authority =
        parts.uri.authority().map(|a| a.to_string()).or_else(|| parts.headers.get(HOST).map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned()));
    let doc = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "authority": authority,
        "headers": headers,
        "trailers": fields(&trailers),
        "body_len": body.len(),
        "body_sha256": hex(ring::digest::digest(&ring::digest::SHA256, &body).as_ref()),
        "remote_addr": conn.peer.to_string(),
        "sni": conn.sni,
        "alpn": conn.alpn,
    });
    let mut r = Response::new(Full::new(Bytes::from(doc.to_string())).map_err(|e| match e {}).boxed());
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The request body, frame by frame, as the response body. No size hint, so HTTP/1.1 chunks it.
fn echo(req: Request<Incoming>) -> Response<Body> {
    let frames = BodyStream::new(req.into_body().map_err(Error::from));
    stream_response(StreamBody::new(frames).boxed())
}

/// `bytes(range(256))` repeated, `remaining` bytes in total, 64 KiB per frame.
struct Pattern {
    block: Bytes,
    remaining: u64,
}

impl Pattern {
    fn new(n: u64) -> Self {
        let block: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
        Pattern { block: Bytes::from(block), remaining: n }
    }
}

impl http_body::Body for Pattern {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        // Every frame starts at a multiple of CHUNK (a multiple of 256), so at pattern offset 0.
        let n = self.remaining.min(CHUNK as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.block.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
}

fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    if req.version() != Version::HTTP_11 {
        return text(StatusCode::BAD_REQUEST, "websocket upgrade needs HTTP/1.1\n");
    }
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let mut input = key;
    input.extend_from_slice(WS_GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    let accept = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest.as_ref());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => return eprintln!("websocket upgrade: {e}"),
        };
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
        match tokio::io::copy(&mut rd, &mut wr).await {
            Ok(_) => {
                let _ = wr.shutdown().await;
            }
            Err(e) => eprintln!("websocket echo: {e}"),
        }
    });
    let mut r = text(StatusCode::SWITCHING_PROTOCOLS, "");
    *r.body_mut() = Full::new(Bytes::new()).map_err(|e| match e {}).boxed();
    let h = r.headers_mut();
    h.remove(CONTENT_TYPE);
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert("sec-websocket-accept", HeaderValue::from_str(&accept).expect("base64 is a valid header value"));
    r
}
