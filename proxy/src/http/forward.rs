//! The HTTP-aware path for one connection: HTTP/1 requests go through the lean head-only path
//! (`h1`), HTTP/2 with prior knowledge through hyper (`h2c`). Either way each request is
//! rewritten by the `Upstream` and sent over one upstream connection of the same version.
use super::h1::Reader;
use super::upstream::{Io, Upstream};
use bytes::BytesMut;
use std::error::Error;

/// What an HTTP/2 client sends first (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one downstream connection until it closes.
pub async fn serve<U: Upstream>(downstream: impl Io, upstream: U) -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut down = Reader::new(downstream, BytesMut::new());
    // Enough bytes to tell the HTTP/2 preface from an HTTP/1 request line.
    while down.buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&down.buf) {
        if down.fill().await? == 0 {
            if down.buf.is_empty() {
                return Ok(());
            }
            break;
        }
    }
    if down.buf.starts_with(H2_PREFACE) {
        let prefix = down.take_all();
        // Boxed: an HTTP/1 flow's task then does not carry hyper's larger state.
        Box::pin(super::h2c::serve(super::h2c::Prefixed::new(prefix, down.io), upstream)).await
    } else {
        super::h1::serve(down, &upstream).await
    }
}
