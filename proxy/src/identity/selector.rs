//! Workload rules: process attributes → SPIFFE ID. Selectors in one rule are ANDed; the first
//! matching rule wins.
use super::ProcessInfo;
use crate::config::WorkloadRule;
use crate::spiffe::SpiffeId;

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

fn matches(r: &WorkloadRule, p: &ProcessInfo) -> bool {
    r.uid.is_none_or(|u| u == p.uid)
        && r.gid.is_none_or(|g| g == p.gid)
        && r.exe.as_ref().is_none_or(|g| g.is_match(&p.exe))
        && r.comm.as_ref().is_none_or(|g| g.is_match(&p.comm))
        && r.cgroup.as_ref().is_none_or(|g| g.is_match(&p.cgroup))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn selector(toml: &str) -> Selector {
        let c = crate::config::load::parse(Path::new("t.toml"), toml).unwrap();
        Selector::new(c.workloads)
    }

    fn proc(uid: u32, exe: &str) -> ProcessInfo {
        ProcessInfo { tgid: 1, uid, gid: 0, exe: exe.into(), comm: "x".into(), cgroup: "/a.slice/b".into(), start_time: 1 }
    }

    #[test]
    fn first_match_wins_and_selectors_are_anded() {
        let s = selector(
            "trust_domain = \"t\"\n\
             [[workload]]\nspiffe_id = \"spiffe://t/web\"\nexe = \"/usr/bin/*\"\nuid = 1000\n\
             [[workload]]\nspiffe_id = \"spiffe://t/any\"\ncgroup = \"/a.slice/**\"\n",
        );
        assert_eq!(s.select(&proc(1000, "/usr/bin/curl")).unwrap().as_str(), "spiffe://t/web");
        assert_eq!(s.select(&proc(1001, "/usr/bin/curl")).unwrap().as_str(), "spiffe://t/any");
        // `*` stays within a path segment
        assert_eq!(s.select(&proc(1000, "/usr/bin/x/curl")).unwrap().as_str(), "spiffe://t/any");
    }

    #[test]
    fn no_match_is_none() {
        let s = selector("trust_domain = \"t\"\n[[workload]]\nspiffe_id = \"spiffe://t/web\"\nuid = 7\n");
        assert!(s.select(&proc(8, "/bin/sh")).is_none());
    }
}
