//! Arbitrary bytes from a "workload" through the whole HTTP-aware path (hyper parsing,
//! rewrite, forwarding to an in-memory upstream): no panic, no hang past the deadline.
#![no_main]
mod common;

use bytes::Bytes;
use http::{Response, StatusCode, Version};
use http_body_util::Full;
use idgate::http::{BoxIo, Failure, Flow, Upstream};
use idgate::spiffe::SpiffeId;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct InMemory {
    source: SpiffeId,
}

impl Upstream for InMemory {
    async fn open(&self, version: Version) -> Result<BoxIo, Failure> {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
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

    fn rewrite(&self, parts: &mut http::request::Parts) -> Result<(), Failure> {
        let names = common::names();
        let flow = Flow { source: &self.source, dst: "10.0.0.1:80".parse().unwrap(), names: &names };
        common::rewriter().apply(&flow, parts).map(|_| ()).map_err(|e| Failure::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
    }
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    }
    RT.with(|rt| {
        rt.block_on(async {
            let (mut workload, proxy_side) = tokio::io::duplex(1 << 20);
            let upstream = InMemory { source: SpiffeId::parse("spiffe://td/app/a").unwrap() };
            let server = tokio::spawn(idgate::http::serve(proxy_side, upstream));
            let exchange = async {
                workload.write_all(data).await.ok()?;
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
