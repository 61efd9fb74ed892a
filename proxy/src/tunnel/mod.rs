//! The data path: outbound capture → pooled HTTP/2 CONNECT over mTLS → inbound → local service.
pub mod handshake_gate;
pub mod inbound;
mod inbound_conn;
mod inbound_http;
mod inputs;
mod keepalive;
mod lazy_buffer;
mod local;
mod local_addrs;
pub mod outbound;
mod outbound_http;
pub mod pool;
pub mod refusals;
mod splice;
mod stream_io;

pub use inputs::ProxyInputs;
pub use splice::{splice, splice_connect, ConnectSpliceError};
pub use stream_io::StreamIo;

/// Header carrying the source process description (informational, for the peer's decision log).
pub const PROCESS_HEADER: &str = "x-idgate-process";
/// Header carrying the outbound side's flow id, so both hosts' logs name the same flow.
pub const FLOW_HEADER: &str = "x-idgate-flow";
