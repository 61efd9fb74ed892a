"""Constant load: connects to each of TARGETS (comma-separated addresses) on PORT in turn,
every 20 ms, until SIGUSR1 (or one round with "once"); each connection sends 100 bytes,
half-closes and needs an answer of at least 64 bytes (digest_server.py's). Prints JSON: how
many worked, how many failed, and each failure ("<time> <target> <error>").

Usage: load_loop.py TARGETS PORT TIMEOUT [once]"""
import json
import signal
import socket
import sys
import time

targets, port, timeout, once = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:] == ["once"]
ok, errors, stop = 0, [], []
signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))
while not stop:
    for t in targets:
        try:
            s = socket.create_connection((t, port), timeout=timeout)
            s.sendall(b"x" * 100)
            s.shutdown(socket.SHUT_WR)
            if len(s.recv(100)) < 64:
                raise OSError("short answer")
            s.close()
            ok += 1
        except OSError as e:
            errors.append(f"{time.time():.3f} {t} {e!r}")
    if once:
        break
    time.sleep(0.02)
print(json.dumps({"ok": ok, "failed": len(errors), "errors": errors}))
