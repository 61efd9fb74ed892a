"""Strict mode: a protected port is reachable only through idgate, from this host's own
processes too. Local callers are authorized by their process identity with the same policy
and decision records as tunnelled ones; none can skip authorization over loopback."""
import hashlib
import json

from hosts import SERVER_PORT, TRUST_DOMAIN, host_config


def local_call(net, uid, host):
    out = net.b.workload("exchange", host, SERVER_PORT, 10, "local-payload", "half-close", uid=uid, timeout=30, check=False)
    return json.loads(out.stdout)


def test_local_processes_are_authorized_like_remote_ones(net):
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    for target in ("127.0.0.1", net.b.ip):
        denied = local_call(net, 1003, target)  # mallory: identified, not allowed on this port
        assert "error" in denied, f"mallory reached the protected service over {target}: {denied}"
        nobody = local_call(net, 1005, target)  # no workload rule
        assert "error" in nobody, f"an unidentified process reached the protected service over {target}: {nobody}"
    assert net.server_connections() == [], "a local caller skipped authorization"
    alice = local_call(net, 1001, "127.0.0.1")
    assert alice.get("answer", "").startswith(hashlib.sha256(b"local-payload").hexdigest()), alice
    assert len(net.server_connections()) == 1
    local = b.decisions(direction="local")
    verdicts = sorted((d["source_id"] or "-", d["verdict"]) for d in local)
    assert verdicts == sorted([
        (f"spiffe://{TRUST_DOMAIN}/app/mallory", "denied"), (f"spiffe://{TRUST_DOMAIN}/app/mallory", "denied"),
        ("-", "denied_no_identity"), ("-", "denied_no_identity"),
        (f"spiffe://{TRUST_DOMAIN}/app/alice", "allowed"),
    ]), local
    assert all(d["destination"].endswith(f":{SERVER_PORT}") for d in local)
    assert "is not allowed to reach local port 9000" in next(d for d in local if d["verdict"] == "denied")["detail"]


def test_permissive_mode_leaves_local_callers_alone(net):
    net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir, mode="permissive"), net.tmp)
    assert "answer" in local_call(net, 1003, "127.0.0.1")
