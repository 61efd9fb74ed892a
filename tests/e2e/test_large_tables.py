"""A config holds as many `[[outbound]]` destinations as an operator writes: `check` and `run`
agree on it, the table goes in whatever its size, and a flow to the last destination of
10,000 (IPv4 and IPv6 mixed, overlapping entries included) is intercepted and tunnelled."""
import subprocess

from hosts import host_config
from netns import IDGATE
from test_tunnel import client


def many_destinations(n):
    """n one-address destinations, IPv4 and IPv6 alternating, plus entries that overlap them."""
    out = []
    for i in range(n):
        if i % 2:
            out.append(f'[[outbound]]\ncidrs = ["fd00:77::{i // 256:x}:{i % 256:x}/128"]\nports = [7000]\n')
        else:
            out.append(f'[[outbound]]\ncidrs = ["10.78.{i // 256}.{i % 256}/32"]\nports = [7000, "7100-7200"]\n')
    out.append('[[outbound]]\ncidrs = ["10.78.0.0/16"]\nports = ["6990-7010"]\n')
    return "\n".join(out)


def test_ten_thousand_destinations_start_and_intercept(net):
    extra = many_destinations(10_000)
    text_a = host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=extra)
    cfg = net.tmp / "large.toml"
    cfg.write_text(text_a)
    r = subprocess.run([str(IDGATE), "check", "-c", str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    net.a.start_idgate(text_a, net.tmp, name="large")
    net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    r = client(net, 1001, n=1000)
    assert r["echo_sha"] == r["sent_sha"]
    assert net.server_connections()[-1][0] == net.b.ip, "the flow did not go through host B's idgate"
