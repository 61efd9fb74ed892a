//! Message bodies pass through as the bytes they arrived as; the only work is knowing where
//! each ends (Content-Length, chunked framing, or the end of the connection).
use super::reader::Reader;
use std::io;
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
        Cursor { state }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// How many of `data`'s leading bytes belong to the body (the body is done when
    /// `is_done()` says so afterwards).
    pub fn advance(&mut self, data: &[u8]) -> Result<usize, String> {
        match &mut self.state {
            State::Done => Ok(0),
            State::UntilClose => Ok(data.len()),
            State::Length(left) => {
                let n = (*left).min(data.len() as u64);
                *left -= n;
                if *left == 0 {
                    self.state = State::Done;
                }
                Ok(n as usize)
            }
            State::Chunked(chunks) => {
                let mut used = 0;
                while used < data.len() {
                    used += chunks.step(&data[used..])?;
                    if let Chunks::End = chunks {
                        self.state = State::Done;
                        break;
                    }
                }
                Ok(used)
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
            let n = cursor.advance(&from.buf).map_err(CopyError::Source)?;
            if n > 0 {
                to.write_all(&from.buf[..n]).await.map_err(CopyError::Sink)?;
                from.consume(n);
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
