//! What the kernel and idgate spend to hand one new connection to a local listener, by the way
//! the flow is diverted. Client and listener run on this one thread, one connection at a time
//! (connect, accept, find the original destination, one byte each way, close), so the CPU time
//! per connection is the whole path's, kernel included:
//!   intercept_cost plain    ADDR N   the listener is ADDR itself: no diversion (the floor)
//!   intercept_cost redirect ADDR N   nftables REDIRECT to 127.0.0.1:15001, then idgate's
//!                                    conntrack lookup of the original tuple
//!   intercept_cost tproxy   ADDR N   nftables TPROXY to a transparent listener on :15001, whose
//!                                    accepted socket's local address is the original one
//! It prints one line: microseconds of wall and CPU time per connection. The namespace and the
//! rules each mode needs are `benches/e2e/intercept_cost.py`'s.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

const CAPTURE_PORT: u16 = 15001;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, addr, n) = match args.as_slice() {
        [_, mode, addr, n] => (
            mode.as_str(),
            addr.parse::<SocketAddr>().unwrap_or_else(|e| die(&format!("address {addr}"), e)),
            n.parse::<usize>().unwrap_or_else(|e| die(&format!("count {n}"), e)),
        ),
        _ => usage(),
    };
    let listener = match mode {
        "plain" => TcpListener::bind(addr).unwrap_or_else(|e| die(&format!("bind {addr}"), e)),
        "redirect" => TcpListener::bind(("127.0.0.1", CAPTURE_PORT)).unwrap_or_else(|e| die("bind 127.0.0.1:15001", e)),
        "tproxy" => transparent_listener(),
        _ => usage(),
    };
    let wall = Instant::now();
    let cpu = cpu_seconds();
    for _ in 0..n {
        one_connection(mode, &listener, addr);
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!("{mode} {n} connections: {:.1} µs wall, {:.1} µs CPU per connection", wall / n as f64 * 1e6, cpu / n as f64 * 1e6);
}

fn usage() -> ! {
    eprintln!("usage: intercept_cost plain|redirect|tproxy ADDR N");
    std::process::exit(2)
}

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    idgate_benches::die("intercept_cost", what, e)
}

fn transparent_listener() -> TcpListener {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap_or_else(|e| die("socket", e));
    sock.set_reuse_address(true).unwrap_or_else(|e| die("SO_REUSEADDR", e));
    // Lets the socket accept flows addressed to any address: TPROXY hands over only to these.
    sock.set_ip_transparent(true).unwrap_or_else(|e| die("IP_TRANSPARENT (needs CAP_NET_ADMIN)", e));
    let any: SocketAddr = ([0, 0, 0, 0], CAPTURE_PORT).into();
    sock.bind(&any.into()).unwrap_or_else(|e| die("bind 0.0.0.0:15001", e));
    sock.listen(1024).unwrap_or_else(|e| die("listen", e));
    sock.into()
}

fn one_connection(mode: &str, listener: &TcpListener, addr: SocketAddr) {
    let mut client = TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("connect {addr}"), e));
    let (mut accepted, peer) = listener.accept().unwrap_or_else(|e| die("accept", e));
    let local = accepted.local_addr().unwrap_or_else(|e| die("getsockname", e));
    let original = match mode {
        "redirect" => idgate::intercept::original_tuple(local, peer).unwrap_or_else(|e| die("conntrack lookup", e)).dst,
        _ => local,
    };
    if original != addr {
        die("original destination", format!("{original}, expected {addr}"));
    }
    let _ = accepted.set_nodelay(true);
    let mut byte = [1u8];
    let io = client
        .write_all(&byte)
        .and_then(|_| accepted.read_exact(&mut byte))
        .and_then(|_| accepted.write_all(&byte))
        .and_then(|_| client.read_exact(&mut byte));
    io.unwrap_or_else(|e| die("one byte each way", e));
}

fn cpu_seconds() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `t`, which lives for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } != 0 {
        die("clock_gettime", std::io::Error::last_os_error());
    }
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}
