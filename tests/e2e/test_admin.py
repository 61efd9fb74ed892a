"""What idgate tells, and to whom: /status (identities, processes, flows) only on the root-only
control socket, through `idgate status`; the TCP admin port keeps /metrics, /healthz and the
JWKS. The identity backend in use is reported with the reason it is the one."""
import json
import re

from hosts import host_config
from netns import IDGATE
from test_tunnel import client, start_pair


def test_status_is_root_only_and_not_on_the_tcp_admin_port(net):
    a, _ = start_pair(net)
    client(net, 1001, n=100)
    # Any local user can reach the TCP admin port: it must not tell who runs what.
    r = net.a.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:15000/status", uid=1003)
    assert r.stdout == b"404", r
    assert net.a.run("curl", "-sf", "http://127.0.0.1:15000/healthz", uid=1003).stdout == b"ok\n"
    assert b"idgate_outbound_flows_total" in net.a.run("curl", "-sf", "http://127.0.0.1:15000/metrics", uid=1003).stdout
    socket = net.tmp / "state-a" / "control.sock"
    assert oct(socket.stat().st_mode & 0o777) == "0o600"
    denied = net.a.run(IDGATE, "status", "--socket", socket, uid=1003, check=False)
    assert denied.returncode != 0 and b"Permission denied" in denied.stderr, denied
    # root: a readable summary, and the JSON for scripts.
    text = net.a.run(IDGATE, "status", "-c", a.config).stdout.decode()
    assert "identity backend: procfs" in text and "spiffe://demo.idgate/app/alice" in text and "tunneled" in text, text
    doc = json.loads(net.a.run(IDGATE, "status", "--json", "-c", a.config).stdout)
    assert doc["decisions"][-1]["verdict"] == "tunneled"


def test_a_module_with_an_unknown_api_is_not_used_in_auto_and_refused_when_required(net):
    # /dev/null stands for a device that does not speak this idgate's module API.
    env = {"IDGATE_KMOD_DEVICE": "/dev/null"}
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir), net.tmp, env=env)
    st = a.status()
    assert st["identity_backend"] == "procfs"
    assert "/dev/null is not usable" in st["identity_backend_reason"] and "falling back to procfs" in st["identity_backend_reason"], st
    assert "idgate ready (identity backend: procfs: the kernel module at /dev/null is not usable" in a.log.read_text()
    metrics = net.a.run("curl", "-sf", "http://127.0.0.1:15000/metrics").stdout.decode()
    assert re.search(r'^idgate_identity_backend\{backend="procfs",reason="[^"]*/dev/null is not usable[^"]*"\} 1$', metrics, re.M), metrics
    a.terminate()
    required = host_config("host-a", net.tmp / "state-a", net.ca_dir).replace('default_action = "deny"', 'default_action = "deny"\nidentity_backend = "kmod"')
    b = net.a.start_idgate(required, net.tmp, name="kmod-required", wait=False, env=env)
    assert b.proc.wait(timeout=20) == 2
    assert 'identity_backend = "kmod" but the kernel module cannot be trusted: the kernel module at /dev/null is not usable' in b.log.read_text()
