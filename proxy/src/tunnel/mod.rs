//! The data path: outbound capture → pooled HTTP/2 CONNECT over mTLS → inbound → local service.
pub mod handshake_gate;
pub mod inbound;
mod inbound_conn;
mod inbound_http;
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

pub use splice::{splice, splice_connect, ConnectSpliceError};
pub use stream_io::{PeerRefused, StreamIo};

/// HTTP/2 tuning shared by both ends: large windows so one stream can fill a fast link.
pub mod h2_settings {
    pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
    pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
    pub const MAX_FRAME: u32 = 1024 * 1024;
    pub const MAX_SEND_BUFFER: usize = 1024 * 1024;
    pub const MAX_STREAMS_PER_CONNECTION: u32 = 100;
    /// A CONNECT's header list is a few hundred bytes (the process description, which holds
    /// an exe path, is the longest part); h2's default would take 16 MiB from a peer.
    pub const MAX_HEADER_LIST: u32 = 16 * 1024;
}

/// Header carrying the source process description (informational, for the peer's decision log).
pub const PROCESS_HEADER: &str = "x-idgate-process";
/// Header carrying the outbound side's flow id, so both hosts' logs name the same flow.
pub const FLOW_HEADER: &str = "x-idgate-flow";
