//! A socket whose read buffer exists only once it is worth having. rustls pulls ciphertext a
//! few KiB at a time, so a busy tunnel connection wants a large read buffer under it (one
//! syscall per 64 KiB instead of sixteen); an unauthenticated connection waiting for its
//! handshake must not get one (thousands of them would pin hundreds of MB). Reads go straight
//! to the socket until `grow` is called.
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub struct LazyBuffer {
    tcp: TcpStream,
    buf: Box<[u8]>,
    pos: usize,
    filled: usize,
}

impl LazyBuffer {
    pub fn new(tcp: TcpStream) -> Self {
        LazyBuffer { tcp, buf: Box::default(), pos: 0, filled: 0 }
    }

    /// From now on, reads go through a buffer of `size` bytes.
    pub fn grow(&mut self, size: usize) {
        if self.buf.len() < size {
            let mut buf = vec![0u8; size].into_boxed_slice();
            let pending = self.filled - self.pos;
            buf[..pending].copy_from_slice(&self.buf[self.pos..self.filled]);
            (self.buf, self.pos, self.filled) = (buf, 0, pending);
        }
    }
}

impl AsyncRead for LazyBuffer {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos == this.filled && out.remaining() >= this.buf.len() {
            // Nothing buffered and the caller has room for a whole buffer (or we have none).
            return Pin::new(&mut this.tcp).poll_read(cx, out);
        }
        if this.pos == this.filled {
            let mut rb = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut rb))?;
            (this.pos, this.filled) = (0, rb.filled().len());
        }
        let n = (this.filled - this.pos).min(out.remaining());
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for LazyBuffer {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_the_same_bytes_before_and_after_growing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let mut lazy = LazyBuffer::new(listener.accept().await.unwrap().0);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sender = {
            let data = data.clone();
            tokio::spawn(async move { writer.write_all(&data).await.unwrap() })
        };
        let mut got = vec![0u8; 10];
        lazy.read_exact(&mut got).await.unwrap();
        assert!(lazy.buf.is_empty(), "a buffer before grow()");
        lazy.grow(64 * 1024);
        let mut rest = Vec::new();
        let mut chunk = [0u8; 1000]; // smaller than the buffer: served from it
        while got.len() + rest.len() < data.len() {
            let n = lazy.read(&mut chunk).await.unwrap();
            rest.extend_from_slice(&chunk[..n]);
        }
        got.extend(rest);
        assert_eq!(got, data);
        sender.await.unwrap();
    }
}

#[cfg(test)]
mod readiness_tests {
    /// tokio reports a new socket readable before anything arrived (so that no edge is lost);
    /// waiting for a handshake's first bytes takes a peek, which does wait.
    #[tokio::test]
    async fn peek_waits_for_the_first_byte_of_an_idle_accepted_socket() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut one = [0u8; 1];
        let r = tokio::time::timeout(std::time::Duration::from_millis(200), server.peek(&mut one)).await;
        assert!(r.is_err(), "peek returned for a socket nobody wrote to");
        client.write_all(b"h").await.unwrap();
        assert_eq!(server.peek(&mut one).await.unwrap(), 1);
    }
}
