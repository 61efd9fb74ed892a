//! A container's name, image and labels, from the container runtime's Docker-compatible API
//! (Docker's socket, or Podman's `podman system service`): read only, one
//! `GET /containers/<id>/json` per container, cached. Only the `container_name`,
//! `container_image` and `container_labels` selectors ask, so a host whose rules do not use
//! them never talks to the runtime.
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the selectors see of a container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainerMeta {
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
}

/// A container's facts change only on rename; an answer is kept this long.
const FRESH: Duration = Duration::from_secs(60);
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
    pub fn new(socket: PathBuf) -> Self {
        RuntimeApi { socket, cache: Mutex::new(HashMap::new()) }
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
