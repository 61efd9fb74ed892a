//! Socket options every idgate socket needs: the bypass mark (so our own traffic is never
//! redirected back to us), no Nagle delay, and abortive close to propagate resets.
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

fn setsockopt_u32(fd: i32, level: i32, name: i32, value: u32) -> io::Result<()> {
    // SAFETY: plain setsockopt with a u32 value of the declared length.
    let rc = unsafe { libc::setsockopt(fd, level, name, &value as *const u32 as *const libc::c_void, 4) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Connects to `addr` with our bypass mark set, so the nftables redirect skips this socket.
pub async fn connect_marked(addr: SocketAddr, mark: u32, timeout: Duration) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    setsockopt_u32(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_MARK, mark)?;
    sock.set_nodelay(true)?;
    match tokio::time::timeout(timeout, sock.connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr} timed out"))),
    }
}

/// Tunnel sockets: data unacknowledged for this long ends the connection (TCP_USER_TIMEOUT),
/// so a peer that vanished mid-transfer is noticed even while PINGs wait behind the data.
pub fn set_peer_timeout(stream: &TcpStream, timeout: Duration) {
    let _ = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout));
}

/// Makes the next close send a TCP RST instead of FIN: how a stream reset reaches the app.
pub fn set_abortive_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// rustls pulls ciphertext 4 KiB at a time; a read buffer under it turns a bulk transfer's
/// 16 syscalls per 64 KiB into one. Writes pass straight through.
pub const TLS_READ_BUFFER: usize = 64 * 1024;

pub fn buffered(tcp: TcpStream) -> tokio::io::BufReader<TcpStream> {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, tcp)
}

/// What the peer already sent, read without waiting: up to `N` bytes, copied out of a stack
/// buffer (a small request costs a small allocation, not N), or None when nothing is queued
/// yet (or the peer already closed: the caller's next read sees that again).
pub fn read_queued<const N: usize>(stream: &TcpStream) -> io::Result<Option<bytes::Bytes>> {
    // Not zeroed: every new flow passes here, and recv overwrites what we keep.
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); N];
    // SAFETY: recv writes at most N bytes into buf.
    let n = unsafe { libc::recv(stream.as_raw_fd(), buf.as_mut_ptr().cast(), N, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: the kernel initialised the first n bytes.
    Ok((n > 0).then(|| bytes::Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) })))
}
