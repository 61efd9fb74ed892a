//! A byte stream with a read buffer that exists only while it holds bytes. A keep-alive flow
//! spends most of its life waiting for the next request; that wait reads into a buffer on the
//! stack, inside one poll, and keeps only what arrived, so 1,000 idle flows pin no buffers.
use bytes::{Bytes, BytesMut};
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// The most one read takes in.
const READ_SIZE: usize = 16 * 1024;

pub struct Reader<T> {
    pub io: T,
    /// Bytes read and not yet consumed.
    pub buf: BytesMut,
}

impl<T: AsyncRead + Unpin> Reader<T> {
    pub fn new(io: T, buf: BytesMut) -> Self {
        Reader { io, buf }
    }

    /// Reads once and appends what came; 0 means end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        poll_fn(|cx| self.poll_fill(cx)).await
    }

    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut stack = [MaybeUninit::<u8>::uninit(); READ_SIZE];
        let mut rb = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                self.buf.extend_from_slice(rb.filled());
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Drops the first `n` buffered bytes (once written on: no copy, no allocation); an
    /// emptied buffer gives its memory back.
    pub fn consume(&mut self, n: usize) {
        if n >= self.buf.len() {
            self.buf = BytesMut::new();
        } else {
            bytes::Buf::advance(&mut self.buf, n);
        }
    }

    /// Takes everything buffered; the buffer starts again empty.
    pub fn take_all(&mut self) -> Bytes {
        std::mem::take(&mut self.buf).freeze()
    }
}
