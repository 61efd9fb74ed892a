//! Bidirectional copy between a TCP socket and an HTTP/2 stream. EOF becomes END_STREAM and
//! END_STREAM becomes a TCP half-close; an error or reset on either side resets both.
use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use std::future::poll_fn;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

const FIRST_READ: usize = 16 * 1024;
const MAX_READ: usize = 256 * 1024;

/// Byte counts of one finished flow: (TCP → h2, h2 → TCP).
pub async fn splice(mut tcp: TcpStream, mut send: SendStream<Bytes>, mut recv: RecvStream) -> io::Result<(u64, u64)> {
    let (mut rd, mut wr) = tcp.split();
    let result = tokio::try_join!(tcp_to_h2(&mut rd, &mut send), h2_to_tcp(&mut recv, &mut wr));
    if result.is_err() {
        // Dropping the unfinished h2 stream sends RST_STREAM; linger 0 turns our close into RST.
        crate::socket::set_abortive_close(&tcp);
        send.send_reset(h2::Reason::CANCEL);
    }
    result
}

fn h2_err(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io().unwrap_or_else(|| io::Error::other("h2 I/O error"))
    } else {
        io::Error::new(io::ErrorKind::ConnectionReset, e)
    }
}

async fn tcp_to_h2(rd: &mut ReadHalf<'_>, send: &mut SendStream<Bytes>) -> io::Result<u64> {
    let mut buf = BytesMut::new();
    let mut want = FIRST_READ;
    let mut total = 0u64;
    loop {
        // Reuses the previous allocation once h2 has released the last chunk.
        buf.reserve(want);
        let n = rd.read_buf(&mut buf).await?;
        if n == 0 {
            send.send_data(Bytes::new(), true).map_err(h2_err)?;
            return Ok(total);
        }
        total += n as u64;
        if n >= want && want < MAX_READ {
            want *= 2; // the flow is busy: read bigger chunks
        }
        let mut data = buf.split().freeze();
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let granted = poll_fn(|cx| send.poll_capacity(cx))
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "tunnel stream closed"))?
                .map_err(h2_err)?;
            let chunk = data.split_to(granted.min(data.len()));
            send.send_data(chunk, false).map_err(h2_err)?;
        }
    }
}

async fn h2_to_tcp(recv: &mut RecvStream, wr: &mut WriteHalf<'_>) -> io::Result<u64> {
    let mut total = 0u64;
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(h2_err)?;
        total += chunk.len() as u64;
        wr.write_all(&chunk).await?;
        // Window credit goes back only after the bytes left: end-to-end backpressure.
        let _ = recv.flow_control().release_capacity(chunk.len());
    }
    wr.shutdown().await?;
    Ok(total)
}
