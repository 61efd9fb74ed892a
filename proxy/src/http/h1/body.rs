//! Message bodies pass through as the bytes they arrived as; the only work is knowing where
//! each ends (Content-Length, chunked framing, or the end of the connection). A request's
//! chunked trailer section is the exception: it is held until complete and goes on without the
//! fields a workload may not send (a service may merge trailers into the request's headers).
use super::reader::Reader;
use crate::http::forged::Protected;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Responses only: the body is everything until the server closes.
    UntilClose,
}

/// Where a body in flight stands.
pub struct Cursor {
    state: State,
    /// Requests only: what their trailer fields may not be.
    trailers: Option<Trailers>,
}

struct Trailers {
    protected: Arc<Protected>,
    /// The trailer section so far (after the last chunk's line).
    held: Vec<u8>,
    /// The section to send on, once complete.
    out: Option<Vec<u8>>,
}

/// Longest trailer section accepted, in bytes (as for a head).
const MAX_TRAILERS: usize = super::MAX_HEAD;
/// Most trailer fields accepted.
const MAX_TRAILER_FIELDS: usize = 64;

/// What `advance` made of the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// How many leading bytes belong to the body.
    pub used: usize,
    /// How many of those go on as they are; the rest (a request's trailer section) is held.
    pub pass: usize,
}

enum State {
    Length(u64),
    Chunked(Chunks),
    UntilClose,
    Done,
}

impl Cursor {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunks::Size { digits: 0, value: 0 }),
            Framing::UntilClose => State::UntilClose,
        };
        Cursor { state, trailers: None }
    }

    /// A request body's cursor: a chunked body's trailer fields that `protected` covers are
    /// dropped.
    pub fn request(framing: Framing, protected: Option<Arc<Protected>>) -> Self {
        let mut cursor = Cursor::new(framing);
        if framing == Framing::Chunked {
            cursor.trailers = protected.map(|protected| Trailers { protected, held: Vec::new(), out: None });
        }
        cursor
    }

    /// The trailer section to send after the bytes `advance` passed, once it is complete.
    pub fn take_trailers(&mut self) -> Option<Vec<u8>> {
        self.trailers.as_mut().and_then(|t| t.out.take())
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// How many of `data`'s leading bytes belong to the body, and how many of those go on as
    /// they are (the body is done when `is_done()` says so afterwards; then `take_trailers`
    /// gives what ends it, if it held its trailer section back).
    pub fn advance(&mut self, data: &[u8]) -> Result<Step, String> {
        let all = |used| Ok(Step { used, pass: used });
        match &mut self.state {
            State::Done => all(0),
            State::UntilClose => all(data.len()),
            State::Length(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                if *left == 0 {
                    self.state = State::Done;
                }
                all(n as usize)
            }
            State::Chunked(chunks) => {
                let holding = self.trailers.is_some();
                let mut pass = (holding && chunks.in_trailer_section()).then_some(0);
                let mut used = 0;
                let mut ended = false;
                while used < data.len() {
                    used += chunks.step(&data[used..])?;
                    if holding && pass.is_none() && chunks.in_trailer_section() {
                        pass = Some(used);
                    }
                    if let Chunks::End = chunks {
                        ended = true;
                        break;
                    }
                }
                if ended {
                    self.state = State::Done;
                }
                let pass = pass.unwrap_or(used);
                if let Some(t) = &mut self.trailers {
                    t.held.extend_from_slice(&data[pass..used]);
                    if t.held.len() > MAX_TRAILERS {
                        return Err("malformed chunked body: trailer section too large".into());
                    }
                    if ended {
                        t.out = Some(without_protected(&t.held, &t.protected)?);
                        t.held = Vec::new();
                    }
                }
                Ok(Step { used, pass })
            }
        }
    }

    /// The stream ended: fine only where the end of the connection ends the body.
    pub fn eof(&mut self) -> Result<(), String> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err("connection closed in the middle of a body".into()),
        }
    }
}

/// `section` (trailer fields, then the empty line) without the fields `protected` covers.
fn without_protected(section: &[u8], protected: &Protected) -> Result<Vec<u8>, String> {
    if section == b"\r\n" {
        return Ok(section.to_vec());
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((_, fields))) => {
            let mut out = Vec::with_capacity(section.len());
            for f in fields.iter().filter(|f| !protected.covers(&f.name.to_ascii_lowercase())) {
                out.extend_from_slice(f.name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(f.value);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            Ok(out)
        }
        Ok(httparse::Status::Partial) => Err("malformed chunked body: incomplete trailer section".into()),
        Err(e) => Err(format!("malformed chunked body: trailer section: {e}")),
    }
}

/// Chunked framing (RFC 9112 section 7.1), strict: CRLF line ends only, at most 16 hex
/// digits of size, extensions skipped, trailer fields passed through.
#[derive(Debug)]
enum Chunks {
    Size {
        digits: u8,
        value: u64,
    },
    /// Inside a chunk extension, up to its CR.
    Extension {
        value: u64,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: at the start of a trailer line (or of the final CRLF).
    TrailerLine,
    InTrailer,
    TrailerLf,
    EndLf,
    End,
}

impl Chunks {
    /// Past the last chunk: in the trailer section (or at its end).
    fn in_trailer_section(&self) -> bool {
        matches!(self, Chunks::TrailerLine | Chunks::InTrailer | Chunks::TrailerLf | Chunks::EndLf | Chunks::End)
    }

    /// Consumes a prefix of `data` (at least one byte); returns its length.
    fn step(&mut self, data: &[u8]) -> Result<usize, String> {
        let b = data[0];
        let bad = |what: &str| Err(format!("malformed chunked body: {what}"));
        *self = match *self {
            Chunks::Size { digits, value } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits == 16 {
                        return bad("chunk size too long");
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    Chunks::Size { digits: digits + 1, value: value << 4 | d }
                }
                b'\r' if digits > 0 => Chunks::SizeLf { value },
                b';' if digits > 0 => Chunks::Extension { value },
                _ => return bad("expected a chunk size"),
            },
            Chunks::Extension { value } => match b {
                b'\r' => Chunks::SizeLf { value },
                b'\n' => return bad("bare LF in a chunk extension"),
                _ => Chunks::Extension { value },
            },
            Chunks::SizeLf { value } => match b {
                b'\n' if value == 0 => Chunks::TrailerLine,
                b'\n' => Chunks::Data(value),
                _ => return bad("expected LF after a chunk size"),
            },
            Chunks::Data(left) => {
                let n = left.min(data.len() as u64);
                *self = if n == left { Chunks::DataCr } else { Chunks::Data(left - n) };
                return Ok(n as usize);
            }
            Chunks::DataCr => {
                if b == b'\r' {
                    Chunks::DataLf
                } else {
                    return bad("expected CRLF after chunk data");
                }
            }
            Chunks::DataLf => {
                if b == b'\n' {
                    Chunks::Size { digits: 0, value: 0 }
                } else {
                    return bad("expected CRLF after chunk data");
                }
            }
            Chunks::TrailerLine => match b {
                b'\r' => Chunks::EndLf,
                b'\n' => return bad("bare LF in the trailer section"),
                _ => Chunks::InTrailer,
            },
            Chunks::InTrailer => match b {
                b'\r' => Chunks::TrailerLf,
                b'\n' => return bad("bare LF in a trailer field"),
                _ => Chunks::InTrailer,
            },
            Chunks::TrailerLf => {
                if b == b'\n' {
                    Chunks::TrailerLine
                } else {
                    return bad("expected LF in the trailer section");
                }
            }
            Chunks::EndLf => {
                if b == b'\n' {
                    Chunks::End
                } else {
                    return bad("expected LF at the end of the body");
                }
            }
            Chunks::End => return Ok(0),
        };
        Ok(1)
    }
}

/// How a copied body ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Copied {
    /// The body is complete; bytes after it stay in the reader.
    Done,
    /// The source ended where that ends the body (UntilClose).
    Eof,
}

/// Why a body could not be copied: the reading side is at fault, or the writing side.
#[derive(Debug)]
pub enum CopyError {
    Source(String),
    Sink(io::Error),
}

/// Copies one body from `from` to `to`, leaving anything after it in `from`'s buffer.
pub async fn copy<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(from: &mut Reader<R>, to: &mut W, cursor: &mut Cursor) -> Result<Copied, CopyError> {
    loop {
        if !from.buf.is_empty() {
            let step = cursor.advance(&from.buf).map_err(CopyError::Source)?;
            if step.pass > 0 {
                to.write_all(&from.buf[..step.pass]).await.map_err(CopyError::Sink)?;
            }
            if step.used > 0 {
                from.consume(step.used);
            }
            if let Some(trailers) = cursor.take_trailers() {
                to.write_all(&trailers).await.map_err(CopyError::Sink)?;
            }
        }
        if cursor.is_done() {
            return Ok(Copied::Done);
        }
        match from.fill().await {
            Ok(0) => {
                cursor.eof().map_err(CopyError::Source)?;
                return Ok(Copied::Eof);
            }
            Ok(_) => {}
            Err(e) => return Err(CopyError::Source(e.to_string())),
        }
    }
}
