"""The .deb and .rpm packages build, install and carry what an installation needs."""
import shutil
import subprocess

from netns import IDGATE, REPO

BUILD_ENV = dict(__import__("os").environ, IDGATE_BIN=str(IDGATE))


def contents(deb):
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    return {line.split()[-1].lstrip(".") for line in out.splitlines()}


def test_debs_build_with_binary_unit_conffile_and_dkms_sources():
    subprocess.run(["bash", str(REPO / "packaging/deb/build.sh")], check=True, capture_output=True, env=BUILD_ENV)
    out = REPO / "packaging/deb/out"
    proxy = next(out.glob("idgate_*.deb"))
    dkms = next(out.glob("idgate-dkms_*.deb"))
    files = contents(proxy)
    assert {"/usr/bin/idgate", "/etc/idgate/idgate.toml", "/lib/systemd/system/idgate.service",
            "/lib/systemd/system/idgate-guard.service", "/usr/share/doc/idgate/copyright",
            "/usr/share/doc/idgate/examples/idgate.toml", "/usr/share/man/man5/idgate.toml.5.gz"} <= files
    # Man pages (one per command) and completions for bash, zsh and fish.
    assert {"/usr/share/man/man1/idgate.1.gz", "/usr/share/man/man1/idgate-reload.1.gz", "/usr/share/man/man1/idgate-revoke.1.gz",
            "/usr/share/bash-completion/completions/idgate", "/usr/share/zsh/vendor-completions/_idgate",
            "/usr/share/fish/vendor_completions.d/idgate.fish"} <= files, sorted(files)

    def info(part):
        return subprocess.run(["dpkg-deb", "--info", str(proxy), part], check=True, capture_output=True, text=True).stdout

    # The boot guard is enabled with the service (dh_installsystemd), an upgrade hands over
    # instead of restarting, and only removal takes the table away.
    postinst = info("postinst")
    assert "deb-systemd-helper enable 'idgate-guard.service'" in postinst and "deb-systemd-helper enable 'idgate.service'" in postinst
    assert "idgate upgrade -c /etc/idgate/idgate.toml" in postinst and "restart 'idgate.service'" not in postinst, postinst
    prerm = info("prerm")
    assert 'if [ "$1" = remove ]; then\n\tidgate uninstall' in prerm, prerm
    assert "rm -rf /var/lib/idgate /var/log/idgate" in info("postrm")
    conffiles = subprocess.run(["dpkg-deb", "--info", str(proxy), "conffiles"], check=True, capture_output=True, text=True).stdout
    assert "/etc/idgate/idgate.toml" in conffiles
    # The packaged config is valid as shipped.
    subprocess.run([str(IDGATE), "check", "-c", str(REPO / "configs/idgate.toml")], check=True)
    subprocess.run([str(IDGATE), "check", "-c", str(REPO / "packaging/conffile/idgate.toml")], check=True)
    src = [f for f in contents(dkms) if f.startswith("/usr/src/idgate-")]
    assert any(f.endswith("/dkms.conf") for f in src) and any(f.endswith("/include/uapi/idgate.h") for f in src)
    assert any(f.endswith("/hook.c") for f in src) and any(f.endswith("/Kbuild") for f in src)
    # Installing the module package makes the module load at boot (the kmod backend then).
    assert "/usr/lib/modules-load.d/idgate.conf" in contents(dkms)
    postinst = subprocess.run(["dpkg-deb", "--info", str(dkms), "postinst"], check=True, capture_output=True, text=True).stdout
    assert "modprobe idgate" in postinst and "/usr/lib/dkms/common.postinst" in postinst
    subprocess.run(["sh", "-n"], input=postinst, text=True, check=True)


def rpm_tag(pkg, tag):
    """One tag of a package; a list tag (REQUIRENAME, ...) one value per line."""
    return subprocess.run(["rpm", "-qp", "--qf", f"[%{{{tag}}}\n]", str(pkg)], check=True, capture_output=True, text=True).stdout


def test_rpms_install_run_and_keep_an_edited_config(tmp_path):
    subprocess.run(["bash", str(REPO / "packaging/rpm/build.sh")], check=True, capture_output=True, env=BUILD_ENV)
    out = REPO / "packaging/rpm/out"
    proxy = next(out.glob("idgate-[0-9]*.rpm"))
    dkms = next(out.glob("idgate-dkms-*.noarch.rpm"))
    version = rpm_tag(proxy, "VERSION").strip()
    requires = rpm_tag(proxy, "REQUIRENAME").split()
    assert "nftables" in requires and any(r.startswith("libc.so.6") for r in requires), requires
    assert sorted(rpm_tag(proxy, "RECOMMENDNAME").split()) == ["ca-certificates", "idgate-dkms"]
    assert "dkms" in rpm_tag(dkms, "REQUIRENAME").split()
    # Into a root of its own: files only (its scriptlets would need a whole system there).
    root = tmp_path / "root"
    rpm = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm"]
    subprocess.run(rpm + ["--initdb"], check=True)
    subprocess.run(rpm + ["-i", "--nodeps", "--noscripts", str(proxy), str(dkms)], check=True, capture_output=True)
    conf = root / "etc/idgate/idgate.toml"
    units = root / "usr/lib/systemd/system"
    assert "ExecStart=/usr/bin/idgate" in (units / "idgate.service").read_text()
    assert "ExecReload=/usr/bin/idgate reload" in (units / "idgate.service").read_text()
    guard = (units / "idgate-guard.service").read_text()
    assert "ExecStart=/usr/bin/idgate guard" in guard and "Before=network-pre.target idgate.service" in guard
    # Both units are valid as installed: systemd-analyze resolves their commands in the root,
    # which gets the host's own units (targets) beside them.
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    # Documentation=man:... pages are looked up with man, in the root's man pages.
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root}", str(units / "idgate-guard.service"),
                             str(units / "idgate.service")], capture_output=True, text=True,
                            env=dict(BUILD_ENV, MANPATH=str(root / "usr/share/man")))
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    assert f'PACKAGE_VERSION="{version}"' in (root / f"usr/src/idgate-{version}/dkms.conf").read_text()
    assert (root / f"usr/src/idgate-{version}/include/uapi/idgate.h").exists()
    assert (root / "usr/lib/modules-load.d/idgate.conf").read_text().split("\n")[-2] == "idgate"
    man = subprocess.run(["man", "-l", str(root / "usr/share/man/man1/idgate-revoke.1.gz")], capture_output=True, text=True,
                         env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"})
    assert man.returncode == 0 and "deny-list file" in man.stdout, man
    # idgate.toml(5) is the reference generated from the config structs: every key, with its default.
    man5 = subprocess.run(["man", "-l", str(root / "usr/share/man/man5/idgate.toml.5.gz")], capture_output=True, text=True,
                          env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"})
    assert man5.returncode == 0 and "max_handshakes_per_source" in man5.stdout and 'default "15s"' in man5.stdout, man5
    assert "reload" in (root / "usr/share/bash-completion/completions/idgate").read_text()
    # The installed (stripped) binary runs and accepts the config it ships with.
    subprocess.run([str(root / "usr/bin/idgate"), "check", "-c", str(conf)], check=True, capture_output=True)
    # The preset enables both units (%systemd_post applies it on first install).
    assert (root / "usr/lib/systemd/system-preset/80-idgate.preset").read_text().count("enable idgate") == 2
    # An operator's edits survive a reinstall, and removal keeps them as .rpmsave.
    conf.write_text(conf.read_text() + "\n# edited by the operator\n")
    subprocess.run(rpm + ["-U", "--replacepkgs", "--nodeps", "--noscripts", str(proxy)], check=True, capture_output=True)
    assert "edited by the operator" in conf.read_text()
    subprocess.run(rpm + ["-e", "--nodeps", "--noscripts", "idgate"], check=True, capture_output=True)
    assert not (root / "usr/bin/idgate").exists()
    assert "edited by the operator" in (root / "etc/idgate/idgate.toml.rpmsave").read_text()
    # The scriptlets that did not run here are valid shell at least.
    assert "idgate uninstall" in rpm_tag(proxy, "PREUN") and "preset idgate-guard.service idgate.service" in rpm_tag(proxy, "POSTIN")
    for pkg, tags in ((proxy, ("POSTIN", "PREUN", "POSTUN")), (dkms, ("POSTIN", "PREUN"))):
        for tag in tags:
            body = rpm_tag(pkg, tag)
            assert "systemctl" in body or "dkms" in body, f"{pkg.name} {tag}: {body!r}"
            subprocess.run(["sh", "-n"], input=body, text=True, check=True)
