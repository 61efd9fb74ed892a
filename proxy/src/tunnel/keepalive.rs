//! Dead-peer detection on a tunnel connection. A peer whose host died or whose packets are
//! dropped sends no FIN or RST: without PINGs its flows would hang until TCP gave up, many
//! minutes later. Both ends PING; the caller drops the connection when `watch` returns, which
//! ends every stream on it (their flows see a reset).
use std::time::Duration;

/// Returns why the peer is taken for dead: a PING unanswered within `peer_timeout` of being
/// due. PINGs go out every `interval` (well under `peer_timeout`).
pub async fn watch(mut ping_pong: h2::PingPong, interval: Duration, peer_timeout: Duration) -> String {
    let wait = peer_timeout.saturating_sub(interval).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(wait, ping_pong.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return format!("keepalive PING failed: {e}"),
            Err(_) => return format!("no answer to a keepalive PING for {:.1}s", (interval + wait).as_secs_f64()),
        }
    }
}
