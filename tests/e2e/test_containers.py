"""Containers on an idgate host, and flows a host routes: a container's flow to an
intercepted destination is tunnelled with the identity of the process in the container that
opened it (container id from its cgroup; name, image and labels from Podman's API), an
unmatched container is denied, a routed flow from elsewhere or from a spoofed container
address is refused, and nothing crosses the wire in plaintext, with idgate running or not."""
import json
import subprocess

import pytest

from containers import NETWORK, NETWORK6, SUBNET, SUBNET6, ContainerNet, Podman, podman_available
from eventually import eventually
from hosts import SERVER_PORT, TRUST_DOMAIN, host_config
from netns import IDGATE, WORKLOAD_PYTHON
from test_stop_boot import syns_to
from test_tunnel import Capture

WEB_ID = "a1" * 32
OTHER_ID = "b2" * 32
WEB = f"spiffe://{TRUST_DOMAIN}/tools/ctr-web"
OTHER = f"spiffe://{TRUST_DOMAIN}/tools/ctr-other"
UID = 1005  # no host rule selects it: only the container rules can


def containers_config(rules, runtime_api=None):
    api = f'runtime_api = "{runtime_api}"\n' if runtime_api else ""
    return f'\n[containers]\nnetworks = ["{NETWORK}", "{NETWORK6}"]\n{api}\n{rules}'


ID_RULES = f"""
[[workload]]
spiffe_id = "{WEB}"
container_id = "{WEB_ID}"
"""


def start(net, rules=ID_RULES, runtime_api=None, extra=""):
    a = net.a.start_idgate(host_config("host-a", net.tmp / "state-a", net.ca_dir, extra=containers_config(rules, runtime_api) + extra), net.tmp)
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    return a, b


def leaked_syns(frames, port, *sources):
    """SYNs to `port` among `frames` from one of `sources` (address prefixes)."""
    return [f for f in syns_to(frames, port) if any(".".join(map(str, f[26:30])).startswith(s) for s in sources)]


def sent_by(host, frames):
    """The captured frames `host` sent (by its eth0's MAC address)."""
    mac = bytes.fromhex(json.loads(host.run("ip", "-j", "link", "show", "eth0").stdout)[0]["address"].replace(":", ""))
    return [f for f in frames if f[6:12] == mac]


def assert_nothing_in_plaintext(net, frames, marker):
    """Of what host A sent (`frames`, from `sent_by`), no byte of the marker; the service saw
    only host B's idgate."""
    assert marker.encode() not in b"".join(frames), "the marker left host A in plaintext"
    direct = [c for c in net.server_connections() if c[0] != net.b.ip]
    assert not direct, f"the service saw connection(s) that did not come through host B's idgate: {direct}"


def assert_refused_and_nothing_left(net, web, cap, marker):
    """A flow from container `web` fails, and nothing of it left host A (`cap` captured)."""
    r = web.workload("digest_client", net.b.ip, SERVER_PORT, 100, marker, uid=UID, check=False, timeout=30)
    assert r.returncode != 0, r.stdout
    frames = sent_by(net.a, cap.finish())
    assert_nothing_in_plaintext(net, frames, marker)
    assert not leaked_syns(frames, SERVER_PORT, net.a.ip, SUBNET), "a SYN to the service left host A"
    assert not net.server_connections()


def test_a_containers_flow_carries_the_identity_of_its_process_and_an_unmatched_one_is_denied(net):
    ctr = ContainerNet(net.a)
    web = ctr.add("c1", 2, WEB_ID)
    other = ctr.add("c2", 3, OTHER_ID)
    a, b = start(net)
    cap = Capture(net.a)
    marker = "CONTAINER-FLOW-MARKER-" + "x" * 16
    r = json.loads(web.workload("digest_client", net.b.ip, SERVER_PORT, 64 * 1024, marker, uid=UID).stdout)
    assert r["echo_sha"] == r["sent_sha"], r
    # Host B authorized the container's identity, and host A names the process and container.
    assert b.decisions(direction="inbound", source_id=WEB), b.status()["decisions"]
    mine = [d for d in a.decisions(direction="outbound", source_id=WEB) if d["verdict"] == "tunneled"]
    assert mine and f"({r['pid']}) in container {WEB_ID[:12]}" in mine[0]["process"], a.status()["decisions"]
    # The same program in a container no rule selects is denied before anything leaves A.
    denied = other.workload("digest_client", net.b.ip, SERVER_PORT, 100, marker + "-other", uid=UID, check=False)
    assert denied.returncode != 0, denied.stdout
    refusals = [d for d in a.decisions(direction="outbound") if d["verdict"] == "denied_no_identity"]
    assert refusals and f"in container {OTHER_ID[:12]}" in refusals[-1]["process"], a.status()["decisions"]
    frames = sent_by(net.a, cap.finish())
    assert_nothing_in_plaintext(net, frames, marker)
    assert not leaked_syns(frames, SERVER_PORT, SUBNET, net.a.ip), "a SYN to the service left host A"
    assert len(net.server_connections()) == 1


def test_a_containers_ipv6_flow_is_tunnelled_the_same(net):
    for host, n in ((net.a, 1), (net.b, 2)):
        host.run("ip", "-6", "addr", "add", f"fd77::{n}/64", "dev", "eth0", "nodad")
    net.b.start_workload("v6_greeters", "fd77::2", SERVER_PORT + 1)
    net.b.wait_listening(SERVER_PORT + 1)
    web = ContainerNet(net.a).add("c1", 2, WEB_ID)
    # B's tunnel endpoint listens on IPv4 (0.0.0.0:15008); its certificate names fd77::2 too.
    a, b = start(net, extra=f'\n[[outbound]]\ncidrs = ["fd77::/64"]\nports = [{SERVER_PORT + 1}]\npeer = "{net.b.ip}:15008"\n')
    cap = Capture(net.a)
    marker = "CONTAINER-V6-MARKER-" + "v" * 16
    got = web.run(WORKLOAD_PYTHON, "-c", "import socket, sys\n"
                  f"s = socket.create_connection(('fd77::2', {SERVER_PORT + 1}), timeout=20)\n"
                  "s.sendall(sys.argv[1].encode()); print(s.recv(100).decode())", marker, uid=UID)
    assert got.stdout.strip() == "reached", got
    assert b.decisions(direction="inbound", source_id=WEB), b.status()["decisions"]
    mine = a.decisions(direction="outbound", source_id=WEB)
    assert mine and mine[0]["destination"] == f"[fd77::2]:{SERVER_PORT + 1}" and f"in container {WEB_ID[:12]}" in mine[0]["process"], mine
    frames = sent_by(net.a, cap.finish())
    assert marker.encode() not in b"".join(frames), "the marker left host A in plaintext"


def test_routed_flows_and_spoofed_container_addresses_are_refused_never_forwarded(net):
    ContainerNet(net.a).add("c1", 2, WEB_ID)
    a, _ = start(net)
    cap = Capture(net.a)
    # Host C sends its flows to B through A, as a LAN behind a gateway would.
    net.topo.ns_exec(net.c.ns, "ip", "route", "add", f"{net.b.ip}/32", "via", net.a.ip)
    marker = "ROUTED-FLOW-MARKER-" + "y" * 16
    routed = net.c.workload("digest_client", net.b.ip, SERVER_PORT, 100, marker, uid=1001, check=False, timeout=30)
    assert routed.returncode != 0, routed.stdout
    refused = [d for d in a.decisions(direction="outbound") if d["verdict"] == "denied_no_identity"]
    assert refused and "routed through this host" in (refused[-1]["detail"] or ""), a.status()["decisions"]
    # C claims a container's address: dropped on arrival (the host routes that address to its
    # bridge, not to eth0), so idgate never even sees it.
    net.topo.ns_exec(net.c.ns, "ip", "addr", "add", f"{SUBNET}.77/32", "dev", "eth0")
    spoof = net.c.python(
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('{net.b.ip}', {SERVER_PORT}), timeout=3, source_address=('{SUBNET}.77', 0))\n"
        "except OSError as e:\n"
        "    print(type(e).__name__); sys.exit(0)\n"
        "sys.exit(1)\n", check=False, timeout=30)
    assert spoof.returncode == 0 and b"timeout" in spoof.stdout.lower(), spoof
    assert not [d for d in a.decisions() if f"{SUBNET}.77" in (d["detail"] or "")], "idgate saw the spoofed flow"
    # The drop is the anti-spoofing rule's (of whichever of idgate's two tables saw it first).
    ruleset = net.a.run("nft", "list", "ruleset").stdout.decode()
    spoof_rules = [line for line in ruleset.splitlines() if "@nets4" in line]
    assert len(spoof_rules) == 2 and any("packets 0 " not in r for r in spoof_rules), ruleset
    frames = sent_by(net.a, cap.finish())
    assert_nothing_in_plaintext(net, frames, marker)
    assert not leaked_syns(frames, SERVER_PORT, net.a.ip, SUBNET), "a SYN to the service left host A"
    assert not net.server_connections()


def test_a_spoofed_container_ipv6_address_is_dropped_on_arrival(net):
    for host, n in ((net.a, 1), (net.b, 2), (net.c, 3)):
        net.topo.ns_exec(host.ns, "ip", "-6", "addr", "add", f"fd77::{n}/64", "dev", "eth0", "nodad")
    ContainerNet(net.a).add("c1", 2, WEB_ID)
    a, _ = start(net, extra=f'\n[[outbound]]\ncidrs = ["fd77::2/128"]\nports = [{SERVER_PORT}]\npeer = "{net.b.ip}:15008"\n')
    # C claims a container's IPv6 address and sends its flow to B through A.
    net.topo.ns_exec(net.c.ns, "ip", "-6", "addr", "add", f"{SUBNET6}77/128", "dev", "eth0", "nodad")
    net.topo.ns_exec(net.c.ns, "ip", "-6", "route", "add", "fd77::2/128", "via", "fd77::1")
    spoof = net.c.python(
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('fd77::2', {SERVER_PORT}), timeout=3, source_address=('{SUBNET6}77', 0))\n"
        "except OSError as e:\n"
        "    print(type(e).__name__); sys.exit(0)\n"
        "sys.exit(1)\n", check=False, timeout=30)
    assert spoof.returncode == 0 and b"timeout" in spoof.stdout.lower(), spoof
    assert not [d for d in a.decisions() if f"{SUBNET6}77" in (d["detail"] or "") + (d["process"] or "")], "idgate saw the spoofed flow"
    ruleset = net.a.run("nft", "list", "ruleset").stdout.decode()
    spoof_rules = [line for line in ruleset.splitlines() if "@nets6" in line and "drop" in line]
    assert len(spoof_rules) == 2 and any("packets 0 " not in r for r in spoof_rules), ruleset


def test_container_flows_are_refused_while_idgate_is_down(net):
    web = ContainerNet(net.a).add("c1", 2, WEB_ID)
    a, _ = start(net)
    a.kill()
    cap = Capture(net.a)
    marker = "CONTAINER-DOWN-MARKER-" + "z" * 16
    assert_refused_and_nothing_left(net, web, cap, marker)


def open_container_flow(net, web, a, marker, seconds):
    """A ticker in the container (its marker every 0.1 s over one tunnelled connection),
    once host A has let it through."""
    t = web.start_workload("ticker", net.b.ip, SERVER_PORT, seconds, 0.1, marker, 200, uid=UID, stdout=subprocess.PIPE, text=True)
    eventually(lambda: a.decisions(direction="outbound", source_id=WEB), "the container's flow was not tunnelled", timeout=10)
    return t


def test_a_containers_open_flow_is_closed_by_a_revocation_and_its_next_refused(net):
    web = ContainerNet(net.a).add("c1", 2, WEB_ID)
    a, _ = start(net)
    ticker = open_container_flow(net, web, a, "CONTAINER-REVOKED-" + "r" * 16, 8)
    out = net.a.run(IDGATE, "revoke", WEB, "-c", a.config).stdout.decode()
    assert "1 open flow(s) closed" in out, out
    got = json.loads(ticker.communicate(timeout=20)[0])
    assert got["how"] != "ok", got
    again = web.workload("digest_client", net.b.ip, SERVER_PORT, 100, "after", uid=UID, check=False, timeout=30)
    assert again.returncode != 0, again.stdout
    revoked = [d for d in a.decisions(direction="outbound") if d["verdict"] == "revoked"]
    assert revoked and f"in container {WEB_ID[:12]}" in revoked[-1]["process"], a.status()["decisions"]


def test_a_containers_open_flow_leaks_nothing_when_idgate_is_killed(net):
    web = ContainerNet(net.a).add("c1", 2, WEB_ID)
    a, _ = start(net)
    marker = "CONTAINER-KILLED-" + "k" * 16
    ticker = open_container_flow(net, web, a, marker, 4)
    cap = Capture(net.a)
    a.kill()
    got = json.loads(ticker.communicate(timeout=20)[0])
    assert got["how"] != "ok", got
    frames = sent_by(net.a, cap.finish())
    assert_nothing_in_plaintext(net, frames, marker)
    assert not leaked_syns(frames, SERVER_PORT, net.a.ip, SUBNET), "a SYN to the service left host A"


def test_the_uplink_guard_follows_interfaces_that_appear(net):
    ContainerNet(net.a).add("c1", 2, WEB_ID)
    a, _ = start(net)

    def guarded():
        return a.status()["intercept"]["guard"]["uplinks"]

    assert guarded()["state"] == "attached" and "eth0" in guarded()["interfaces"], guarded()
    net.a.run("ip", "link", "add", "up1", "type", "veth", "peer", "name", "up1p")
    net.a.run("ip", "addr", "add", "10.99.0.1/24", "dev", "up1")
    net.a.run("ip", "link", "set", "up1", "up")
    eventually(lambda: "up1" in guarded()["interfaces"], lambda: f"the new interface got no uplink guard: {guarded()}", timeout=5)


def test_container_flows_are_refused_while_idgate_is_stopped_and_the_ruleset_flushed(net):
    """The table is gone (another program's `nft flush ruleset` while idgate is stopped) and
    the runtime put its own masquerade back: the container's SYN is forwarded, so the cgroup
    guard, which lets containers' addresses pass for the table to redirect, cannot stop it.
    The guard on the uplink's egress does."""
    ctr = ContainerNet(net.a)
    web = ctr.add("c1", 2, WEB_ID)
    a, _ = start(net)
    assert a.terminate() == 0
    net.a.run("nft", "flush", "ruleset")
    ctr.masquerade()
    cap = Capture(net.a)
    marker = "CONTAINER-FLUSHED-MARKER-" + "f" * 16
    assert_refused_and_nothing_left(net, web, cap, marker)


PODMAN_RULES = f"""
[[workload]]
spiffe_id = "{WEB}"
container_labels = {{ app = "web" }}
container_image = "localhost/idgate-test-busybox:*"

[[workload]]
spiffe_id = "{OTHER}"
container_name = "other-*"
"""


@pytest.fixture
def podman(net):
    assert podman_available(), "the container tests need podman, runc and busybox-static (tests/setup.sh installs them)"
    p = Podman(net.tmp)
    yield p
    p.close()


def test_podman_containers_get_identities_by_label_image_and_name(net, podman):
    ctr = ContainerNet(net.a)
    web_ns, other_ns = ctr.add("c1", 2, WEB_ID), ctr.add("c2", 3, OTHER_ID)
    a, b = start(net, PODMAN_RULES, runtime_api=podman.socket)
    cap = Capture(net.a)
    marker = "PODMAN-MARKER-" + "w" * 16
    # The containers run under host A's cgroup (as on a real host, under its root), so that
    # A's guard sees their packets too.
    parent = "/" + str(net.a.cgroup.path.relative_to(net.a.cgroup.mountpoint))
    url = f"http://{net.b.ip}:{SERVER_PORT + 1}/"
    b_http = net.b.popen("/usr/bin/python3", "-m", "http.server", SERVER_PORT + 1, "--bind", net.b.ip, cwd=net.tmp)
    net.b.wait_listening(SERVER_PORT + 1)
    runs = {}
    for name, ns, labels in (("web-1", web_ns, {"app": "web"}), ("other-1", other_ns, {"app": "other"}), ("stray-1", other_ns, {})):
        runs[name] = podman.run(ns, parent, name, labels, "/bin/busybox", "wget", "-q", "-O", "-", "--header", f"X-Marker: {marker}", url)
    for name in ("web-1", "other-1"):
        logs, code, _ = runs[name]
        assert code == 0, f"{name}: {logs.stdout}{logs.stderr}"
    assert runs["stray-1"][1] != 0, "a container no rule selects reached the service"
    seen = {d["source_id"] for d in b.decisions(direction="inbound")}
    assert {WEB, OTHER} <= seen, b.status()["decisions"]
    tunneled = {d["source_id"]: d["process"] for d in a.decisions(direction="outbound") if d["verdict"] == "tunneled"}
    assert f"in container {runs['web-1'][2][:12]}" in tunneled[WEB], tunneled
    assert f"in container {runs['other-1'][2][:12]}" in tunneled[OTHER], tunneled
    frames = sent_by(net.a, cap.finish())
    b_http.kill()
    assert marker.encode() not in b"".join(frames), "the marker left host A in plaintext"
    assert not leaked_syns(frames, SERVER_PORT + 1, net.a.ip, SUBNET), "a SYN to the service left host A"


def test_a_renamed_container_takes_its_new_names_identity_at_once(net, podman):
    """idgate follows the runtime's events: a rename reaches the selectors at the next flow,
    not when the cached answer expires (a minute)."""
    ns = ContainerNet(net.a).add("c2", 3, OTHER_ID)
    a, b = start(net, PODMAN_RULES, runtime_api=podman.socket)
    parent = "/" + str(net.a.cgroup.path.relative_to(net.a.cgroup.mountpoint))
    url = f"http://{net.b.ip}:{SERVER_PORT + 1}/"
    b_http = net.b.popen("/usr/bin/python3", "-m", "http.server", SERVER_PORT + 1, "--bind", net.b.ip, cwd=net.tmp)
    net.b.wait_listening(SERVER_PORT + 1)
    # A new wget process every 0.3 s, each a new flow; its log says how each ended.
    loop = f"while :; do if /bin/busybox wget -q -O /dev/null {url}; then echo ok; else echo refused; fi; /bin/busybox sleep 0.3; done"
    cid = podman.start(ns, parent, "other-2", {}, "/bin/busybox", "sh", "-c", loop)

    def outcomes():
        return podman.podman("logs", cid).stdout.split()

    eventually(lambda: "ok" in outcomes(), lambda: f"the container's flows did not go through: {podman.podman('logs', cid).stderr[-300:]}", timeout=20)
    assert [d for d in b.decisions(direction="inbound") if d["source_id"] == OTHER], b.status()["decisions"]
    podman.podman("rename", cid, "stray-2")
    before = len(outcomes())
    eventually(lambda: "refused" in outcomes()[before + 1:],
               lambda: f"flows of the renamed container (now no rule's) still went through: {outcomes()[before:]}", timeout=10)
    denied = [d for d in a.decisions(direction="outbound") if d["verdict"] != "tunneled" and f"in container {cid[:12]}" in (d["process"] or "")]
    b_http.kill()
    assert denied, a.status()["decisions"]

