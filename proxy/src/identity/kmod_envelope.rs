//! The kernels idgate.ko is built and booted for: the support matrix (`kmod/matrix/targets.json`,
//! generated from the window in `kmod/matrix/window.conf`) compiled into the binary. A running
//! kernel outside the window's lines makes the kmod backend untrusted: `auto` falls back to
//! procfs, an explicit `identity_backend = "kmod"` refuses to start.
use serde::Deserialize;

const MANIFEST: &str = include_str!("../../../kmod/matrix/targets.json");

#[derive(Deserialize)]
struct Manifest {
    window: Window,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Window {
    lines: Vec<String>,
}

#[derive(Deserialize)]
struct Target {
    release: String,
}

/// `6.1.0-57-amd64` → (6, 1); `6.12.117+deb13-cloud-arm64` → (6, 12).
fn line_of(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Is kernel `release` (as in `uname -r`) inside the support window? `Ok` with a note on how
/// close the match is (a release the matrix built and booted, or only its line), or `Err` with
/// the reason, meant for the log, `/status` and a fatal start error alike.
pub fn check(release: &str) -> Result<String, String> {
    let manifest: Manifest = serde_json::from_str(MANIFEST).map_err(|e| format!("support matrix compiled into idgate is unreadable: {e}"))?;
    let Some(line) = line_of(release) else {
        return Err(format!("kernel release `{release}` is not of the form MAJOR.MINOR..."));
    };
    if !manifest.window.lines.iter().any(|l| line_of(l) == Some(line)) {
        return Err(format!(
            "kernel {release} is outside idgate.ko's support window (lines {}; kmod/matrix/window.conf)",
            manifest.window.lines.join(", ")
        ));
    }
    if manifest.targets.iter().any(|t| t.release == release) {
        Ok(format!("kernel {release} is a target of the support matrix"))
    } else {
        Ok(format!("kernel {release} is on supported line {}.{} (this release is not in the matrix)", line.0, line.1))
    }
}

/// `check` for the running kernel.
pub fn check_running() -> Result<String, String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|e| format!("cannot read the running kernel's release: {e}"))?;
    check(release.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_matrix_target_is_inside_the_window() {
        let manifest: Manifest = serde_json::from_str(MANIFEST).unwrap();
        assert!(!manifest.targets.is_empty());
        for t in &manifest.targets {
            let note = check(&t.release).unwrap();
            assert!(note.contains("a target of the support matrix"), "{note}");
        }
    }

    #[test]
    fn lines_outside_the_window_are_refused_with_the_reason() {
        for release in ["5.10.0-30-amd64", "6.8.0-45-generic", "6.13.2-arch1-1", "7.1.0"] {
            let err = check(release).unwrap_err();
            assert!(err.contains(release) && err.contains("outside idgate.ko's support window"), "{err}");
        }
        assert!(check("garbage").unwrap_err().contains("not of the form"));
        assert!(check("").is_err());
    }

    #[test]
    fn other_releases_of_a_supported_line_are_inside() {
        let note = check("6.1.0-9-amd64").unwrap();
        assert!(note.contains("supported line 6.1") && note.contains("not in the matrix"), "{note}");
        assert!(check("6.12.999+deb13-rt-arm64").is_ok());
        // 6.10 shares a prefix with 6.1 but is another line.
        assert!(check("6.10.3-amd64").is_err());
    }

    #[test]
    fn running_kernel_gives_an_answer() {
        // Either way the answer names the running release.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let answer = check_running();
        let text = answer.as_ref().map_or_else(|e| e.as_str(), |n| n.as_str());
        assert!(text.contains(release.trim()), "{text}");
    }
}
