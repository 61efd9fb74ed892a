"""A reload is one transaction: a file that fails at any step (here the cgroup guard, after the
table and with a new CA staged) changes nothing, the CA in force included, and the same file
reverted, or fixed, then reloads as if the failure never happened."""
import subprocess

from hosts import host_config
from netns import IDGATE
from test_fleet_ca import ca, issue
from test_tunnel import client


def config(net, name, ca_dir, bundle, extra=""):
    text = host_config(f"host-{name}", net.tmp / f"state-{name}", ca_dir, extra=extra)
    return text.replace(f'key = "{ca_dir}/ca-key.pem"\n', f'key = "{ca_dir}/ca-key.pem"\ntrust_bundle = ["{bundle}"]\n', 1)


def works(net):
    r = client(net, 1001, n=100, check=False, timeout=30)
    return isinstance(r, dict) and r["echo_sha"] == r["sent_sha"]


def fresh_a(net, a_config, n):
    """A restarted, so that its next flow dials B anew and sees the certificate B presents now
    (B's open tunnel connections were made under the SVID it had then)."""
    net.a.idgate.kill()
    net.a.start_idgate(a_config, net.tmp, name=f"a{n}")


def test_a_refused_reload_changes_nothing_and_a_reverted_file_reloads_clean(net):
    root1, root2 = net.tmp / "root1", net.tmp / "root2"
    ca("init", "--dir", root1, "--trust-domain", "demo.idgate")
    ca("init", "--dir", root2, "--trust-domain", "demo.idgate")
    only_root1, both = net.tmp / "root1.pem", net.tmp / "both.pem"
    only_root1.write_text((root1 / "ca.pem").read_text())
    both.write_text((root1 / "ca.pem").read_text() + (root2 / "ca.pem").read_text())
    a_ca, b_ca1, b_ca2 = issue(net, root1, "a", 1), issue(net, root1, "b", 1), issue(net, root2, "b", 2)
    # B's guard goes on a cgroup of its own that the test can take away: the step that fails.
    # B sees its own cgroup as the hierarchy's root, so B's name for it is the mount point's.
    guard = net.b.cgroup.path / "guard"
    guard.mkdir()
    guard_in_b = net.b.cgroup.mountpoint / "guard"
    try:
        a_config = config(net, "a", a_ca, only_root1)  # A trusts root1 alone
        net.a.start_idgate(a_config, net.tmp)
        b_text = config(net, "b", b_ca1, both, extra=f'[intercept]\nguard_cgroup = "{guard_in_b}"\n')
        b = net.b.start_idgate(b_text, net.tmp)
        assert works(net)

        # The file B reloads: a CA under root2 (which A does not trust) and one more destination.
        changed = b_text.replace(str(b_ca1), str(b_ca2)) + '\n[[outbound]]\ncidrs = ["10.99.0.0/24"]\nports = [1234]\n'
        b.config.write_text(changed)
        guard.rmdir()
        r = net.b.run(IDGATE, "reload", "-c", b.config, check=False)
        assert r.returncode != 0 and b"guard" in r.stderr, r.stderr
        fresh_a(net, a_config, 1)
        assert works(net), "the refused reload left B with the new CA in force: A no longer trusts it"
        ruleset = net.b.run("nft", "list", "ruleset").stdout.decode()
        assert "10.99.0." not in ruleset and "10.77.0." in ruleset, "the refused reload's table stayed"

        # The file reverted: reloads clean, and nothing (CA included) is left of the refused one.
        guard.mkdir()
        b.config.write_text(b_text)
        net.b.run(IDGATE, "reload", "-c", b.config)
        fresh_a(net, a_config, 2)
        assert works(net), "after the file was reverted and reloaded, B still has the refused reload's CA"

        # Control: the same change, now that every step can succeed, does take the CA over.
        b.config.write_text(changed)
        net.b.run(IDGATE, "reload", "-c", b.config)
        assert "10.99.0." in net.b.run("nft", "list", "ruleset").stdout.decode()
        fresh_a(net, a_config, 3)
        assert not works(net), "after the CA change A (root1 only) must refuse B"
    finally:
        net.topo.cleanup()
        if guard.exists():
            subprocess.run(["rmdir", str(guard)], check=False)
