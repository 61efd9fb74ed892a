"""Everything that must be refused is refused, and refusals fail closed."""
import json
import subprocess

from hosts import SERVER_PORT, TRUST_DOMAIN, host_config
from netns import IDGATE
from test_tunnel import Capture, client, start_pair, tcp_payloads


def test_unauthorized_identity_is_refused_before_any_byte_reaches_the_server(net):
    a, b = start_pair(net)
    r = client(net, 1003, n=5000, check=False)  # mallory: valid SVID, not in B's allow list
    assert isinstance(r, subprocess.CompletedProcess) and r.returncode != 0, "mallory got through"
    assert net.server_connections() == [], "bytes reached the server"
    denied = b.decisions(direction="inbound", verdict="denied")
    assert [d["source_id"] for d in denied] == [f"spiffe://{TRUST_DOMAIN}/app/mallory"]
    assert a.decisions(direction="outbound", verdict="denied_by_peer")


def test_process_without_workload_rule_is_denied_locally(net):
    a, b = start_pair(net)
    r = client(net, 1005, n=10, check=False)
    assert isinstance(r, subprocess.CompletedProcess) and r.returncode != 0
    assert a.decisions(direction="outbound", verdict="denied_no_identity")
    assert b.status()["decisions"] == [], "an unidentified flow reached the peer"
    assert net.server_connections() == []


def test_peer_with_certificate_from_another_ca_is_refused(net):
    _, b = start_pair(net)
    # Host C runs its own embedded CA for the same trust domain name.
    net.c.start_idgate(host_config("host-c", net.tmp / "state-c"), net.tmp)
    r = net.c.workload("digest_client", net.b.ip, SERVER_PORT, 100, "x", uid=1001, check=False)
    assert r.returncode != 0, "a foreign CA's SVID was accepted"
    refused = b.status()["refused_connections"]
    assert refused and refused[0]["remote"].startswith(net.c.ip + ":") and refused[0]["reason"] == "tls", refused
    assert "mTLS handshake failed" in refused[0]["detail"], refused
    assert net.server_connections() == []


def test_killed_idgate_fails_closed_and_restart_replaces_stale_table(net):
    a, _ = start_pair(net)
    assert client(net, 1001, n=100)["echo_sha"]
    cap = Capture(net.a)
    a.kill()  # SIGKILL: no cleanup, the redirect table stays
    r = client(net, 1001, n=100, marker="LEAK-CHECK-MARKER", check=False)
    frames = cap.finish()
    assert isinstance(r, subprocess.CompletedProcess) and r.returncode != 0, "flow went through with idgate dead"
    assert b"LEAK-CHECK-MARKER" not in b"".join(frames)
    assert not tcp_payloads(frames, SERVER_PORT)
    syns = [f for f in frames if len(f) > 54 and f[12:14] == b"\x08\x00" and int.from_bytes(f[36:38], "big") == SERVER_PORT]
    assert syns == [], "a packet to the service port left host A"
    # A new idgate replaces the stale table and works.
    net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir), net.tmp, name="idgate2")
    assert client(net, 1001, n=100)["echo_sha"]
    tables = net.a.run("nft", "list", "tables").stdout.decode().splitlines()
    assert sorted(tables) == ["table inet idgate", "table inet idgate_owned"], tables


def plaintext_from_c(net):
    return net.c.workload("exchange", net.b.ip, SERVER_PORT, 2, "plain", "half-close", check=False, timeout=30)


def test_plaintext_client_is_dropped_in_strict_mode_and_admitted_in_permissive(net):
    net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, mode="strict"), net.tmp)
    r = plaintext_from_c(net)
    assert r.returncode != 0 and "timed out" in json.loads(r.stdout)["error"], r
    assert net.server_connections() == []
    net.b.idgate.terminate()
    net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, mode="permissive"), net.tmp, name="permissive")
    r = plaintext_from_c(net)
    assert r.returncode == 0, r
    assert net.server_connections() == [[net.c.ip, "5"]]


def test_bad_config_exits_nonzero_naming_file_and_line(tmp_path):
    cfg = tmp_path / "idgate.toml"
    cfg.write_text('trust_domain = "demo.idgate"\n\n[[outbound]]\ncidrs = ["10.0.0.0/33"]\nports = [80]\n')
    r = subprocess.run([str(IDGATE), "run", "-c", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert f"{cfg}:4:" in r.stderr and "10.0.0.0/33" in r.stderr, r.stderr
