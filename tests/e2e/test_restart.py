"""A restart refuses no connection: idgate hands its listeners to the service manager's file
descriptor store and gets them back at the next start, so connections made while no idgate
runs wait in the listeners' backlog and are served when it is back. The service manager is
played by the test, speaking systemd's protocol (FDSTORE=1 with SCM_RIGHTS, FDSTOREREMOVE=1,
LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID); the control run ignores FDSTORE, as a unit without
FileDescriptorStoreMax= does, and sees the refusals that the store prevents."""
import array
import json
import os
import socket
import subprocess
import threading
import time

from hosts import host_config
from netns import IDGATE, Idgate


class ServiceManager:
    """The part of systemd a restart involves: the notify socket and the fd store."""

    def __init__(self, tmp, keep_fds):
        self.keep_fds, self.store, self.ready = keep_fds, {}, threading.Event()
        self.path = str(tmp / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.running:
            try:
                msg, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(64 * 4))
            except TimeoutError:
                continue
            fds = array.array("i")
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            fields = dict(line.split("=", 1) for line in msg.decode().splitlines() if "=" in line)
            if fields.get("FDSTORE") == "1" and self.keep_fds:
                for fd in fds:
                    self.store.setdefault(fields.get("FDNAME", "stored"), []).append(fd)
            else:
                for fd in fds:
                    os.close(fd)
            if fields.get("FDSTOREREMOVE") == "1":
                for fd in self.store.pop(fields.get("FDNAME", ""), []):
                    os.close(fd)
            if fields.get("READY") == "1":
                self.ready.set()

    def start(self, host, config, log):
        """Starts idgate with the stored descriptors at 3, 4, ... as systemd passes them."""
        names = [n for n, fds in self.store.items() for _ in fds]
        fds = [fd for fds in self.store.values() for fd in fds]
        env = dict(os.environ, NOTIFY_SOCKET=self.path, RUST_LOG="info", NO_COLOR="1")
        if fds:
            env.update(LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(names))

        def place():
            high = [os.dup(fd) for fd in fds]  # out of the way of 3.. first
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i)  # dup2 leaves the new descriptor inheritable
        self.ready.clear()
        logf = open(log, "w")
        # LISTEN_PID names the process the descriptors are for: idgate's (exec keeps the pid).
        cmd = f'LISTEN_PID=$$ exec {IDGATE} run -c {config}' if fds else f'exec {IDGATE} run -c {config}'
        proc = subprocess.Popen(host.cmd("/bin/sh", "-c", cmd), env=env, stdout=logf, stderr=logf,
                                close_fds=False, preexec_fn=place)
        host.procs.append(proc)
        assert self.ready.wait(20), open(log).read()
        return Idgate(host, proc, log, config)

    def close(self):
        self.running = False
        self.thread.join()
        for fds in self.store.values():
            for fd in fds:
                os.close(fd)


def restart_under_load(net, keep_fds):
    b_cfg = host_config("host-b", net.tmp / "state-b", net.ca_dir)
    net.b.start_idgate(b_cfg, net.tmp)
    cfg = net.tmp / "a.toml"
    cfg.write_text(host_config("host-a", net.tmp / "state-a", net.ca_dir))
    manager = ServiceManager(net.tmp, keep_fds)
    try:
        a = manager.start(net.a, cfg, net.tmp / "a-1.log")
        stored = sum(len(v) for v in manager.store.values())
        # New connections through idgate, one every 20 ms, until SIGUSR1: each sends 100 bytes
        # and waits for the answer.
        load = net.a.start_workload("load_loop", net.b.ip, 9000, 15, uid=1001, stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        # `systemctl restart`: stop (SIGTERM, the process exits), then start again.
        a.proc.terminate()
        a.proc.wait(timeout=20)
        time.sleep(0.5)  # a restart's gap, made long enough for connections to arrive in it
        manager.start(net.a, cfg, net.tmp / "a-2.log")
        time.sleep(1.5)
        load.send_signal(10)  # SIGUSR1
        result = json.loads(load.communicate(timeout=60)[0])
        return stored, result, manager.store
    finally:
        manager.close()


def test_a_restart_refuses_no_connection(net):
    stored, result, store = restart_under_load(net, keep_fds=True)
    print(f"restart with the fd store: {result['ok']} connections served, {result['failed']} failed; {stored} listeners stored")
    assert stored >= 3, store  # capture (IPv4, maybe IPv6), tunnel and admin listeners
    assert result["errors"] == [] and result["ok"] > 50, result
    # The second process adopted the stored listeners and stored nothing new.
    assert sum(len(v) for v in store.values()) == stored, store


def test_without_the_store_a_restart_refuses_connections(net):
    _, result, _ = restart_under_load(net, keep_fds=False)
    print(f"restart without the fd store: {result['ok']} connections served, {result['failed']} failed")
    assert any("ConnectionRefused" in e for e in result["errors"]), result
