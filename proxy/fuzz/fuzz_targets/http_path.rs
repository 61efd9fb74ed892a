//! Arbitrary bytes from a "workload" through the whole HTTP-aware path (head parsing,
//! rewrite, body framing, forwarding to an in-memory upstream): no panic, no hang past the
//! deadline. Input after a 0xFF byte is what the upstream answers, raw, so response framing is
//! fuzzed too; without one, a real HTTP server (hyper) answers.
#![no_main]
mod common;

use bytes::Bytes;
use http::{Response, StatusCode, Version};
use http_body_util::Full;
use idgate::http::forged::Protected;
use idgate::http::{BoxIo, Failure, Flow, Upstream};
use idgate::spiffe::SpiffeId;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct InMemory {
    source: SpiffeId,
    /// Raw bytes the upstream answers with, instead of a real server.
    answer: Option<Vec<u8>>,
}

impl Upstream for InMemory {
    async fn open(&self, version: Version) -> Result<BoxIo, Failure> {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        if let Some(answer) = self.answer.clone() {
            tokio::spawn(async move {
                let _ = theirs.write_all(&answer).await;
                let _ = theirs.shutdown().await;
                let mut sink = Vec::new();
                let _ = theirs.read_to_end(&mut sink).await;
            });
            return Ok(Box::new(ours));
        }
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(|_req| async { Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) });
            let io = hyper_util::rt::TokioIo::new(theirs);
            if version == Version::HTTP_2 {
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new()).serve_connection(io, service).await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            }
        });
        Ok(Box::new(ours))
    }

    async fn rewrite(&self, parts: &mut http::request::Parts, _body: Option<&[u8]>) -> Result<(), Failure> {
        let names = common::names();
        let flow = Flow { source: &self.source, dst: "10.0.0.1:80".parse().unwrap(), names: &names };
        common::rewriter().apply(&flow, parts, None).await.map(|_| ()).map_err(|e| Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
    }

    /// What chunked trailers may not carry (the trailer section is rewritten too).
    fn protected(&self) -> Arc<Protected> {
        let names = common::names();
        let flow = Flow { source: &self.source, dst: "10.0.0.1:80".parse().unwrap(), names: &names };
        common::rewriter().plan(&flow).protected().clone()
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    }
    RT.with(|rt| {
        rt.block_on(async {
            let (mut workload, proxy_side) = tokio::io::duplex(1 << 20);
            let (request, answer) = match data.iter().position(|b| *b == 0xFF) {
                Some(i) => (&data[..i], Some(data[i + 1..].to_vec())),
                None => (data, None),
            };
            let upstream = InMemory { source: SpiffeId::parse("spiffe://td/app/a").unwrap(), answer };
            let server = tokio::spawn(idgate::http::serve(proxy_side, upstream));
            let exchange = async {
                workload.write_all(request).await.ok()?;
                workload.shutdown().await.ok()?;
                let mut answer = Vec::new();
                workload.read_to_end(&mut answer).await.ok()?;
                Some(answer)
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), exchange).await;
            server.abort();
        })
    });
});
