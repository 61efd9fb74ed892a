"""A stop drains: flows that end within the drain finish normally, and a flow still open when
the drain ends is reset at both ends, so that neither the client nor the server takes a cut
stream for a complete one (a plain EOF would look like the end of a response)."""
import json
import subprocess
import time

import pytest

from eventually import eventually
from test_tunnel import start_pair

PORT = 9007


@pytest.mark.parametrize("stopped", ["client host", "server host"])
def test_a_flow_open_when_the_drain_ends_is_reset_at_both_ends(net, stopped):
    a, b = start_pair(net)
    log = net.tmp / "holding.log"
    net.b.start_workload("greeting_server", PORT, log)
    net.b.wait_listening(PORT)
    # The client reads to the end of the stream, as a client of a response without a length does.
    reader = net.a.start_workload("greeted_client", net.b.ip, PORT, uid=1001, stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "connected"
    t0 = time.time()
    assert (a if stopped == "client host" else b).terminate() == 0
    stop_took = time.time() - t0
    got = json.loads(reader.stdout.readline())
    eventually(lambda: log.exists() and log.read_text().strip(), "the server's end of the flow closed", timeout=10, interval=0.1)
    server_saw = log.read_text().split()
    print(f"stop of the {stopped}'s idgate with a flow open: took {stop_took:.1f} s; client saw {got['how']}, server saw {server_saw}")
    assert got["first"] == "hello\n", got
    # Reset, not a clean end of stream, at both ends.
    assert got["how"] == "ConnectionResetError", got
    assert server_saw == ["ConnectionResetError"], server_saw
