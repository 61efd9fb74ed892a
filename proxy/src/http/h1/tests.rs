//! The HTTP/1 path against scripted peers: framing edge cases a server or client may produce,
//! checked byte for byte on both sides.
use super::body::{Cursor, Framing};
use super::head::{parse_request, parse_response};
use crate::http::forged::Protected;
use crate::http::{BoxIo, Failure, Upstream};
use http::{Method, StatusCode, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// Each upstream connection is a pipe whose far end the test receives and plays server on.
struct Scripted {
    opens: AtomicUsize,
    servers: mpsc::UnboundedSender<DuplexStream>,
}

impl Upstream for Scripted {
    async fn open(&self, version: Version) -> Result<BoxIo, Failure> {
        assert_eq!(version, Version::HTTP_11);
        self.opens.fetch_add(1, Ordering::SeqCst);
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        self.servers.send(theirs).expect("test alive");
        Ok(Box::new(ours))
    }

    async fn rewrite(&self, parts: &mut http::request::Parts, _body: Option<&[u8]>) -> Result<(), Failure> {
        if parts.uri.path() == "/refuse" {
            return Err(Failure::new(StatusCode::MISDIRECTED_REQUEST, "not this destination"));
        }
        parts.headers.insert("x-injected", http::HeaderValue::from_static("yes"));
        Ok(())
    }

    fn protected(&self) -> std::sync::Arc<Protected> {
        std::sync::Arc::new(protected())
    }
}

fn protected() -> Protected {
    Protected::new(&[http::HeaderName::from_static("x-forwarded-client-cert"), http::HeaderName::from_static("x-injected")])
}

struct Proxy {
    client: DuplexStream,
    servers: mpsc::UnboundedReceiver<DuplexStream>,
    upstream: std::sync::Arc<Scripted>,
    done: tokio::task::JoinHandle<()>,
}

fn proxy() -> Proxy {
    let (tx, servers) = mpsc::unbounded_channel();
    let upstream = std::sync::Arc::new(Scripted { opens: AtomicUsize::new(0), servers: tx });
    let (client, ours) = tokio::io::duplex(1 << 20);
    let up = upstream.clone();
    let done = tokio::spawn(async move {
        let _ = crate::http::serve(ours, Forward(up)).await;
    });
    Proxy { client, servers, upstream, done }
}

/// Upstream is implemented for the shared script so the test keeps a handle on it.
struct Forward(std::sync::Arc<Scripted>);

impl Upstream for Forward {
    async fn open(&self, version: Version) -> Result<BoxIo, Failure> {
        self.0.open(version).await
    }
    async fn rewrite(&self, parts: &mut http::request::Parts, body: Option<&[u8]>) -> Result<(), Failure> {
        self.0.rewrite(parts, body).await
    }
    fn protected(&self) -> std::sync::Arc<Protected> {
        self.0.protected()
    }
}

/// Reads until `needle` has arrived (a test bound: 5 s).
async fn read_until(io: &mut DuplexStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !got.windows(needle.len()).any(|w| w == needle) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, io.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("waiting for {:?}; got {:?}", String::from_utf8_lossy(needle), String::from_utf8_lossy(&got)))
            .unwrap();
        assert!(n > 0, "closed while waiting for {:?}; got {:?}", String::from_utf8_lossy(needle), String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

async fn read_to_eof(io: &mut DuplexStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut got)).await.expect("no EOF within 5 s").unwrap();
    got
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_rewritten_and_answered_in_order_on_one_upstream() {
    let mut p = proxy();
    p.client.write_all(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    let first = read_until(&mut server, b"\r\n\r\n").await;
    assert_eq!(text(&first), "GET /1 HTTP/1.1\r\nhost: a\r\nx-injected: yes\r\n\r\n");
    server.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none").await.unwrap();
    let second = read_until(&mut server, b"\r\n\r\n").await;
    assert!(text(&second).starts_with("GET /2 HTTP/1.1\r\n"), "{}", text(&second));
    server.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n").await.unwrap();
    let answers = read_until(&mut p.client, b"0\r\n\r\n").await;
    assert_eq!(
        text(&answers),
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\noneHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"
    );
    assert_eq!(p.upstream.opens.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_chunked_body_with_trailers_passes_intact_in_pieces() {
    let mut p = proxy();
    let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n";
    p.client.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    for piece in body.chunks(3) {
        p.client.write_all(piece).await.unwrap();
        tokio::task::yield_now().await;
    }
    let got = read_until(&mut server, b"x-trailer: t\r\n\r\n").await;
    assert!(got.ends_with(body), "{}", text(&got));
    server.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
    assert_eq!(text(&read_until(&mut p.client, b"\r\n\r\n").await), "HTTP/1.1 204 No Content\r\n\r\n");
}

#[tokio::test]
async fn expect_100_continue_is_relayed_before_the_body() {
    let mut p = proxy();
    p.client.write_all(b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    read_until(&mut server, b"\r\n\r\n").await;
    server.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
    assert_eq!(text(&read_until(&mut p.client, b"\r\n\r\n").await), "HTTP/1.1 100 Continue\r\n\r\n");
    p.client.write_all(b"data").await.unwrap();
    read_until(&mut server, b"data").await;
    server.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    assert!(text(&read_until(&mut p.client, b"\r\n\r\n").await).starts_with("HTTP/1.1 201"));
}

#[tokio::test]
async fn an_early_answer_to_an_unsent_body_closes_both_sides() {
    let mut p = proxy();
    p.client.write_all(b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\npartial").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    read_until(&mut server, b"partial").await;
    server.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let got = read_to_eof(&mut p.client).await;
    assert_eq!(text(&got), "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
}

#[tokio::test]
async fn an_idle_upstream_that_closed_is_replaced_and_the_request_not_lost() {
    let mut p = proxy();
    p.client.write_all(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    read_until(&mut server, b"\r\n\r\n").await;
    server.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    read_until(&mut p.client, b"\r\n\r\n").await;
    drop(server); // an idle timeout on the server's side
    p.client.write_all(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut second = p.servers.recv().await.unwrap();
    assert!(text(&read_until(&mut second, b"\r\n\r\n").await).starts_with("GET /2 "));
    second.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
    assert!(text(&read_until(&mut p.client, b"ok").await).starts_with("HTTP/1.1 200"));
    assert_eq!(p.upstream.opens.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_response_ended_by_close_closes_the_client_connection() {
    let mut p = proxy();
    p.client.write_all(b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    read_until(&mut server, b"\r\n\r\n").await;
    server.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await.unwrap();
    drop(server);
    assert_eq!(text(&read_to_eof(&mut p.client).await), "HTTP/1.1 200 OK\r\n\r\nuntil the end");
}

#[tokio::test]
async fn an_upgrade_turns_the_connection_into_bytes_both_ways() {
    let mut p = proxy();
    p.client.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    read_until(&mut server, b"\r\n\r\n").await;
    server.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nfrom-server").await.unwrap();
    read_until(&mut p.client, b"from-server").await;
    p.client.write_all(b"\x00\x01raw-from-client").await.unwrap();
    read_until(&mut server, b"raw-from-client").await;
}

#[tokio::test]
async fn a_refused_rewrite_is_answered_and_the_connection_stays_usable() {
    let mut p = proxy();
    p.client.write_all(b"GET /refuse HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let got = read_until(&mut p.client, b"destination\n").await;
    assert!(text(&got).starts_with("HTTP/1.1 421 Misdirected Request\r\n"), "{}", text(&got));
    p.client.write_all(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    assert!(text(&read_until(&mut server, b"\r\n\r\n").await).starts_with("GET /ok "));
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_never_forwarded() {
    for raw in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n",
    ] {
        let mut p = proxy();
        p.client.write_all(raw).await.unwrap();
        let got = read_to_eof(&mut p.client).await;
        assert!(text(&got).starts_with("HTTP/1.1 400 "), "{} -> {}", text(raw), text(&got));
        p.done.await.unwrap();
        assert_eq!(p.upstream.opens.load(Ordering::SeqCst), 0, "{} was forwarded", text(raw));
    }
}

#[tokio::test]
async fn a_malformed_chunked_body_is_not_passed_on_past_the_error() {
    let mut p = proxy();
    p.client.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    let got = read_to_eof(&mut server).await;
    assert!(!text(&got).contains("zz"), "{}", text(&got));
}

#[test]
fn chunked_framing_ends_exactly_where_the_body_does_whatever_the_split() {
    let body = b"a\r\n0123456789\r\n1;x=\"y\"\r\nZ\r\n0\r\nt: 1\r\n\r\n";
    let mut stream = body.to_vec();
    stream.extend_from_slice(b"GET /next");
    for split in 0..stream.len() {
        let mut c = Cursor::new(Framing::Chunked);
        let a = c.advance(&stream[..split]).unwrap().used;
        assert_eq!(a, split.min(body.len()));
        let b = c.advance(&stream[a..]).unwrap().used;
        assert_eq!(a + b, body.len(), "split at {split}");
        assert!(c.is_done());
    }
}

#[test]
fn a_requests_protected_trailer_fields_are_dropped_whatever_the_split() {
    let body = b"3\r\nabc\r\n0\r\nX-Forwarded-Client-Cert: URI=forged\r\nx-sum: 1\r\nX_Injected: no\r\n\r\n";
    let mut stream = body.to_vec();
    stream.extend_from_slice(b"GET /next");
    for split in 0..stream.len() {
        let mut c = Cursor::request(Framing::Chunked, Some(std::sync::Arc::new(protected())));
        let mut out = Vec::new();
        let mut at = 0;
        for piece in [&stream[..split], &stream[split..]] {
            let step = c.advance(piece).unwrap();
            out.extend_from_slice(&piece[..step.pass]);
            out.extend(c.take_trailers().unwrap_or_default());
            at += step.used;
            if c.is_done() {
                break;
            }
        }
        assert_eq!(at, body.len(), "split at {split}");
        assert_eq!(text(&out), "3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n", "split at {split}");
    }
    let mut c = Cursor::request(Framing::Chunked, Some(std::sync::Arc::new(protected())));
    let mut huge = b"0\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b"x-pad: 0123456789abcdef\r\n".as_slice(), 4000).flatten());
    assert!(c.advance(&huge).is_err(), "an endless trailer section was held");
}

#[tokio::test]
async fn protected_trailer_fields_do_not_reach_the_server() {
    let mut p = proxy();
    p.client.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nx_forwarded_client_cert: URI=forged\r\nx-sum: 1\r\n\r\n").await.unwrap();
    let mut server = p.servers.recv().await.unwrap();
    let got = read_until(&mut server, b"0\r\nx-sum: 1\r\n\r\n").await;
    assert!(!text(&got).contains("forged"), "{}", text(&got));
    server.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
    assert_eq!(text(&read_until(&mut p.client, b"\r\n\r\n").await), "HTTP/1.1 204 No Content\r\n\r\n");
}

#[test]
fn chunked_framing_refuses_what_servers_might_read_differently() {
    for bad in [&b"5\nhello\r\n"[..], b"5 \r\nhello\r\n", b"x\r\n", b"11111111111111111\r\n", b"2\r\nabXY", b"0\r\nt: 1\n\r\n", b"\r\n"] {
        let mut c = Cursor::new(Framing::Chunked);
        assert!(c.advance(bad).is_err(), "accepted {:?}", text(bad));
    }
}

#[test]
fn request_framing_and_keep_alive() {
    let head = |raw: &[u8]| parse_request(raw).unwrap().unwrap();
    assert_eq!(head(b"GET / HTTP/1.1\r\n\r\n").body, Framing::Empty);
    assert_eq!(head(b"POST / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n").body, Framing::Length(7));
    assert_eq!(head(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").body, Framing::Chunked);
    assert!(head(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
    assert!(!head(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n").keep_alive);
    assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    assert!(head(b"CONNECT a:443 HTTP/1.1\r\n\r\n").upgrade);
    assert!(parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
    let status = |raw: &[u8]| parse_request(raw).err().map(|f| f.status);
    assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), Some(StatusCode::NOT_IMPLEMENTED));
    let huge = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(super::MAX_HEAD));
    assert_eq!(status(huge.as_bytes()), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
}

#[test]
fn response_framing() {
    let head = |raw: &[u8], m: Method| parse_response(raw, &m).unwrap().unwrap();
    let r = head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", Method::HEAD);
    assert_eq!((r.body, r.close), (Framing::Empty, false));
    assert_eq!(head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", Method::GET).body, Framing::Empty);
    let r = head(b"HTTP/1.1 200 OK\r\n\r\n", Method::GET);
    assert_eq!((r.body, r.close), (Framing::UntilClose, true));
    let r = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", Method::GET);
    assert_eq!((r.body, r.close), (Framing::Chunked, true));
    assert!(head(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::GET).close);
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &Method::GET).is_err());
    // More fields than the first, small array holds: parsed again with the full one.
    let many: String = (0..60).map(|i| format!("x-{i}: v\r\n")).collect();
    let r = head(format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 5\r\n\r\n").as_bytes(), Method::GET);
    assert_eq!(r.body, Framing::Length(5));
}

#[tokio::test]
async fn an_emptied_reader_holds_no_buffer() {
    let (mut a, b) = tokio::io::duplex(1024);
    let mut r = super::Reader::new(b, bytes::BytesMut::new());
    a.write_all(b"hello").await.unwrap();
    assert_eq!(r.fill().await.unwrap(), 5);
    assert_eq!(&r.take_all()[..], b"hello");
    assert_eq!(r.buf.capacity(), 0);
}
