"""A hand-written HTTP/2 peer holding a workload certificate: over TLS (CERT, KEY) to
HOST:PORT, sends STREAMS CONNECT streams (ids 1, 3, ...) to AUTHORITY, each carrying an
x-idgate-flow of FLOW_LEN bytes and an x-idgate-process of PROCESS_LEN bytes (header blocks
over 16 KB go out in CONTINUATION frames), then reads whatever comes back for a moment.
Prints JSON: the frame types seen and whether the server ended the connection while it sent.

Usage: h2_connect_peer.py CERT KEY HOST PORT AUTHORITY FLOW_LEN PROCESS_LEN STREAMS"""
import json
import socket
import ssl
import struct
import sys
import time

cert, key, host, port, authority = sys.argv[1:6]
flow_len, process_len, streams = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])


def integer(n, prefix_bits, first=0):
    """An HPACK integer with a prefix of `prefix_bits` bits."""
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([first | n])
    out, n = bytearray([first | limit]), n - limit
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def literal(k, v):
    """An HPACK literal header field without indexing."""
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
        # HEADERS (END_STREAM) then CONTINUATIONs; END_HEADERS on the last piece.
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
except (TimeoutError, ssl.SSLError, OSError):
    pass
while len(buf) >= 9:
    n = int.from_bytes(buf[:3], "big")
    seen.add(buf[3])
    buf = buf[9 + n:]
print(json.dumps({"frames": sorted(seen), "closed_while_sending": closed}))
