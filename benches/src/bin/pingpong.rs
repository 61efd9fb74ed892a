//! Request/response latency over one TCP connection, without an interpreter in the way.
//!   pingpong server ADDR            echo every message back
//!   pingpong client ADDR N SIZE     N round trips of SIZE bytes; prints p50/p90/p99/p99.9 in µs
//!   pingpong connect ADDR N         N fresh connections, one 1-byte round trip each
//!   pingpong fire ADDR MSG          connect, send MSG and exit at once (no close handshake wait)
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).unwrap_or_else(|| usage());
    match arg(1).as_str() {
        "server" => server(arg(2)),
        "client" => client(arg(2), arg(3).parse().unwrap_or_else(|_| usage()), arg(4).parse().unwrap_or_else(|_| usage())),
        "connect" => connect(arg(2), arg(3).parse().unwrap_or_else(|_| usage())),
        "fire" => fire(arg(2), arg(3)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: pingpong server ADDR | client ADDR N SIZE | connect ADDR N | fire ADDR MSG");
    std::process::exit(2)
}

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    idgate_benches::die("pingpong", what, e)
}

/// Prints one result line; a reader that went away (`| head -1`) is not an error.
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn connect_to(addr: &str) -> TcpStream {
    let conn = TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("connect {addr}"), e));
    let _ = conn.set_nodelay(true);
    conn
}

fn server(addr: &str) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| die(&format!("bind {addr}"), e));
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut conn = conn;
            let _ = conn.set_nodelay(true);
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
}

fn round_trip(conn: &mut TcpStream, msg: &[u8], buf: &mut [u8]) {
    conn.write_all(msg).unwrap_or_else(|e| die("write", e));
    let mut got = 0;
    while got < msg.len() {
        match conn.read(&mut buf[got..msg.len()]) {
            Ok(0) => die("read", "connection closed mid-reply"),
            Ok(n) => got += n,
            Err(e) => die("read", e),
        }
    }
}

fn report(mut samples: Vec<f64>) {
    if samples.is_empty() {
        die("report", "no samples (N was 0)");
    }
    samples.sort_by(f64::total_cmp);
    let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    say(format_args!("n={} p50={:.1} p90={:.1} p99={:.1} p99.9={:.1} (µs)", samples.len(), q(0.5), q(0.9), q(0.99), q(0.999)));
}

fn client(addr: &str, n: usize, size: usize) {
    let mut conn = connect_to(addr);
    let msg = vec![7u8; size];
    let mut buf = vec![0u8; size];
    for _ in 0..n.min(200) {
        round_trip(&mut conn, &msg, &mut buf); // warm-up
    }
    let samples = (0..n)
        .map(|_| {
            let t = Instant::now();
            round_trip(&mut conn, &msg, &mut buf);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    report(samples);
}

fn connect(addr: &str, n: usize) {
    let mut buf = [0u8; 1];
    let started = Instant::now();
    let samples: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let mut conn = connect_to(addr);
            round_trip(&mut conn, &[1], &mut buf);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    say(format_args!("{:.0} connections/s", n as f64 / started.elapsed().as_secs_f64()));
    report(samples);
}

fn fire(addr: &str, msg: &str) {
    let mut conn = connect_to(addr);
    conn.write_all(msg.as_bytes()).unwrap_or_else(|e| die("write", e));
    std::process::exit(0); // the socket outlives us briefly; the process does not
}
