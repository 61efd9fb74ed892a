"""A stop drains: flows that end within the drain finish normally, and a flow still open when
the drain ends is reset at both ends, so that neither the client nor the server takes a cut
stream for a complete one (a plain EOF would look like the end of a response)."""
import json
import subprocess
import time

import pytest

from test_tunnel import start_pair

PORT = 9007

# The server answers "hello", then reads until the stream ends; logs how it ended.
HOLDING_SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
def serve(c):
    how = "eof"
    try:
        c.sendall(b"hello\n")
        while c.recv(4096): pass
    except OSError as e:
        how = type(e).__name__
    with open(sys.argv[2], "a") as f: f.write(how + "\n")
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# The client reads to the end of the stream, as a client of a response without a length does.
READER = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
first = s.recv(6)
print("connected", flush=True)
t0, how = time.time(), "eof"
try:
    while s.recv(4096): pass
except OSError as e:
    how = type(e).__name__
print(json.dumps({"first": first.decode(), "how": how, "after": time.time() - t0}), flush=True)
"""


@pytest.mark.parametrize("stopped", ["client host", "server host"])
def test_a_flow_open_when_the_drain_ends_is_reset_at_both_ends(net, stopped):
    a, b = start_pair(net)
    log = net.tmp / "holding.log"
    net.b.popen("/usr/bin/python3", "-c", HOLDING_SERVER, PORT, log)
    net.b.run("sh", "-c", f"for i in $(seq 100); do ss -ltn | grep -q ':{PORT} ' && exit 0; sleep 0.05; done; exit 1")
    reader = net.a.popen("/usr/bin/python3", "-c", READER, net.b.ip, PORT, uid=1001, stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "connected"
    t0 = time.time()
    assert (a if stopped == "client host" else b).terminate() == 0
    stop_took = time.time() - t0
    got = json.loads(reader.stdout.readline())
    deadline = time.time() + 10
    while not log.exists() or not log.read_text().strip():
        assert time.time() < deadline, "the server's end of the flow stayed open"
        time.sleep(0.1)
    server_saw = log.read_text().split()
    print(f"stop of the {stopped}'s idgate with a flow open: took {stop_took:.1f} s; client saw {got['how']}, server saw {server_saw}")
    assert got["first"] == "hello\n", got
    # Reset, not a clean end of stream, at both ends.
    assert got["how"] == "ConnectionResetError", got
    assert server_saw == ["ConnectionResetError"], server_saw
