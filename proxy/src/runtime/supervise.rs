//! Long-running tasks that must never end: the workers' accept loops and the control thread's
//! admin, rotation and sweep. One that ends anyway (a panic) stops the process with an error
//! naming it, so that systemd restarts idgate, instead of leaving it up without a listener or
//! without rotation. The nftables table stays meanwhile: intercepted flows are refused, never
//! sent around the proxy (fail closed).

/// "panicked: <message>" or "ended", for a task that was not supposed to end.
fn how_it_ended(ended: Result<(), tokio::task::JoinError>) -> String {
    match ended {
        Ok(()) => "ended".into(),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            format!("panicked: {msg}")
        }
        Err(_) => "was cancelled".into(),
    }
}

/// A thread's never-ending tasks, by name.
#[derive(Default)]
pub struct Supervised {
    tasks: tokio::task::JoinSet<()>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Supervised {
    pub fn spawn(&mut self, name: &'static str, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits for the first task to end and says which and how.
    pub async fn first_to_end(&mut self) -> String {
        let (id, how) = match self.tasks.join_next_with_id().await {
            Some(Ok((id, ()))) => (id, "ended".to_string()),
            Some(Err(e)) => (e.id(), how_it_ended(Err(e))),
            None => std::future::pending().await,
        };
        format!("{} {how}", self.names.get(&id).copied().unwrap_or("a control task"))
    }

    pub fn abort_all(&mut self) {
        self.tasks.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_the_task_that_panicked() {
        let mut tasks = Supervised::default();
        tasks.spawn("admin server", std::future::pending());
        tasks.spawn("SVID rotation", async { panic!("rotation broke: {}", 42) });
        assert_eq!(tasks.first_to_end().await, "SVID rotation panicked: rotation broke: 42");
    }
}
