//! HTTP/2 tuning shared by the tunnel's two ends and the workload-side h2c server: large windows
//! so one stream can fill a fast link.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
pub const MAX_FRAME: u32 = 1024 * 1024;
pub const MAX_SEND_BUFFER: usize = 1024 * 1024;
pub const MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// A CONNECT's header list is a few hundred bytes (the process description, which holds
/// an exe path, is the longest part); h2's default would take 16 MiB from a peer.
pub const MAX_HEADER_LIST: u32 = 16 * 1024;
