"""From boot to package removal an intercepted flow is tunnelled or refused, never sent in
plaintext: across clean stops, failed starts, a crash, before idgate first runs (the boot
guard), and with a local user squatting on the capture port while idgate is down."""
import subprocess

from hosts import SERVER_PORT, host_config
from netns import IDGATE
from test_tunnel import Capture, client, start_pair


def syns_to(frames, port):
    """IPv4 TCP SYNs to `port` in captured Ethernet frames."""
    out = []
    for f in frames:
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        tcp = f[14 + (f[14] & 0x0F) * 4:]
        if int.from_bytes(tcp[2:4], "big") == port and tcp[13] & 0x02:
            out.append(f)
    return out


def assert_refused_and_nothing_left(net, marker):
    """Alice's flow to B's service fails and neither its bytes nor a SYN to the service leave A."""
    cap = Capture(net.a)
    r = client(net, 1001, n=100, marker=marker, check=False, timeout=30)
    frames = cap.finish()
    assert isinstance(r, subprocess.CompletedProcess) and r.returncode != 0, "the flow went through without idgate"
    assert b"ConnectionRefusedError" in r.stderr, f"expected a refusal, got: {r.stderr[-300:]}"
    assert marker.encode() not in b"".join(frames), "the marker crossed the wire in plaintext"
    assert not syns_to(frames, SERVER_PORT), "a SYN to the service port left host A"
    assert net.server_connections() == []


def tables(host):
    return host.run("nft", "list", "tables").stdout.decode()


def config_a(net, **kw):
    return host_config("host-a", net.tmp / "state-a", net.ca_dir, **kw)


def test_clean_stop_leaves_flows_refused_until_idgate_runs_again(net):
    a, _ = start_pair(net)
    assert client(net, 1001, n=100)["echo_sha"]
    assert a.terminate() == 0
    net.server_log.write_text("")
    assert_refused_and_nothing_left(net, "AFTER-CLEAN-STOP-MARKER")
    assert "flows are refused until idgate runs again" in a.log.read_text()
    net.a.start_idgate(config_a(net), net.tmp, name="restarted")
    assert client(net, 1001, n=100)["echo_sha"], "a restarted idgate must tunnel again"


def test_stopped_server_keeps_protected_ports_closed_to_plaintext(net):
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    assert b.terminate() == 0
    cap = Capture(net.b)
    r = net.c.workload("exchange", net.b.ip, SERVER_PORT, 3, "PLAINTEXT-TO-STOPPED-SERVER", "half-close", check=False, timeout=30)
    cap.finish()
    assert r.returncode != 0, f"a host without idgate reached a protected port while idgate was stopped: {r.stdout}"
    assert net.server_connections() == []


def test_failed_start_leaves_flows_refused(net):
    # The inbound port is taken, so this first-ever start fails after reading its config.
    squatter = net.a.start_workload("squatter", "0.0.0.0", 15008)
    net.a.wait_listening(15008)
    failed = net.a.start_idgate(config_a(net), net.tmp, name="port-taken", wait=False)
    assert failed.proc.wait(timeout=20) == 2
    assert "is in use" in failed.log.read_text()
    assert "inet idgate" in tables(net.a), "a failed start must leave a refusing table"
    assert_refused_and_nothing_left(net, "FAILED-START-MARKER")
    squatter.kill()
    # A broken config on the next start changes nothing: the table stays.
    broken = net.a.start_idgate('trust_domain = "demo.idgate"\n[[outbound]]\ncidrs = ["10.0.0.0/33"]\nports = [80]\n',
                                net.tmp, name="broken", wait=False)
    assert broken.proc.wait(timeout=20) == 2
    assert_refused_and_nothing_left(net, "BROKEN-CONFIG-MARKER")


def test_boot_guard_refuses_flows_before_idgate_first_runs(net):
    net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    cfg = net.tmp / "a-guard.toml"
    cfg.write_text(config_a(net))
    assert "inet idgate" not in tables(net.a)
    out = net.a.run(IDGATE, "guard", "-c", cfg).stdout.decode()
    assert "installed" in out, out
    assert_refused_and_nothing_left(net, "BEFORE-FIRST-START-MARKER")
    net.a.start_idgate(config_a(net), net.tmp)
    assert client(net, 1001, n=100)["echo_sha"], "idgate must take over the guarded table"


def test_boot_guard_falls_back_to_the_last_table_when_the_config_breaks(net):
    a, _ = start_pair(net)
    assert a.terminate() == 0
    net.a.run("nft", "delete", "table", "inet", "idgate")  # what a reboot does
    cfg = net.tmp / "a-broken.toml"
    cfg.write_text(f'state_dir = "{net.tmp / "state-a"}"\ntrust_domain = "demo.idgate"\nmode = "bogus"\n')
    r = net.a.run(IDGATE, "guard", "-c", cfg, check=False)
    assert r.returncode == 0, r.stderr
    assert b"using the table idgate last installed" in r.stderr and b"a-broken.toml" in r.stderr, r.stderr
    assert_refused_and_nothing_left(net, "BROKEN-CONFIG-AT-BOOT-MARKER")


def test_a_local_user_cannot_take_over_the_capture_port_while_idgate_is_down(net):
    a, _ = start_pair(net)
    a.kill()  # a crash: the redirect stays and the capture port is free
    # An unprivileged listener on idgate's capture port that prints whatever reaches it.
    thief = net.a.start_workload("squatter", "127.0.0.1", 15001, uid=1003, stdout=subprocess.PIPE, text=True)
    net.a.wait_listening(15001, "127.0.0.1")
    assert_refused_and_nothing_left(net, "STOLEN-FLOW-MARKER")
    thief.kill()
    out, _ = thief.communicate(timeout=10)
    assert "STOLEN" not in out, "an unprivileged process received an intercepted flow"


def test_uninstall_and_on_stop_release_remove_the_table(net):
    a = net.a.start_idgate(config_a(net), net.tmp)
    a.terminate()
    cfg = net.tmp / "a-idgate.toml"
    out = net.a.run(IDGATE, "uninstall", "-c", cfg).stdout.decode()
    assert "removed nftables table inet idgate" in out and "inet idgate" not in tables(net.a)
    a = net.a.start_idgate(config_a(net, extra='[intercept]\non_stop = "release"\n'), net.tmp, name="release")
    assert "inet idgate" in tables(net.a)
    a.terminate()
    assert "inet idgate" not in tables(net.a)
    assert "in plaintext" in a.log.read_text(), "releasing the table must say what it costs"
