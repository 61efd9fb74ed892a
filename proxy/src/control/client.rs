//! The control socket's client: what `idgate status`, `reload`, `revoke`, `upgrade` and an
//! upgrade's successor send to the running idgate (HTTP/1.1 over the root-only Unix socket).
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::Path;

/// GET `path` on the control socket; the body of a 200 answer.
pub fn get(socket: &Path, path: &str) -> Result<String> {
    request(socket, "GET", path)
}

/// `method path` on the control socket; the body of a 200 answer, or an error with the
/// answer's body (a refused reload's file:line errors, say).
pub fn request(socket: &Path, method: &str, path: &str) -> Result<String> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to the control socket {} (is idgate running? are you root?)", socket.display()))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: idgate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).context("reading the control socket's answer")?;
    let text = String::from_utf8(answer).context("the control socket answered with something that is not text")?;
    let (head, body) = text.split_once("\r\n\r\n").context("the control socket answered without an HTTP head")?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        bail!("{}: {status}:\n{}", socket.display(), body.trim());
    }
    Ok(body.to_string())
}
