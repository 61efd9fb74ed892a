//! Fixture server for idgate's e2e tests: HTTP/1.1 and HTTP/2 prior knowledge (h2c) on one
//! port, or HTTPS (ALPN h2, http/1.1) with `--tls-cert`/`--tls-key`. Routes are in `routes.rs`.
//!
//! Prints `listening on ADDR` once ready, then one `request METHOD PATH VERSION from PEER` line
//! per request (stdout is line-buffered), and connection errors on stderr.
mod routes;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const USAGE: &str = "usage: idgate-test-httpd --listen ADDR:PORT [--tls-cert PEM --tls-key PEM]";

struct Args {
    listen: SocketAddr,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = None;
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--tls-cert" => tls_cert = Some(PathBuf::from(value()?)),
            "--tls-key" => tls_key = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if tls_cert.is_some() != tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(Args { listen: listen.ok_or("--listen is required")?, tls_cert, tls_key })
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<TlsAcceptor, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let cert_pem = read(cert)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice()).collect::<Result<Vec<_>, _>>().map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_pem = read(key)?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("certificate/key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve<I>(io: I, conn: routes::ConnInfo)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let conn = Arc::new(conn);
    let service = service_fn(move |req| routes::handle(req, conn.clone()));
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(io), service).await {
        eprintln!("connection from {peer}: {e}");
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("idgate-test-httpd: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => match tls_acceptor(c, k) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("idgate-test-httpd: {e}");
                std::process::exit(2);
            }
        },
        _ => None,
    };
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("idgate-test-httpd: bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| args.listen.to_string());
    println!("listening on {local}");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(stream, routes::ConnInfo { peer, sni: None, alpn: None }).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        let (_, session) = s.get_ref();
                        let sni = session.server_name().map(str::to_owned);
                        let alpn = session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
                        serve(s, routes::ConnInfo { peer, sni, alpn }).await
                    }
                    Err(e) => eprintln!("TLS handshake from {peer}: {e}"),
                },
            }
        });
    }
}
