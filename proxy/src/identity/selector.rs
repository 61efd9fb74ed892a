//! Workload rules: process attributes → SPIFFE ID. Selectors in one rule are ANDed; the first
//! matching rule wins.
use super::exe_file::{self, EXE_HASHES};
use super::runtime_api::{ContainerMeta, RuntimeApi};
use super::ProcessInfo;
use crate::config::WorkloadRule;
use crate::spiffe::SpiffeId;
use std::sync::Arc;

pub struct Selector {
    rules: Vec<WorkloadRule>,
    /// Asked for containers' names, images and labels (`[containers] runtime_api`).
    runtime: Option<std::sync::Arc<RuntimeApi>>,
}

impl Selector {
    pub fn new(rules: Vec<WorkloadRule>) -> Self {
        Selector { rules, runtime: None }
    }

    /// Rules that may ask the container runtime at `runtime_api` (`[containers] runtime_api`).
    pub fn with_runtime(rules: Vec<WorkloadRule>, runtime_api: Option<std::path::PathBuf>) -> Self {
        Selector { rules, runtime: runtime_api.map(RuntimeApi::new) }
    }

    pub fn select(&self, p: &ProcessInfo) -> Option<SpiffeId> {
        let mut file = FileFacts { p, at_path: None, sha256: None, container: None, runtime: self.runtime.as_deref() };
        // A site rule names machines, not processes: it never matches one.
        self.rules.iter().filter(|r| !r.is_site()).find(|r| matches(r, p, &mut file)).map(|r| r.spiffe_id.get_ref().0.clone())
    }

    /// The ID of a flow routed through this host that no process here opened: the first site
    /// rule for the interface it came in on whose sources hold its address.
    pub fn site(&self, interface: &str, source: &std::net::IpAddr) -> Option<SpiffeId> {
        self.rules
            .iter()
            .find(|r| r.interface.as_deref() == Some(interface) && r.sources.iter().any(|c| c.contains(source)))
            .map(|r| r.spiffe_id.get_ref().0.clone())
    }
}

/// What rules ask about the file a process runs and the container it runs in, found out once
/// per selection and only when a rule whose other selectors all match asks (a stat of a path,
/// a hash, a question to the container runtime).
struct FileFacts<'a> {
    p: &'a ProcessInfo,
    at_path: Option<bool>,
    sha256: Option<Option<[u8; 32]>>,
    container: Option<Option<Arc<ContainerMeta>>>,
    runtime: Option<&'a RuntimeApi>,
}

impl FileFacts<'_> {
    /// The runtime's facts about the process's container; `None` for a process in no
    /// container, a container the runtime does not know, or a runtime that did not answer.
    fn container(&mut self) -> Option<Arc<ContainerMeta>> {
        let (p, runtime) = (self.p, self.runtime);
        self.container
            .get_or_insert_with(|| {
                let id = p.container_id.as_deref()?;
                runtime?.container(id).ok().flatten()
            })
            .clone()
    }

    /// The file at the path the process's exe shows, in idgate's mount namespace, is the one
    /// it runs (and not one that the process's own mount namespace puts there).
    fn at_path(&mut self) -> bool {
        let p = self.p;
        *self.at_path.get_or_insert_with(|| {
            let here = p.exe_id.is_some_and(|id| exe_file::is_at_path(id, &p.exe));
            if !here {
                tracing::debug!(pid = p.tgid, exe = %p.exe, "the file this process runs is not the one at its exe path here (or is unknown): no exe selector matches it");
            }
            here
        })
    }

    fn sha256(&mut self) -> Option<[u8; 32]> {
        let p = self.p;
        *self.sha256.get_or_insert_with(|| p.exe_id.and_then(|id| EXE_HASHES.sha256(p.tgid, id)))
    }
}

/// A truncated or unreadable path never matches a selector on it: a prefix of a path (or an
/// empty one) could otherwise match a glob written for another executable or cgroup. A file
/// whose identity is unknown matches no `exe` or `sha256` selector. The costly checks come
/// last, so they run only for a process that every other selector of the rule matched.
fn matches(r: &WorkloadRule, p: &ProcessInfo, file: &mut FileFacts<'_>) -> bool {
    r.uid.is_none_or(|u| u == p.uid)
        && r.gid.is_none_or(|g| g == p.gid)
        && (r.root_socket || !p.root_socket)
        && r.comm.as_ref().is_none_or(|g| g.is_match(&p.comm))
        && r.cgroup.as_ref().is_none_or(|g| !p.cgroup_unknown && g.is_match(&p.cgroup))
        && r.exe.as_ref().is_none_or(|g| !p.exe_unknown && g.get_ref().is_match(&p.exe) && file.at_path())
        && r.sha256.as_ref().is_none_or(|d| file.sha256() == Some(d.0))
        && r.container_id.as_ref().is_none_or(|g| p.container_id.as_deref().is_some_and(|id| g.is_match(id)))
        && (!r.asks_runtime() || file.container().is_some_and(|c| container_matches(r, &c)))
}

fn container_matches(r: &WorkloadRule, c: &ContainerMeta) -> bool {
    r.container_name.as_ref().is_none_or(|g| g.is_match(&c.name))
        && r.container_image.as_ref().is_none_or(|g| g.is_match(&c.image))
        && r.container_labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn selector(toml: &str) -> Selector {
        let c = crate::config::load::parse(Path::new("t.toml"), toml).unwrap();
        Selector::new(c.workloads)
    }

    fn rules(rules: &str) -> Selector {
        selector(&format!("trust_domain = \"t\"\n{rules}"))
    }

    fn proc(uid: u32, exe: &str) -> ProcessInfo {
        ProcessInfo {
            tgid: 1,
            uid,
            gid: 0,
            exe: exe.into(),
            comm: "x".into(),
            cgroup: "/a.slice/b".into(),
            start_time: 1,
            exe_unknown: false,
            cgroup_unknown: false,
            exe_id: None,
            root_socket: false,
            container_id: None,
            routed_from: None,
        }
    }

    /// A running `sleep`, killed on drop, as the procfs backend reads it.
    struct Sleeping(std::process::Child, ProcessInfo);

    impl Drop for Sleeping {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleep_path() -> PathBuf {
        std::fs::canonicalize("/bin/sleep").unwrap()
    }

    fn sleeping() -> Sleeping {
        let child = std::process::Command::new(sleep_path()).arg("30").spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap() != sleep_path() {
            assert!(std::time::Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let p = super::super::read_process(child.id()).unwrap();
        Sleeping(child, p)
    }

    #[test]
    fn site_rules_name_machines_behind_their_interface_and_never_a_process() {
        let s = rules(
            "[[workload]]\nspiffe_id = \"spiffe://t/lan\"\ninterface = \"lan0\"\nsources = [\"192.168.10.0/24\", \"fd10::/64\"]\n\
             [[workload]]\nspiffe_id = \"spiffe://t/uid\"\nuid = 7\n",
        );
        assert_eq!(s.select(&proc(7, "/usr/bin/x")).unwrap().as_str(), "spiffe://t/uid");
        assert!(s.select(&proc(8, "/usr/bin/x")).is_none(), "a site rule has no process selector and must match no process");
        assert_eq!(s.site("lan0", &"192.168.10.5".parse().unwrap()).unwrap().as_str(), "spiffe://t/lan");
        assert_eq!(s.site("lan0", &"fd10::5".parse().unwrap()).unwrap().as_str(), "spiffe://t/lan");
        assert!(s.site("eth0", &"192.168.10.5".parse().unwrap()).is_none(), "only on the interface named for it");
        assert!(s.site("lan0", &"192.168.11.5".parse().unwrap()).is_none());
    }

    #[test]
    fn container_selectors_match_only_processes_in_containers() {
        let id = "c0".repeat(32);
        let c = crate::config::load::parse(
            Path::new("t.toml"),
            "trust_domain = \"t\"\n[containers]\nruntime_api = \"/nonexistent/runtime.sock\"\n\
             [[workload]]\nspiffe_id = \"spiffe://t/byname\"\ncontainer_name = \"web-*\"\n\
             [[workload]]\nspiffe_id = \"spiffe://t/byid\"\ncontainer_id = \"c0c0*\"\n",
        )
        .unwrap();
        let s = Selector::with_runtime(c.workloads, c.containers.runtime_api);
        let mut p = proc(7, "/usr/bin/python3");
        assert!(s.select(&p).is_none(), "a host process matches no container selector");
        p.container_id = Some(id);
        // A runtime that does not answer: the name selector matches nothing; the id one does.
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/byid");
        p.container_id = Some("d0".repeat(32));
        assert!(s.select(&p).is_none());
    }

    #[test]
    fn truncated_or_unknown_paths_match_no_selector_on_them() {
        let s = rules(
            "[[workload]]\nspiffe_id = \"spiffe://t/exe\"\nexe = \"/usr/**\"\n\
             [[workload]]\nspiffe_id = \"spiffe://t/cg\"\ncgroup = \"/a.slice/**\"\n\
             [[workload]]\nspiffe_id = \"spiffe://t/uid\"\nuid = 7\n",
        );
        // The module cut a long path to a prefix that the first glob would match.
        let mut p = proc(7, "/usr/lib/very/long/pa");
        p.exe_unknown = true;
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/cg");
        p.cgroup_unknown = true;
        // Rules that do not look at the unknown paths still apply.
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/uid");
        p.uid = 8;
        assert!(s.select(&p).is_none());
        // An unknown exe does not match a glob that matches anything.
        let any = rules("[[workload]]\nspiffe_id = \"spiffe://t/any\"\nexe = \"**\"\n");
        let mut sleep = sleeping();
        assert!(any.select(&sleep.1).is_some());
        sleep.1.exe_unknown = true;
        assert!(any.select(&sleep.1).is_none());
    }

    #[test]
    fn first_match_wins_and_selectors_are_anded() {
        let sleep = sleeping();
        let dir = sleep_path().parent().unwrap().display().to_string();
        let s = rules(&format!(
            "[[workload]]\nspiffe_id = \"spiffe://t/web\"\nexe = \"{dir}/*\"\nuid = 1000\n\
             [[workload]]\nspiffe_id = \"spiffe://t/any\"\ncgroup = \"/**\"\n"
        ));
        let mut p = sleep.1.clone();
        p.uid = 1000;
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/web");
        p.uid = 1001;
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/any");
        // `*` stays within a path segment
        p.uid = 1000;
        p.exe = format!("{dir}/x/sleep");
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/any");
    }

    #[test]
    fn an_exe_selector_matches_the_file_at_its_path_not_the_name() {
        let sleep = sleeping();
        let s = rules(&format!("[[workload]]\nspiffe_id = \"spiffe://t/sleep\"\nexe = \"{}\"\n", sleep_path().display()));
        assert_eq!(s.select(&sleep.1).unwrap().as_str(), "spiffe://t/sleep");
        // The same path read for another file (a mount namespace of the user's own puts it
        // there), or for a file the backend could not identify: no match.
        let mut other = sleep.1.clone();
        other.exe_id = other.exe_id.map(|id| super::super::ExeId { ino: id.ino + 1, ..id });
        assert!(s.select(&other).is_none());
        other.exe_id = None;
        assert!(s.select(&other).is_none());
    }

    #[test]
    fn a_sha256_selector_matches_the_content_of_the_running_file() {
        let sleep = sleeping();
        let digest = ring::digest::digest(&ring::digest::SHA256, &std::fs::read(sleep_path()).unwrap());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let s = rules(&format!("[[workload]]\nspiffe_id = \"spiffe://t/hashed\"\nsha256 = \"{hex}\"\n"));
        assert_eq!(s.select(&sleep.1).unwrap().as_str(), "spiffe://t/hashed");
        let mut unknown = sleep.1.clone();
        unknown.exe_id = None;
        assert!(s.select(&unknown).is_none(), "a file not identified is not hashed");
        let other = rules(&format!("[[workload]]\nspiffe_id = \"spiffe://t/hashed\"\nsha256 = \"{}\"\n", "0".repeat(64)));
        assert!(other.select(&sleep.1).is_none());
    }

    #[test]
    fn a_borrowed_root_socket_matches_only_rules_that_allow_it() {
        let s = rules(
            "[[workload]]\nspiffe_id = \"spiffe://t/daemon\"\nuid = 7\nroot_socket = true\ncomm = \"daemon\"\n\
             [[workload]]\nspiffe_id = \"spiffe://t/seven\"\nuid = 7\n",
        );
        let mut p = proc(7, "/x");
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/seven");
        p.root_socket = true;
        assert!(s.select(&p).is_none(), "only a rule with root_socket = true matches");
        p.comm = "daemon".into();
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/daemon");
        p.root_socket = false;
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/daemon", "it allows, it does not require");
    }

    #[test]
    fn no_match_is_none() {
        let s = selector("trust_domain = \"t\"\n[[workload]]\nspiffe_id = \"spiffe://t/web\"\nuid = 7\n");
        assert!(s.select(&proc(8, "/bin/sh")).is_none());
    }
}
