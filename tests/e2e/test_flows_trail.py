"""`idgate flows` lists open flows with their process, identity, peer and bytes; when a flow
ends both hosts record it in the attribution trail under one flow id: the client host names
the process and the SVID it used, the server host the same SPIFFE ID and certificate serial."""
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hosts import SERVER_PORT, TRUST_DOMAIN, host_config
from netns import IDGATE, WORKLOAD_PYTHON, WORKLOADS
from test_tunnel import client

ALICE = f"spiffe://{TRUST_DOMAIN}/app/alice"


def trail(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start(net, name, host):
    cfg = host_config(f"host-{name}", net.tmp / f"state-{name}", net.ca_dir, extra=f'[trail]\nfile = "{net.tmp}/trail-{name}.jsonl"\n')
    return host.start_idgate(cfg, net.tmp)


def test_open_flows_are_listed_and_both_hosts_record_the_same_flow(net):
    a, b = start(net, "a", net.a), start(net, "b", net.b)
    # A byte every 50 ms for 2 s, then one read of the answer.
    ticker = net.a.start_workload("ticker", net.b.ip, SERVER_PORT, 2, 0.05, "t", 200, uid=1001, stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    flows = json.loads(net.a.run(IDGATE, "flows", "--json", "-c", a.config).stdout)
    assert len(flows) == 1, flows
    f = flows[0]
    assert (f["direction"], f["pid"], f["uid"], f["spiffe_id"]) == ("outbound", ticker.pid, 1001, ALICE), f
    assert "python" in f["exe"] and f["destination"] == f"{net.b.ip}:{SERVER_PORT}" and f["bytes_up"] > 0, f
    assert f["peer"] == f"{net.b.ip}:15008 spiffe://{TRUST_DOMAIN}/idgate/host/host-b", f
    table = net.a.run(IDGATE, "flows", "-c", a.config).stdout.decode()
    assert "1 open flows" in table and str(ticker.pid) in table and ALICE in table, table
    on_b = json.loads(net.b.run(IDGATE, "flows", "--json", "-c", b.config).stdout)
    assert [(x["flow"], x["direction"], x["spiffe_id"]) for x in on_b] == [(f["flow"], "inbound", ALICE)], on_b
    assert ticker.wait(timeout=20) == 0

    # A refused flow leaves a record on both hosts too.
    assert not isinstance(client(net, 1003, n=10, check=False), dict)
    time.sleep(0.3)
    ta, tb = trail(net.tmp / "trail-a.jsonl"), trail(net.tmp / "trail-b.jsonl")
    ended_a = [r for r in ta if r["flow"] == f["flow"]]
    ended_b = [r for r in tb if r["flow"] == f["flow"]]
    assert len(ended_a) == 1 and len(ended_b) == 1, (ta, tb)
    ra, rb = ended_a[0], ended_b[0]
    assert ra["process"]["pid"] == ticker.pid and ra["process"]["uid"] == 1001 and ra["process"]["start_time"] > 0, ra
    assert ra["spiffe_id"] == rb["spiffe_id"] == ALICE and ra["svid_serial"] == rb["svid_serial"], (ra, rb)
    assert ra["verdict"] == "tunneled" and rb["verdict"] == "allowed"
    # Up is what the process sent and the service got; down differs when the client stops reading.
    assert ra["bytes_up"] == rb["bytes_up"] > 20 and ra["bytes_down"] > 0 and rb["bytes_down"] >= ra["bytes_down"], (ra, rb)
    assert rb["peer"].startswith(net.a.ip) and ra["duration_ms"] >= 1500
    denied_b = [r for r in tb if r["verdict"] == "denied"]
    assert denied_b and denied_b[0]["spiffe_id"].endswith("/app/mallory")
    assert [r for r in ta if r["flow"] == denied_b[0]["flow"] and r["verdict"] == "denied_by_peer"], ta
    # The log carries the same records (journald keeps them).
    assert f'"flow":"{f["flow"]}"' in a.log.read_text()


# What a terminal acts on beyond the C0 controls JSON escapes: DEL and the C1 controls (CSI, NEL...).
RAW_TERMINAL_CONTROLS = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


def test_a_workload_cannot_put_terminal_controls_in_the_log_or_the_trail(net):
    """A workload chooses its exe path. One with escape sequences in it (ESC, DEL, the C1 CSI)
    reaches an operator's terminal escaped, from the trail file and from the log, and the
    record still decodes to the real path."""
    hostile = Path(tempfile.mkdtemp(prefix="idgate-\x1b[2J\x07\x7f\u009b31m\u0085-"))
    try:
        hostile.chmod(0o755)
        exe = hostile / "python3"
        shutil.copy(WORKLOAD_PYTHON, exe)
        a, _ = start(net, "a", net.a), start(net, "b", net.b)
        r = json.loads(net.a.run(exe, WORKLOADS / "digest_client.py", net.b.ip, SERVER_PORT, 1000, "hi", uid=1001).stdout)
        assert r["echo_sha"] == r["sent_sha"], r
        time.sleep(0.3)
        for name, path in (("trail file", net.tmp / "trail-a.jsonl"), ("log", a.log)):
            data = path.read_bytes().replace(b"\n", b"")
            found = RAW_TERMINAL_CONTROLS.search(data)
            assert not found, f"raw {found.group()!r} in the {name}: {data[max(0, found.start() - 80):found.end() + 20]!r}"
        records = [r for r in trail(net.tmp / "trail-a.jsonl") if r.get("process", {}).get("exe") == str(exe)]
        assert [r["verdict"] for r in records] == ["tunneled"], records
        # The operator's commands print the process too (the decision's `exe(pid)`).
        for args in (["status"], ["status", "--json"]):
            out = net.a.run(IDGATE, *args, "-c", a.config).stdout
            found = RAW_TERMINAL_CONTROLS.search(out.replace(b"\n", b""))
            assert not found, f"raw {found.group()!r} in `idgate {' '.join(args)}`: {out[max(0, found.start() - 80):found.end() + 20]!r}"
            assert b"python3(" in out, out
    finally:
        shutil.rmtree(hostile)
