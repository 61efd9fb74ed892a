//! A container's name, image and labels, from the container runtime's Docker-compatible API
//! (Docker's socket, or Podman's `podman system service`): read only, one
//! `GET /containers/<id>/json` per container, cached, and a container's answer dropped from the
//! cache as soon as the runtime's event stream (`GET /events`) names it (a rename, a restart, its
//! removal). Only the `container_name`, `container_image` and `container_labels` selectors ask,
//! so a host whose rules do not use them never talks to the runtime (the event stream is
//! followed all the same, by one thread, for as long as the rules are in force).
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// What the selectors see of a container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainerMeta {
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
}

/// A container's facts change only on rename, which the event stream reports; an answer is
/// kept this long in case an event was missed.
const FRESH: Duration = Duration::from_secs(60);
/// How often the events thread looks whether its rules are still in force.
const EVENTS_POLL: Duration = Duration::from_secs(5);
/// `GET /events` for containers only: `filters={"type":["container"]}`.
const EVENTS_PATH: &str = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D";
/// An unknown container or a failed request is asked again after this long.
const RETRY: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(2);
const MAX_ANSWER: u64 = 1 << 20;
const CACHE_LIMIT: usize = 4096;

type Answer = Result<Option<Arc<ContainerMeta>>, String>;

pub struct RuntimeApi {
    socket: PathBuf,
    cache: Mutex<HashMap<String, (Instant, Answer)>>,
}

impl RuntimeApi {
    /// The API at `socket`, with a thread that follows its events until the last `Arc` goes.
    pub fn new(socket: PathBuf) -> Arc<Self> {
        let api = Arc::new(RuntimeApi { socket, cache: Mutex::new(HashMap::new()) });
        let weak = Arc::downgrade(&api);
        let spawned = std::thread::Builder::new().name("idgate-runtime-events".into()).spawn(move || follow_events(weak));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "container runtime events not followed: containers' names are re-read every {} s", FRESH.as_secs());
        }
        api
    }

    fn forget(&self, id: &str) {
        self.cache.lock().remove(id);
    }

    fn forget_all(&self) {
        self.cache.lock().clear();
    }

    /// The container with id `id`: `Ok(None)` if the runtime does not know it, `Err` (why)
    /// if the runtime could not be asked. Either way no selector on it matches.
    pub fn container(&self, id: &str) -> Answer {
        if let Some((at, answer)) = self.cache.lock().get(id) {
            let ttl = if matches!(answer, Ok(Some(_))) { FRESH } else { RETRY };
            if at.elapsed() < ttl {
                return answer.clone();
            }
        }
        let answer = self.ask(id).map_err(|e| format!("container runtime API {}: {e}", self.socket.display()));
        if let Err(why) = &answer {
            tracing::warn!(container = id, "{why}: no container_name, container_image or container_labels selector matches its processes");
        }
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(id.to_string(), (Instant::now(), answer.clone()));
        answer
    }

    fn ask(&self, id: &str) -> std::io::Result<Option<Arc<ContainerMeta>>> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        // HTTP/1.0: the server closes the connection after its answer, which then ends at EOF.
        write!(stream, "GET /containers/{id}/json HTTP/1.0\r\nHost: localhost\r\nAccept: application/json\r\n\r\n")?;
        let mut raw = Vec::new();
        stream.take(MAX_ANSWER + 1).read_to_end(&mut raw)?;
        if raw.len() as u64 > MAX_ANSWER {
            return Err(std::io::Error::other("answer larger than 1 MiB"));
        }
        parse_answer(&raw).map_err(std::io::Error::other)
    }
}

/// Follows the runtime's container events while `api` lives, dropping each container an event
/// names from the cache; after a lost stream (events may have been missed), the whole cache.
fn follow_events(api: Weak<RuntimeApi>) {
    let mut told = false;
    while let Some(socket) = api.upgrade().map(|a| a.socket.clone()) {
        match open_events(&socket) {
            Ok(stream) => {
                if let Some(a) = api.upgrade() {
                    a.forget_all();
                }
                told = false;
                read_events(stream, &api);
            }
            Err(e) if !told => {
                tracing::debug!(error = %e, "container runtime API {}: no event stream (retrying)", socket.display());
                told = true;
            }
            Err(_) => {}
        }
        std::thread::sleep(RETRY);
    }
}

fn open_events(socket: &std::path::Path) -> std::io::Result<std::io::BufReader<UnixStream>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_read_timeout(Some(EVENTS_POLL))?;
    // HTTP/1.0: the answer's body is the raw stream (no chunks), one JSON object per event.
    write!(stream, "GET {EVENTS_PATH} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut reader = std::io::BufReader::new(stream);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if reader.read_until(b'\n', &mut head)? == 0 || head.len() > 16 * 1024 {
            return Err(std::io::Error::other("event stream ended inside its head"));
        }
    }
    if !(head.starts_with(b"HTTP/1.0 200") || head.starts_with(b"HTTP/1.1 200")) {
        let status = String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned();
        return Err(std::io::Error::other(format!("GET /events answered {status}")));
    }
    Ok(reader)
}

/// Reads events until the stream ends or fails, or `api` is gone.
fn read_events(mut reader: std::io::BufReader<UnixStream>, api: &Weak<RuntimeApi>) {
    let mut line = Vec::new();
    loop {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with(b"\n") || line.len() > MAX_ANSWER as usize => {
                let Some(api) = api.upgrade() else { return };
                if let Ok(event) = serde_json::from_slice::<Event>(&line) {
                    tracing::debug!(container = %event.actor.id, action = %event.action, "container runtime event");
                    api.forget(&event.actor.id);
                }
                line.clear();
            }
            Ok(_) => {}
            // Nothing for a while: the stream is quiet, not gone (what was read is kept).
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if api.strong_count() == 0 {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The part of an event read here.
#[derive(serde::Deserialize)]
struct Event {
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor")]
    actor: Actor,
}

#[derive(serde::Deserialize)]
struct Actor {
    #[serde(rename = "ID")]
    id: String,
}

fn parse_answer(raw: &[u8]) -> Result<Option<Arc<ContainerMeta>>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let body_at = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("answer ended inside its head".into()),
        Err(e) => return Err(format!("malformed answer: {e}")),
    };
    match response.code {
        Some(200) => {}
        Some(404) => return Ok(None),
        code => return Err(format!("answered {}", code.unwrap_or(0))),
    }
    let inspect: Inspect = serde_json::from_slice(&raw[body_at..]).map_err(|e| format!("malformed container inspect answer: {e}"))?;
    Ok(Some(Arc::new(ContainerMeta {
        name: inspect.name.trim_start_matches('/').to_string(),
        image: inspect.config.image,
        labels: inspect.config.labels.unwrap_or_default(),
    })))
}

/// The part of `GET /containers/<id>/json` read here.
#[derive(serde::Deserialize)]
struct Inspect {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Config")]
    config: InspectConfig,
}

#[derive(serde::Deserialize)]
struct InspectConfig {
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::parse_answer;

    #[test]
    fn reads_name_image_and_labels_and_tells_unknown_from_failed() {
        let body = r#"{"Id":"abc","Name":"/web","Config":{"Image":"localhost/web:1","Labels":{"app":"web","tier":"front"}}}"#;
        let raw = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}");
        let meta = parse_answer(raw.as_bytes()).unwrap().unwrap();
        assert_eq!((meta.name.as_str(), meta.image.as_str()), ("web", "localhost/web:1"));
        assert_eq!(meta.labels.get("tier").map(String::as_str), Some("front"));
        let no_labels = "HTTP/1.0 200 OK\r\n\r\n{\"Name\":\"x\",\"Config\":{\"Image\":\"i\",\"Labels\":null}}";
        assert!(parse_answer(no_labels.as_bytes()).unwrap().unwrap().labels.is_empty());
        assert_eq!(parse_answer(b"HTTP/1.0 404 Not Found\r\n\r\n{}").unwrap(), None);
        assert!(parse_answer(b"HTTP/1.0 500 Internal Server Error\r\n\r\n").unwrap_err().contains("500"));
        assert!(parse_answer(b"HTTP/1.0 200 OK\r\n\r\nnot json").unwrap_err().contains("malformed"));
    }
}
