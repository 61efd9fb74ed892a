"""Connects to HOST:PORT every PERIOD seconds for DURATION seconds; each connection sends
MARKER, half-closes and reads the answer to its end. Prints a JSON summary: how many
connections completed, how many failed and with which errors."""
import json
import socket
import sys
import time

host, port, duration, period, marker = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
ok, errors = 0, {}
end = time.monotonic() + duration
while time.monotonic() < end:
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(marker.encode())
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        ok += 1
    except OSError as e:
        name = type(e).__name__
        errors[name] = errors.get(name, 0) + 1
    time.sleep(max(0.0, period - (time.monotonic() - started)))
print(json.dumps({"ok": ok, "failed": sum(errors.values()), "errors": errors}))
