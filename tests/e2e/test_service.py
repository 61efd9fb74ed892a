"""The service manager's notify protocol, as systemd (`Type=notify`, `WatchdogSec=`) speaks
it: READY only once idgate serves (status answers, a flow goes through at once), watchdog
pings while the workers turn, RELOADING then READY around a reload (a refused one too), and
STOPPING on SIGTERM. A datagram socket in the test plays systemd's part."""
import os
import signal
import socket
import time

from hosts import host_config
from netns import IDGATE, Idgate
from test_tunnel import client


def messages(sock, until, timeout):
    """Datagrams received until one contains `until` (all of them, in order)."""
    got, deadline = [], time.time() + timeout
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            msg = sock.recv(4096).decode().strip()
        except TimeoutError:
            break
        if msg.startswith("FDSTORE"):
            continue  # listeners handed to the store (test_restart.py; their fds are dropped here)
        got.append(msg)
        if until in got[-1]:
            return got
    raise AssertionError(f"no {until!r} within {timeout} s; got {got}")


def test_ready_watchdog_reload_and_stop_are_announced(net):
    net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    path = net.tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    cfg = net.tmp / "a-idgate.toml"
    cfg.write_text(host_config("host-a", net.tmp / "state-a", net.ca_dir))
    log = net.tmp / "a-idgate.log"
    env = dict(os.environ, NOTIFY_SOCKET=str(path), WATCHDOG_USEC="2000000", RUST_LOG="info,idgate::runtime::service=debug", NO_COLOR="1")
    # WATCHDOG_PID names the process the watchdog is for: idgate's pid (exec keeps the shell's).
    with open(log, "w") as logf:
        proc = net.a.popen("/bin/sh", "-c", f'WATCHDOG_PID=$$ exec {IDGATE} run -c {cfg}', env=env, stdout=logf, stderr=logf)
    a = Idgate(net.a, proc, log, cfg)

    first = messages(sock, "READY=1", 20)
    assert len(first) == 1 and "STATUS=ready" in first[0], first
    # Ready means serving: status answers and a flow goes through without waiting.
    assert a.status()["host"] == "host-a"
    assert client(net, 1001, n=1000)["echo_sha"]
    assert "watchdog enabled" in log.read_text()
    pings = messages(sock, "WATCHDOG=1", 5)
    assert pings[-1] == "WATCHDOG=1", pings
    messages(sock, "WATCHDOG=1", 5)  # and again

    net.a.run(IDGATE, "reload", "-c", cfg)
    around = [m for m in messages(sock, "READY=1", 5) if m != "WATCHDOG=1"]
    assert around[0].startswith("RELOADING=1") and "READY=1" in around[-1] and "generation 1" in around[-1], around
    cfg.write_text(cfg.read_text() + "\nnot valid toml [\n")
    refused = net.a.run(IDGATE, "reload", "-c", cfg, check=False)
    assert refused.returncode == 1 and f"{cfg}:{len(cfg.read_text().splitlines())}:" in refused.stderr.decode(), refused
    around = [m for m in messages(sock, "READY=1", 5) if m != "WATCHDOG=1"]
    assert around[0].startswith("RELOADING=1") and "reload was refused" in around[-1], around

    proc.send_signal(signal.SIGTERM)
    assert any(m.startswith("STOPPING=1") for m in messages(sock, "STOPPING=1", 10))
    assert proc.wait(timeout=15) == 0
