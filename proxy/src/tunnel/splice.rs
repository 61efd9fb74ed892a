//! Bidirectional copy between a TCP socket and an HTTP/2 stream. EOF becomes END_STREAM and
//! END_STREAM becomes a TCP half-close; an error or reset on either side resets both.
use crate::observe::flows::OpenFlow;
use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use std::future::{poll_fn, Future};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

const FIRST_READ: usize = 16 * 1024;
const MAX_READ: usize = 256 * 1024;
/// How long a busy flow keeps its grown read buffer while no bytes arrive.
const BUSY_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// How a client-side splice ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ConnectSpliceError {
    #[error("peer answered {0}")]
    Refused(http::StatusCode),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The client side of a CONNECT stream: the workload's bytes start flowing right behind the
/// request headers (no round trip spent waiting for the answer; the peer discards them unless
/// it authorizes the flow), and the answer's body flows back once the peer said 200.
/// `early` is what the workload had sent before the stream opened: queued now, it leaves in
/// the same write as the headers. `on_accept` runs when the 200 arrives, `on_client_eof` when
/// the workload has closed its side (usually well before the peer's end of stream arrives).
/// An answer that takes longer than `answer_timeout` fails the flow. Bytes are counted on
/// `flow` as they pass (up, down); `flow` being closed (a reload or revocation) resets both
/// ends.
///
/// Its state is per open flow, so it is kept small: the arguments are taken by an `async move`
/// block and used where they lie (an `async fn` would keep a second copy of each), and the
/// answer's deadline, needed only until the answer, lives in an allocation of its own.
#[expect(clippy::manual_async_fn, reason = "an async fn keeps a second copy of each argument in every open flow's state")]
pub fn splice_connect<'a>(
    mut tcp: TcpStream,
    mut early: Option<Bytes>,
    (mut send, response): (SendStream<Bytes>, h2::client::ResponseFuture),
    answer_timeout: std::time::Duration,
    flow: &'a OpenFlow,
    on_accept: impl FnOnce() + 'a,
    on_client_eof: impl FnOnce() + 'a,
) -> impl Future<Output = Result<(u64, u64), ConnectSpliceError>> + 'a {
    async move {
        let (mut rd, mut wr) = tcp.split();
        let early_len = early.as_ref().map_or(0, |b| b.len() as u64);
        // Each direction is made where it is pinned: a future bound to a variable and then moved
        // into the one that joins them would take its room twice in this flow's state.
        let result = {
            let down = std::pin::pin!(async {
                // The answer is dropped once its body is taken (in its own block, so it takes
                // no room while the flow runs).
                let mut recv = {
                    let answer = Box::pin(tokio::time::timeout(answer_timeout, response)).await;
                    let response = answer.map_err(|_| no_answer(answer_timeout))?.map_err(h2_err)?;
                    if response.status() != http::StatusCode::OK {
                        return Err(ConnectSpliceError::Refused(response.status()));
                    }
                    response.into_body()
                };
                on_accept();
                Ok(h2_to_tcp(&mut recv, &mut wr, &flow.down).await?)
            });
            let up = std::pin::pin!(async {
                if let Some(bytes) = early.take() {
                    flow.up.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    send.send_data(bytes, false).map_err(h2_err)?; // buffered by h2 within the stream window
                }
                let sent = tcp_to_h2(&mut rd, &mut send, &flow.up).await?;
                on_client_eof();
                Ok(sent + early_len)
            });
            tokio::select! {
                r = async { tokio::try_join!(up, down) } => r,
                () = flow.closed() => Err(ConnectSpliceError::Io(closed_by_idgate())),
            }
        };
        if result.is_err() {
            crate::sys::socket::set_abortive_close(&tcp);
            send.send_reset(h2::Reason::CANCEL);
        }
        result
    }
}

/// Byte counts of one finished flow: (TCP → h2, h2 → TCP), also added to `flow`'s counts
/// (`down`, `up`: the server side's peer sends what the service receives) as they pass.
/// `flow` being closed resets both ends. Kept small like `splice_connect`.
#[expect(clippy::manual_async_fn, reason = "per-flow state: see `splice_connect`")]
pub fn splice<'a>(
    mut tcp: TcpStream,
    mut send: SendStream<Bytes>,
    mut recv: RecvStream,
    flow: &'a OpenFlow,
) -> impl Future<Output = io::Result<(u64, u64)>> + 'a {
    async move {
        let (mut rd, mut wr) = tcp.split();
        let result = tokio::select! {
            r = async { tokio::try_join!(tcp_to_h2(&mut rd, &mut send, &flow.down), h2_to_tcp(&mut recv, &mut wr, &flow.up)) } => r,
            () = flow.closed() => Err(closed_by_idgate()),
        };
        if result.is_err() {
            // Dropping the unfinished h2 stream sends RST_STREAM; linger 0 turns our close into RST.
            crate::sys::socket::set_abortive_close(&tcp);
            send.send_reset(h2::Reason::CANCEL);
        }
        result
    }
}

/// idgate closed the flow on purpose (a reload's new policy or a revocation denies it).
pub(crate) fn closed_by_idgate() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "closed by idgate")
}

/// The peer did not answer a CONNECT in time (its host may be gone without a word).
pub(super) fn no_answer(after: std::time::Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("no answer to CONNECT within {:.1}s", after.as_secs_f64()))
}

/// An h2 error as the io::Error a byte stream reports (I/O errors keep their kind).
pub(super) fn h2_err(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io().unwrap_or_else(|| io::Error::other("h2 I/O error"))
    } else {
        io::Error::new(io::ErrorKind::ConnectionReset, e)
    }
}

async fn tcp_to_h2(rd: &mut ReadHalf<'_>, send: &mut SendStream<Bytes>, count: &AtomicU64) -> io::Result<u64> {
    let mut want = FIRST_READ;
    let mut buf = BytesMut::new();
    let mut total = 0u64;
    loop {
        // Quiet flows read into a buffer that lives only inside one poll and copy out what
        // came, so a flow waiting for its next request holds no buffer at all (1,000 idle
        // keep-alive flows would otherwise pin 16 MiB). A flow that fills it is busy and
        // switches to a growing buffer of its own, kept across short pauses.
        let (mut data, n, drained) = if want <= FIRST_READ {
            let data = poll_fn(|cx| poll_read_copy(rd, cx)).await?;
            let n = data.len();
            (data, n, n < FIRST_READ)
        } else {
            buf.reserve(want); // reuses the allocation once h2 released the last chunk
            let room = buf.capacity() - buf.len();
            let n = rd.read_buf(&mut buf).await?;
            (buf.split().freeze(), n, n < room)
        };
        if n == 0 {
            send.send_data(Bytes::new(), true).map_err(h2_err)?;
            return Ok(total);
        }
        total += n as u64;
        count.fetch_add(n as u64, Ordering::Relaxed);
        if n >= want && want < MAX_READ {
            want *= 2;
        }
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let granted = poll_fn(|cx| send.poll_capacity(cx))
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "tunnel stream closed"))?
                .map_err(h2_err)?;
            let chunk = data.split_to(granted.min(data.len()));
            send.send_data(chunk, false).map_err(h2_err)?;
        }
        // Boxed: only a busy flow pausing waits here, and its deadline would otherwise take
        // room in every flow's state.
        if drained && want > FIRST_READ && !Box::pin(idle_within(rd, BUSY_GRACE)).await? {
            buf = BytesMut::new(); // quiet for a while: back to the no-buffer mode
            want = FIRST_READ;
        }
    }
}

/// One read of up to FIRST_READ bytes into a stack buffer, copied out. Through AsyncRead, so
/// tokio treats a short read as "drained" and the next poll waits for the next edge instead of
/// spending a recv on EAGAIN.
fn poll_read_copy(rd: &mut ReadHalf<'_>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<Bytes>> {
    let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); FIRST_READ];
    let mut rb = tokio::io::ReadBuf::uninit(&mut stack);
    match tokio::io::AsyncRead::poll_read(std::pin::Pin::new(rd), cx, &mut rb) {
        std::task::Poll::Ready(Ok(())) => std::task::Poll::Ready(Ok(Bytes::copy_from_slice(rb.filled()))),
        std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
        std::task::Poll::Pending => std::task::Poll::Pending,
    }
}

/// Waits up to `grace` for the socket to become readable: true if it did.
async fn idle_within(rd: &ReadHalf<'_>, grace: std::time::Duration) -> io::Result<bool> {
    match tokio::time::timeout(grace, rd.as_ref().readable()).await {
        Ok(ready) => ready.map(|()| true),
        Err(_elapsed) => Ok(false),
    }
}

async fn h2_to_tcp(recv: &mut RecvStream, wr: &mut WriteHalf<'_>, count: &AtomicU64) -> io::Result<u64> {
    let mut total = 0u64;
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(h2_err)?;
        total += chunk.len() as u64;
        count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        wr.write_all(&chunk).await?;
        // Window credit goes back only after the bytes left: end-to-end backpressure.
        let _ = recv.flow_control().release_capacity(chunk.len());
    }
    wr.shutdown().await?;
    Ok(total)
}
