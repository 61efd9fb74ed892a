"""HTTP/2 with prior knowledge, by hand (curl cannot send request trailers): a POST of "hello"
to HOST:PORT whose trailers follow in a HEADERS frame; field blocks are HPACK literals without
indexing. Prints the response body.

Usage: h2c_trailers.py HOST PORT AUTHORITY PATH HEADERS_JSON TRAILERS_JSON"""
import json
import socket
import struct
import sys

host, port, authority, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
headers, trailers = json.loads(sys.argv[5]), json.loads(sys.argv[6])


def block(fields):
    out = b""
    for k, v in fields:
        k, v = k.lower().encode(), v.encode()
        assert len(k) < 127 and len(v) < 127
        out += b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v
    return out


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


s = socket.create_connection((host, port), timeout=20)
request = [(":method", "POST"), (":scheme", "http"), (":authority", authority), (":path", path), *headers.items()]
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 4, 1, block(request))
          + frame(0, 0, 1, b"hello") + frame(1, 5, 1, block(trailers.items())))
buf, body, done = b"", b"", False
while not done:
    while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
        b = s.recv(65536)
        if not b:
            raise EOFError(f"closed; body so far {body!r}")
        buf += b
    n, kind, flags, stream = int.from_bytes(buf[:3], "big"), buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff
    payload, buf = buf[9:9 + n], buf[9 + n:]
    if kind == 4 and not flags & 1:
        s.sendall(frame(4, 1, 0, b""))  # SETTINGS ack
    elif kind == 0 and stream == 1:
        body += payload
        done = bool(flags & 1)
    elif kind == 1 and stream == 1:
        done = bool(flags & 1)
    elif kind in (3, 7):
        raise RuntimeError(f"reset or GOAWAY: {payload.hex()}")
print(body.decode())
