"""The Debian packages build and carry what an installation needs."""
import subprocess

from netns import REPO


def contents(deb):
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    return {line.split()[-1].lstrip(".") for line in out.splitlines()}


def test_debs_build_with_binary_unit_conffile_and_dkms_sources():
    subprocess.run(["bash", str(REPO / "packaging/deb/build.sh")], check=True, capture_output=True)
    out = REPO / "packaging/deb/out"
    proxy = next(out.glob("idgate_*.deb"))
    dkms = next(out.glob("idgate-dkms_*.deb"))
    files = contents(proxy)
    assert {"/usr/bin/idgate", "/etc/idgate/idgate.toml", "/lib/systemd/system/idgate.service"} <= files
    conffiles = subprocess.run(["dpkg-deb", "--info", str(proxy), "conffiles"], check=True, capture_output=True, text=True).stdout
    assert "/etc/idgate/idgate.toml" in conffiles
    # The packaged config is valid as shipped.
    subprocess.run([str(REPO / "target/release/idgate"), "check", "-c", str(REPO / "configs/idgate.toml")], check=True)
    src = [f for f in contents(dkms) if f.startswith("/usr/src/idgate-")]
    assert any(f.endswith("/dkms.conf") for f in src) and any(f.endswith("/include/uapi/idgate.h") for f in src)
    assert any(f.endswith("/hook.c") for f in src) and any(f.endswith("/Kbuild") for f in src)
