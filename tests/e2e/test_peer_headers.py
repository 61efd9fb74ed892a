"""What an authenticated peer sends about its flows is bounded: the flow id and process
description it attaches to each CONNECT are kept only within limits, the header list is capped,
and streams it is refused do not write one trail line each. The peer here is a hand-written
HTTP/2 client holding a valid workload certificate of the trust domain."""
import json
import subprocess
import time

from hosts import TRUST_DOMAIN, host_config
from netns import IDGATE

# argv: cert key host port authority flow-id-len process-len streams -> runs `streams` CONNECT
# streams (stream ids 1, 3, ...) carrying an x-idgate-flow and x-idgate-process of the given
# lengths, reading whatever comes back for a moment; prints the frame types seen.
PEER = r"""
import json, socket, ssl, struct, sys, time
cert, key, host, port, authority, flow_len, process_len, streams = sys.argv[1:9]
flow_len, process_len, streams = int(flow_len), int(process_len), int(streams)
def integer(n, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([first | n])
    out, n = bytearray([first | limit]), n - limit
    while n >= 128:
        out.append(n % 128 + 128); n //= 128
    out.append(n)
    return bytes(out)
def literal(k, v):
    k, v = k.encode(), v.encode()
    return b"\x00" + integer(len(k), 7) + k + integer(len(v), 7) + v
def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10))
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
seen = set()
closed = False
for i in range(streams):
    block = (literal(":method", "CONNECT") + literal(":authority", authority)
             + literal("x-idgate-flow", "f" * flow_len) + literal("x-idgate-process", "p" * process_len))
    pieces = [block[j:j + 16384] for j in range(0, len(block), 16384)]
    sid = 2 * i + 1
    out = b""
    for n, piece in enumerate(pieces):
        last = n == len(pieces) - 1
        out += frame(1 if n == 0 else 9, (4 if last else 0) | (1 if n == 0 else 0), sid, piece)
    try:
        s.sendall(out)
    except OSError:
        closed = True  # the server ended the connection
        break
    if i % 20 == 19:
        time.sleep(0.05)
s.settimeout(1)
buf = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        buf += b
except (socket.timeout, ssl.SSLError, OSError):
    pass
while len(buf) >= 9:
    n = int.from_bytes(buf[:3], "big")
    seen.add(buf[3])
    buf = buf[9 + n:]
print(json.dumps({"frames": sorted(seen), "closed_while_sending": closed}))
"""


def peer_certificate(net, sid):
    """A workload certificate for `sid` under the test CA, as another idgate host would hold."""
    d = net.tmp / "peer"
    d.mkdir(exist_ok=True)
    (d / "ext").write_text(f"subjectAltName = URI:{sid}\nbasicConstraints = critical, CA:FALSE\n"
                           "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth, clientAuth\n")
    ossl = lambda *a: subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True, cwd=d)
    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.pem")
    ossl("req", "-new", "-key", "key.pem", "-subj", "/CN=peer", "-out", "req.csr")
    ossl("x509", "-req", "-in", "req.csr", "-CA", net.ca_dir / "ca.pem", "-CAkey", net.ca_dir / "ca-key.pem",
         "-CAcreateserial", "-days", "1", "-extfile", "ext", "-out", "cert.pem")
    return d / "cert.pem", d / "key.pem"


def peer(net, authority, flow_len, process_len, streams=1):
    cert, key = peer_certificate(net, f"spiffe://{TRUST_DOMAIN}/app/alice")
    r = net.a.run("/usr/bin/python3", "-c", PEER, cert, key, net.b.ip, 15008, authority, flow_len, process_len, streams,
                  check=False, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-1000:]
    return r.stdout.decode()


def inbound_decisions(b):
    return [d for d in b.status()["decisions"] if d["direction"] == "inbound"]


def test_a_peers_flow_id_and_process_are_kept_within_bounds_and_the_header_list_is_capped(net):
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    # Under the header list cap: the flow id is too long to keep, the description is cut.
    peer(net, f"{net.b.ip}:9000", 1000, 8000)
    time.sleep(0.3)
    [d] = inbound_decisions(b)
    problems = []  # all of them at once
    kept = {"flow": len(d["flow"]), "process": len(d["process"] or "")}
    if kept["flow"] > 128 or kept["process"] > 1100:
        problems.append(f"kept what the peer sent: {kept}")
    # Over it: 200 KB of process description (in 13 frames) never reaches a decision, the
    # trail or status.
    peer(net, f"{net.b.ip}:9000", 10, 200_000)
    time.sleep(0.3)
    status = len(json.dumps(b.status()))
    if status > 100_000:
        problems.append(f"status holds {status} bytes after a peer's 200 KB header")
    if "p" * 20_000 in b.log.read_text():
        problems.append("the log holds the peer's 200 KB header")
    assert problems == [] and b.proc.poll() is None, problems


def test_refused_streams_do_not_write_a_trail_line_each(net):
    b = net.b.start_idgate(host_config("host-b", net.tmp / "state-b", net.ca_dir), net.tmp)
    # Port 1 is not one alice may reach: every stream is refused (403).
    peer(net, f"{net.b.ip}:1", 10, 10, streams=300)
    deadline = time.time() + 15
    while time.time() < deadline and "more refused tunnel streams" not in b.log.read_text():
        time.sleep(0.5)
    text = b.log.read_text()
    records = [l for l in text.splitlines() if "idgate::trail" in l and '"direction":"inbound"' in l and '"verdict":"denied"' in l]
    assert len(records) <= 100, f"{len(records)} trail lines for 300 refused streams"
    assert "more refused tunnel streams" in text, "the refused streams beyond the budget were not summed up"
