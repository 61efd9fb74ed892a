"""One process passing for another (procfs backend): a socket handed to another user's process
keeps its creator's identity, and an `exe` selector names a file, not a path a user can fake
in a mount namespace of her own; `sha256` names the file's content.

The workload binaries live in a directory of their own under /tmp (world-readable, removed
after each test): a setuid copy of `sleep`, copies of `bash`, and a user's own copies."""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from eventually import eventually
from hosts import SERVER_PORT, TRUST_DOMAIN, host_config

ALICE, BOB = f"spiffe://{TRUST_DOMAIN}/app/alice", f"spiffe://{TRUST_DOMAIN}/app/bob"
ALLOWED, HASHED = f"spiffe://{TRUST_DOMAIN}/tools/allowed", f"spiffe://{TRUST_DOMAIN}/tools/hashed"
# No [[workload]] rule names this uid: whatever identity its processes get comes from exe or sha256.
USER = 1004
# The test runner is in the initial network namespace, where the proc connector answers.
EVENTS = {"IDGATE_PROC_EVENTS_NETNS": f"/proc/{os.getpid()}/ns/net"}


@pytest.fixture
def bins():
    d = Path(tempfile.mkdtemp(prefix="idgate-ident-", dir="/tmp"))
    try:
        d.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d)


def start(net, name, host, extra="", env=None):
    return host.start_idgate(host_config(f"host-{name}", net.tmp / f"state-{name}", net.ca_dir, extra=extra), net.tmp, env=env)


def last_outbound(idg, before):
    """The outbound decision made after `before` decisions were there."""
    new = eventually(lambda: idg.decisions(direction="outbound")[before:], "a decision for the flow", timeout=10)
    assert len(new) == 1, new
    return new[0]


def euid(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])


def test_a_socket_inherited_by_a_setuid_program_keeps_its_creators_identity(net, bins):
    """Bob hands his socket to a setuid-alice program, whose exec makes it the workload idgate
    expects a flow from next, then connects from his own process: the flow is bob's."""
    setuid = bins / "sleep-alice"
    shutil.copy("/bin/sleep", setuid)
    os.chown(setuid, 1001, 1001)
    setuid.chmod(0o4755)
    a, b = start(net, "a", net.a, env=EVENTS), start(net, "b", net.b)
    assert a.status()["process_events"]["available"], "the test needs the process events (the expected-workload path)"
    bob = net.a.start_workload("pass_socket_to_setuid", setuid, net.b.ip, SERVER_PORT, uid=1002,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child = int(bob.stdout.readline())
        eventually(lambda: euid(child) == 1001 and Path(f"/proc/{child}/comm").read_text() == "sleep-alice\n", "the setuid program runs", timeout=10)
        # idgate saw it start as alice's workload (her SVID is minted ahead of her first flow).
        eventually(lambda: ALICE in [s["spiffe_id"] for s in a.status()["svids"]], "alice's workload prepared", timeout=10)
        before = len(a.decisions(direction="outbound"))
        bob.stdin.write("go\n")
        bob.stdin.flush()
        assert bob.wait(timeout=20) == 0
        assert json.loads(bob.stdout.readline())["got"] > 0
    finally:
        bob.kill()
    d = last_outbound(a, before)
    assert (d["source_id"], d["verdict"]) == (BOB, "tunneled"), f"bob's flow was attributed to {d['source_id']}: {d}"
    assert [x["source_id"] for x in b.decisions(direction="inbound")] == [BOB]


def test_a_socket_sent_to_another_users_workload_keeps_its_creators_identity(net):
    """Bob sends his socket (SCM_RIGHTS) to a process of alice's that idgate has just seen
    open a flow, then connects it himself: the flow is bob's, not alice's."""
    a, _b = start(net, "a", net.a), start(net, "b", net.b)
    theirs, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    procs = []
    try:
        alice = net.a.start_workload("fd_receiver", net.b.ip, SERVER_PORT, theirs.fileno(), uid=1001,
                                     pass_fds=[theirs.fileno()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(alice)
        assert alice.stdout.readline() == "ready\n"
        assert a.decisions(direction="outbound")[-1]["source_id"] == ALICE
        bob = net.a.start_workload("fd_sender", net.b.ip, SERVER_PORT, ours.fileno(), uid=1002,
                                   pass_fds=[ours.fileno()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(bob)
        theirs.close()
        ours.close()
        assert bob.stdout.readline() == "sent\n" and alice.stdout.readline().startswith("got ")
        before = len(a.decisions(direction="outbound"))
        bob.stdin.write("go\n")
        bob.stdin.flush()
        assert bob.wait(timeout=20) == 0
        assert json.loads(bob.stdout.readline())["got"] > 0
    finally:
        for p in procs:
            p.kill()
    d = last_outbound(a, before)
    assert (d["source_id"], d["verdict"]) == (BOB, "tunneled"), f"bob's flow was attributed to {d['source_id']}: {d}"


def bash_client(marker):
    """bash: one connection to the server carrying `marker` (no reply needed: the decision is
    what counts), with nothing but bash itself holding the socket (builtins only, no child)."""
    return f"exec 3<>/dev/tcp/10.77.0.2/{SERVER_PORT} && printf {marker} >&3 && read -t 0.3 -u 3; exit 0"


def user_dir(bins):
    d = bins / "user"
    d.mkdir()
    os.chown(d, USER, USER)
    return d


def user_copy(d, name, content):
    f = d / name
    f.write_bytes(content)
    os.chown(f, USER, USER)
    f.chmod(0o755)
    return f


def root_copy(path, content):
    """Written elsewhere and renamed into place, as a package manager replaces a binary."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(content)
    tmp.chmod(0o755)
    tmp.rename(path)
    return path


def run_faked(net, fake, real, marker):
    """As USER: a mount namespace of her own where `fake` is bind-mounted over `real`, then
    `real` (which now runs `fake`) connects."""
    script = f"mount --bind {fake} {real} && exec {real} -c '{bash_client(marker)}'"
    return net.a.run("unshare", "-Urm", "sh", "-c", script, uid=USER, check=False)


def skip_without_user_namespaces(net):
    r = net.a.run("unshare", "-Urm", "true", uid=USER, check=False)
    if r.returncode != 0:
        pytest.skip(f"the kernel forbids unprivileged user namespaces here (unshare -Urm as uid {USER}: {r.stderr.decode().strip()})")


def test_a_bind_mount_in_a_users_own_namespace_does_not_pass_for_an_exe(net, bins):
    """A user's own binary, bind-mounted over the configured path in a user and mount
    namespace of hers, runs with /proc/<pid>/exe reading that path: it must not get the
    identity of the file that is at the path on the host."""
    skip_without_user_namespaces(net)
    bash = Path("/bin/bash").read_bytes()
    real = root_copy(bins / "allowed", bash)
    fake = user_copy(user_dir(bins), "mine", bash)  # same bytes, her file: only the file's identity tells them apart
    extra = f'[[workload]]\nspiffe_id = "{ALLOWED}"\nexe = "{real}"\n'
    a, _ = start(net, "a", net.a, extra), start(net, "b", net.b)
    # The real file at the path gets the identity (so a refusal below means something).
    before = len(a.decisions(direction="outbound"))
    net.a.run(real, "-c", bash_client("real"), uid=USER)
    d = last_outbound(a, before)
    assert (d["source_id"], d["verdict"]) == (ALLOWED, "tunneled"), d
    before = len(a.decisions(direction="outbound"))
    r = run_faked(net, fake, real, "faked")
    d = last_outbound(a, before)
    assert d["process"].startswith(f"{real}("), f"the faked process should read as the configured path: {d} ({r.stderr!r})"
    assert d["source_id"] is None and d["verdict"] == "denied_no_identity", f"a bind-mounted look-alike got {d['source_id']}: {d}"


def test_an_exe_selector_follows_the_file_that_replaces_it(net, bins):
    """A package upgrade renames a new binary over the configured path: new processes get the
    identity at once (no reload); a process still running the replaced file does not."""
    bash = Path("/bin/bash").read_bytes()
    real = root_copy(bins / "allowed", bash)
    extra = f'[[workload]]\nspiffe_id = "{ALLOWED}"\nexe = "{real}"\n'
    a, _ = start(net, "a", net.a, extra), start(net, "b", net.b)
    old = net.a.popen(real, "-c", f"read go; {bash_client('old')}", uid=USER, stdin=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)  # it runs the first file
        root_copy(real, bash + b"\n# upgraded\n")
        before = len(a.decisions(direction="outbound"))
        net.a.run(real, "-c", bash_client("new"), uid=USER)
        d = last_outbound(a, before)
        assert (d["source_id"], d["verdict"]) == (ALLOWED, "tunneled"), f"the new binary at the path: {d}"
        before = len(a.decisions(direction="outbound"))
        old.stdin.write("go\n")
        old.stdin.flush()
        old.wait(timeout=20)
        d = last_outbound(a, before)
        assert d["process"].startswith(f"{real} (deleted)("), d
        assert d["source_id"] is None and d["verdict"] == "denied_no_identity", f"the replaced binary kept the identity: {d}"
    finally:
        old.kill()


def test_a_sha256_selector_names_content_wherever_it_runs_from(net, bins):
    """`sha256` matches the executable's content, read through the process (a copy anywhere,
    even the user's own, or a path replaced since it started), and nothing else: not a
    different binary bind-mounted over a file with that content."""
    skip_without_user_namespaces(net)
    bash = Path("/bin/bash").read_bytes()
    content = bash + b"\n# the hashed build\n"  # trailing bytes: still the same program
    digest = hashlib.sha256(content).hexdigest()
    hashed = root_copy(bins / "hashed", content)
    home = user_dir(bins)
    mine = user_copy(home, "copy-of-hashed", content)
    other = user_copy(home, "plain-bash", bash)
    extra = f'[[workload]]\nspiffe_id = "{HASHED}"\nsha256 = "{digest}"\n'
    a, _ = start(net, "a", net.a, extra), start(net, "b", net.b)

    def flow(*cmd):
        before = len(a.decisions(direction="outbound"))
        net.a.run(*cmd, uid=USER, check=False)
        d = last_outbound(a, before)
        return d["source_id"], d["verdict"]

    assert flow(hashed, "-c", bash_client("root-copy")) == (HASHED, "tunneled")
    assert flow(mine, "-c", bash_client("users-copy")) == (HASHED, "tunneled"), "the same content at another path"
    assert flow(other, "-c", bash_client("other")) == (None, "denied_no_identity")
    before = len(a.decisions(direction="outbound"))
    run_faked(net, other, hashed, "faked")
    d = last_outbound(a, before)
    assert (d["source_id"], d["verdict"]) == (None, "denied_no_identity"), f"another binary over the hashed path: {d}"
    # The path replaced under a running process: it still runs the hashed content.
    running = net.a.popen(hashed, "-c", f"read go; {bash_client('running')}", uid=USER, stdin=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)
        root_copy(hashed, bash)
        before = len(a.decisions(direction="outbound"))
        running.stdin.write("go\n")
        running.stdin.flush()
        running.wait(timeout=20)
        d = last_outbound(a, before)
        assert (d["source_id"], d["verdict"]) == (HASHED, "tunneled"), d
    finally:
        running.kill()
