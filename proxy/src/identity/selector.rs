//! Workload rules: process attributes → SPIFFE ID. Selectors in one rule are ANDed; the first
//! matching rule wins.
use super::{ExeId, ProcessInfo};
use crate::config::WorkloadRule;
use crate::spiffe::SpiffeId;
use std::os::unix::fs::MetadataExt;

pub struct Selector {
    rules: Vec<WorkloadRule>,
}

impl Selector {
    pub fn new(rules: Vec<WorkloadRule>) -> Self {
        Selector { rules }
    }

    pub fn select(&self, p: &ProcessInfo) -> Option<SpiffeId> {
        self.rules.iter().find(|r| matches(r, p)).map(|r| r.spiffe_id.get_ref().0.clone())
    }
}

/// A truncated or unreadable path never matches a selector on it: a prefix of a path (or an
/// empty one) could otherwise match a glob written for another executable or cgroup.
fn matches(r: &WorkloadRule, p: &ProcessInfo) -> bool {
    r.uid.is_none_or(|u| u == p.uid)
        && r.gid.is_none_or(|g| g == p.gid)
        && r.exe.as_ref().is_none_or(|g| !p.exe_unknown && g.is_match(&p.exe) && runs_file_at(p, &p.exe))
        && r.comm.as_ref().is_none_or(|g| g.is_match(&p.comm))
        && r.cgroup.as_ref().is_none_or(|g| !p.cgroup_unknown && g.is_match(&p.cgroup))
}

/// Is the file at `path` in this host's mount namespace the one `p` runs? The path a process
/// ran by is its own mount namespace's: with a user namespace, a bind mount shows any file of
/// the user's under any path there.
fn runs_file_at(p: &ProcessInfo, path: &str) -> bool {
    p.exe_id.is_some_and(|id| std::fs::metadata(path).is_ok_and(|m| ExeId { dev: m.dev(), ino: m.ino() } == id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn selector(toml: &str) -> Selector {
        let c = crate::config::load::parse(Path::new("t.toml"), toml).unwrap();
        Selector::new(c.workloads)
    }

    fn file_id(path: &str) -> Option<ExeId> {
        std::fs::metadata(path).ok().map(|m| ExeId { dev: m.dev(), ino: m.ino() })
    }

    /// A process running the file at `exe` (if there is one).
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
            exe_id: file_id(exe),
            cgroup_unknown: false,
        }
    }

    #[test]
    fn truncated_or_unknown_paths_match_no_selector_on_them() {
        let s = selector(
            "trust_domain = \"t\"\n\
             [[workload]]\nspiffe_id = \"spiffe://t/exe\"\nexe = \"/usr/**\"\n\
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
        // An unknown exe does not match a glob that matches anything, nor does an empty one.
        let any = selector("trust_domain = \"t\"\n[[workload]]\nspiffe_id = \"spiffe://t/any\"\nexe = \"**\"\n");
        let mut gone = proc(1, "/usr/bin/env");
        assert!(any.select(&gone).is_some());
        gone.exe_unknown = true;
        assert!(any.select(&gone).is_none());
        assert!(any.select(&proc(1, "")).is_none());
    }

    #[test]
    fn first_match_wins_and_selectors_are_anded() {
        let s = selector(
            "trust_domain = \"t\"\n\
             [[workload]]\nspiffe_id = \"spiffe://t/web\"\nexe = \"/usr/bin/*\"\nuid = 1000\n\
             [[workload]]\nspiffe_id = \"spiffe://t/any\"\ncgroup = \"/a.slice/**\"\n",
        );
        assert_eq!(s.select(&proc(1000, "/usr/bin/env")).unwrap().as_str(), "spiffe://t/web");
        assert_eq!(s.select(&proc(1001, "/usr/bin/env")).unwrap().as_str(), "spiffe://t/any");
        // `*` stays within a path segment
        assert_eq!(s.select(&proc(1000, "/usr/bin/x/curl")).unwrap().as_str(), "spiffe://t/any");
    }

    #[test]
    fn exe_selector_matches_only_the_file_at_that_path() {
        let s = selector(
            "trust_domain = \"t\"\n\
             [[workload]]\nspiffe_id = \"spiffe://t/env\"\nexe = \"/usr/bin/env\"\n",
        );
        let mut p = proc(7, "/usr/bin/env");
        assert_eq!(s.select(&p).unwrap().as_str(), "spiffe://t/env");
        // Another file shown under that path (a bind mount in a namespace of the user's own).
        p.exe_id = file_id("/bin/sh");
        assert!(p.exe_id.is_some() && p.exe_id != file_id("/usr/bin/env"));
        assert!(s.select(&p).is_none());
        // Which file the process runs is unknown.
        p.exe_id = None;
        assert!(s.select(&p).is_none());
    }

    #[test]
    fn no_match_is_none() {
        let s = selector("trust_domain = \"t\"\n[[workload]]\nspiffe_id = \"spiffe://t/web\"\nuid = 7\n");
        assert!(s.select(&proc(8, "/bin/sh")).is_none());
    }
}
