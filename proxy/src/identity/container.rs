//! Which container a process runs in, from its cgroup path: every runtime names a container's
//! cgroup after its id (`docker-<id>.scope`, `libpod-<id>.scope`, `/docker/<id>`,
//! `cri-containerd-<id>.scope`, `crio-<id>.scope`), and a process cannot leave its container's
//! cgroup subtree (the cgroup namespace hides the rest). The conmon monitor's cgroup
//! (`libpod-conmon-<id>.scope`) is not the container.

/// The id of the container whose cgroup `cgroup` is or lies within, if any.
pub fn id_from_cgroup(cgroup: &str) -> Option<&str> {
    cgroup.rsplit('/').find_map(id_of_segment)
}

fn id_of_segment(segment: &str) -> Option<&str> {
    if segment.contains("conmon") {
        return None;
    }
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    let id = ["docker-", "libpod-", "cri-containerd-", "crio-", "containerd-"].iter().find_map(|p| name.strip_prefix(p)).unwrap_or(name);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::id_from_cgroup;

    const ID: &str = "3f4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566778a";

    #[test]
    fn finds_the_id_each_runtime_puts_in_the_cgroup_path() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/libpod_parent/libpod-{ID}"),
            format!("/docker/{ID}"),
            format!("/kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods/besteffort/pod1/crio-{ID}.scope"),
        ] {
            assert_eq!(id_from_cgroup(&path), Some(ID), "{path}");
        }
    }

    #[test]
    fn hosts_processes_and_monitors_have_none() {
        for path in [
            "/".to_string(),
            "/system.slice/sshd.service".to_string(),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/system.slice/docker-{}.scope", &ID[..63]),
            format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
        ] {
            assert_eq!(id_from_cgroup(&path), None, "{path}");
        }
    }
}
