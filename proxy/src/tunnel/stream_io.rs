//! One HTTP/2 CONNECT stream as a byte stream (AsyncRead + AsyncWrite), so that an HTTP
//! client or server can run inside the tunnel. On the client side the first read waits for
//! the peer's answer: anything but 200 becomes a `PeerRefused` error.
use super::splice::h2_err;
use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use crate::http::PeerRefused;

enum Recv {
    /// Waiting for the peer's answer, at most until the deadline.
    Answer(h2::client::ResponseFuture, Pin<Box<tokio::time::Sleep>>, std::time::Duration, Option<Box<dyn FnOnce() + Send>>),
    Body(RecvStream),
    Done,
}

pub struct StreamIo {
    send: SendStream<Bytes>,
    recv: Recv,
    pending: Bytes,
    shut: bool,
    /// Whatever must live as long as the stream (the pool lease that counts its slot).
    _hold: Option<Box<dyn std::any::Any + Send>>,
}

impl StreamIo {
    /// Client side: `on_accept` runs once when the peer answers 200; no answer within
    /// `answer_timeout` is an error.
    pub fn client(
        (send, answer): (SendStream<Bytes>, h2::client::ResponseFuture),
        answer_timeout: std::time::Duration,
        on_accept: impl FnOnce() + Send + 'static,
        hold: impl std::any::Any + Send,
    ) -> Self {
        let recv = Recv::Answer(answer, Box::pin(tokio::time::sleep(answer_timeout)), answer_timeout, Some(Box::new(on_accept)));
        StreamIo { send, recv, pending: Bytes::new(), shut: false, _hold: Some(Box::new(hold)) }
    }

    /// Server side: the request body and the stream of the 200 response already sent.
    pub fn server(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        StreamIo { send, recv: Recv::Body(recv), pending: Bytes::new(), shut: false, _hold: None }
    }
}

impl AsyncRead for StreamIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                if this.pending.is_empty() {
                    // An emptied slice still pins the frame buffer it came from.
                    this.pending = Bytes::new();
                }
                return Poll::Ready(Ok(()));
            }
            match &mut this.recv {
                Recv::Answer(answer, deadline, timeout, on_accept) => {
                    let response = match Pin::new(answer).poll(cx) {
                        Poll::Ready(r) => r.map_err(h2_err)?,
                        Poll::Pending => {
                            ready!(deadline.as_mut().poll(cx));
                            let err = super::splice::no_answer(*timeout);
                            this.recv = Recv::Done;
                            return Poll::Ready(Err(err));
                        }
                    };
                    if response.status() != http::StatusCode::OK {
                        this.recv = Recv::Done;
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::PermissionDenied, PeerRefused(response.status()))));
                    }
                    if let Some(f) = on_accept.take() {
                        f();
                    }
                    this.recv = Recv::Body(response.into_body());
                }
                Recv::Body(body) => match ready!(body.poll_data(cx)) {
                    Some(Ok(chunk)) => {
                        // Window credit goes back as the bytes are handed over.
                        let _ = body.flow_control().release_capacity(chunk.len());
                        this.pending = chunk;
                    }
                    Some(Err(e)) => return Poll::Ready(Err(h2_err(e))),
                    None => {
                        this.recv = Recv::Done;
                        return Poll::Ready(Ok(()));
                    }
                },
                Recv::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let send = &mut self.send;
        send.reserve_capacity(data.len());
        loop {
            let granted = match ready!(send.poll_capacity(cx)) {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => n,
                Some(Err(e)) => return Poll::Ready(Err(h2_err(e))),
                None => return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "tunnel stream closed"))),
            };
            let n = granted.min(data.len());
            send.send_data(Bytes::copy_from_slice(&data[..n]), false).map_err(h2_err)?;
            return Poll::Ready(Ok(n));
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut {
            self.shut = true;
            self.send.send_data(Bytes::new(), true).map_err(h2_err)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for StreamIo {
    fn drop(&mut self) {
        // A stream dropped before its end was sent is a reset, not a clean close.
        if !self.shut {
            self.send.send_reset(h2::Reason::CANCEL);
        }
    }
}
