//! HTTP/1 message heads: a request head becomes `http::request::Parts` (what the rules
//! rewrite) and is written out again; a response head is only read for its framing and
//! forwarded byte for byte. Anything ambiguous about where a body ends is refused: a proxy
//! that frames a message differently from the server behind it is how requests get smuggled.
use super::body::Framing;
use super::MAX_HEAD;
use crate::http::Failure;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::UPGRADE;
use http::{request, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

/// Most header fields accepted in one head.
const MAX_HEADERS: usize = 128;

/// A parsed request head and what the connection must know about its message.
pub struct RequestHead {
    pub parts: request::Parts,
    /// Its length in the read buffer.
    pub len: usize,
    pub body: Framing,
    /// The client expects the connection to stay open after the response.
    pub keep_alive: bool,
    /// A protocol switch (Upgrade, or CONNECT) may follow the response.
    pub upgrade: bool,
}

/// Parses a request head at the start of `buf`: `None` while it is incomplete.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, Failure> {
    let mut fields = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(e) => return Err(bad(format!("malformed request: {e}"))),
    };
    if len > MAX_HEAD {
        return Err(too_large());
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| bad("malformed method"))?;
    // One copy of the head that the target and every field value share, rather than one
    // allocation each.
    let shared = Bytes::copy_from_slice(&buf[..len]);
    let within = |part: &[u8]| match (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize) {
        _ if part.is_empty() => Bytes::new(),
        Some(at) if at + part.len() <= len => shared.slice(at..at + part.len()),
        _ => Bytes::copy_from_slice(part),
    };
    let uri = Uri::from_maybe_shared(within(req.path.unwrap_or_default().as_bytes())).map_err(|_| bad("malformed request target"))?;
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    // Room for the fields the rewrite adds, so that adding them does not grow the map.
    let mut headers = HeaderMap::with_capacity(req.headers.len() + 4);
    let mut framing = FramingFields::default();
    for h in req.headers.iter() {
        framing.add(h.name, h.value);
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad(format!("malformed header name `{}`", h.name)))?;
        let value = HeaderValue::from_maybe_shared(within(h.value)).map_err(|_| bad(format!("malformed value of header `{name}`")))?;
        headers.append(name, value);
    }
    let body = request_framing(version, &framing)?;
    let keep_alive = framing.keeps_alive(version);
    let upgrade = method == Method::CONNECT || headers.contains_key(UPGRADE);
    let (mut parts, ()) = http::Request::new(()).into_parts();
    (parts.method, parts.uri, parts.version, parts.headers) = (method, uri, version, headers);
    Ok(Some(RequestHead { parts, len, body, keep_alive, upgrade }))
}

/// RFC 9112 section 6.3 for requests, minus every leniency.
fn request_framing(version: Version, framing: &FramingFields) -> Result<Framing, Failure> {
    if framing.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if framing.content_length.is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        if !(framing.codings == 1 && framing.chunked_last) {
            return Err(Failure::new(StatusCode::NOT_IMPLEMENTED, "only Transfer-Encoding: chunked is supported in requests"));
        }
        return Ok(Framing::Chunked);
    }
    match framing.content_length {
        Some(Ok(0)) | None => Ok(Framing::Empty),
        Some(Ok(n)) => Ok(Framing::Length(n)),
        Some(Err(())) => Err(bad("invalid Content-Length")),
    }
}

/// A parsed response head: its status, its length in the buffer and how its body ends.
pub struct ResponseHead {
    pub status: StatusCode,
    pub len: usize,
    pub body: Framing,
    /// The server closes the connection after this response.
    pub close: bool,
}

/// Parses a response head at the start of `buf` (the answer to a `method` request): `None`
/// while it is incomplete. Errors name what is wrong; the response is not forwarded.
pub fn parse_response(buf: &[u8], method: &Method) -> Result<Option<ResponseHead>, String> {
    // Most responses have a handful of fields: a small array first, the full one if needed.
    let mut few = [httparse::EMPTY_HEADER; 24];
    let mut res = httparse::Response::new(&mut few);
    match res.parse(buf) {
        Err(httparse::Error::TooManyHeaders) => {
            let mut all = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut all);
            let parsed = res.parse(buf);
            response_head(&res, parsed, buf.len(), method)
        }
        parsed => response_head(&res, parsed, buf.len(), method),
    }
}

fn response_head(
    res: &httparse::Response<'_, '_>,
    parsed: httparse::Result<usize>,
    buffered: usize,
    method: &Method,
) -> Result<Option<ResponseHead>, String> {
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buffered >= MAX_HEAD => return Err("response head too large".into()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response: {e}")),
    };
    if len > MAX_HEAD {
        return Err("response head too large".into());
    }
    let status = StatusCode::from_u16(res.code.unwrap_or_default()).map_err(|_| "malformed status code".to_string())?;
    let version = if res.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    // Only what framing depends on is looked at; everything else passes as bytes.
    let mut framing = FramingFields::default();
    for h in res.headers.iter() {
        framing.add(h.name, h.value);
    }
    let mut close = !framing.keeps_alive(version);
    // No body: answers to HEAD, 1xx, 204, 304, and a 2xx to CONNECT (the connection
    // becomes a tunnel).
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || (*method == Method::CONNECT && status.is_success());
    let body = if bodiless {
        Framing::Empty
    } else if framing.transfer_encoding {
        // Transfer-Encoding wins over Content-Length; not reusing the connection after
        // such a message is what RFC 9112 asks of an intermediary.
        close |= framing.content_length.is_some();
        if framing.chunked_last {
            Framing::Chunked
        } else {
            close = true;
            Framing::UntilClose
        }
    } else {
        match framing.content_length {
            Some(Ok(0)) => Framing::Empty,
            Some(Ok(n)) => Framing::Length(n),
            None => {
                close = true;
                Framing::UntilClose
            }
            Some(Err(())) => return Err("invalid Content-Length".into()),
        }
    };
    Ok(Some(ResponseHead { status, len, body, close }))
}

/// A message's framing header fields, read straight from the parsed head.
#[derive(Default)]
struct FramingFields {
    content_length: Option<Result<u64, ()>>,
    transfer_encoding: bool,
    /// How many transfer codings are listed.
    codings: usize,
    /// The last transfer coding seen is `chunked`.
    chunked_last: bool,
    close: bool,
    keep_alive: bool,
}

impl FramingFields {
    fn add(&mut self, name: &str, value: &[u8]) {
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(|b| *b == b',') {
                let n = parse_decimal(part.trim_ascii());
                self.content_length = match (self.content_length, n) {
                    (None, n) => Some(n),
                    (Some(Ok(a)), Ok(b)) if a == b => Some(Ok(a)),
                    _ => Some(Err(())),
                };
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding = true;
            for coding in value.split(|b| *b == b',').map(|t| t.trim_ascii()).filter(|t| !t.is_empty()) {
                self.codings += 1;
                self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|b| *b == b',').map(|t| t.trim_ascii()) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
}

impl FramingFields {
    /// HTTP/1.1 keeps a connection unless told `close`; HTTP/1.0 only when told `keep-alive`.
    fn keeps_alive(&self, version: Version) -> bool {
        !self.close && (version != Version::HTTP_10 || self.keep_alive)
    }
}

fn parse_decimal(digits: &[u8]) -> Result<u64, ()> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    Ok(digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The request head as it goes upstream, in a buffer of exactly its size.
pub fn write_request(parts: &request::Parts) -> Vec<u8> {
    let target = parts.uri.path_and_query().map(|p| p.as_str());
    // Absolute and authority forms go on as received; origin form is its path and query.
    let target = match (parts.uri.scheme(), target) {
        (None, Some(p)) if parts.method != Method::CONNECT => std::borrow::Cow::Borrowed(p),
        _ => std::borrow::Cow::Owned(parts.uri.to_string()),
    };
    let version: &[u8] = if parts.version == Version::HTTP_10 { b"HTTP/1.0" } else { b"HTTP/1.1" };
    let method = parts.method.as_str().as_bytes();
    let fields: usize = parts.headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    let mut out = Vec::with_capacity(method.len() + target.len() + version.len() + 4 + fields + 2);
    out.put_slice(method);
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_u8(b' ');
    out.put_slice(version);
    out.put_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out
}

/// What idgate answers itself: a short text body saying why (never a secret).
pub fn write_failure(f: &Failure, head_only: bool, close: bool, out: &mut BytesMut) {
    let body = format!("idgate: {}\n", f.why);
    let reason = f.status.canonical_reason().unwrap_or("");
    let connection = if close { "connection: close\r\n" } else { "" };
    let head = format!("HTTP/1.1 {} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{connection}\r\n", f.status.as_u16(), body.len());
    out.put_slice(head.as_bytes());
    if !head_only {
        out.put_slice(body.as_bytes());
    }
}

fn bad(why: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, why)
}

fn too_large() -> Failure {
    Failure::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, format!("request head larger than {MAX_HEAD} bytes or {MAX_HEADERS} fields"))
}
