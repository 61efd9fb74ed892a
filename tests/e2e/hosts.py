"""Config text for the test and demo hosts, and the workload programs they run."""

TRUST_DOMAIN = "demo.idgate"
SERVER_PORT = 9000


def host_config(host, state_dir, ca_dir=None, mode="strict", ttl="1h", extra=""):
    ca = (
        f'[ca]\nsource = "files"\ncert = "{ca_dir}/ca.pem"\nkey = "{ca_dir}/ca-key.pem"\n'
        if ca_dir
        else '[ca]\nsource = "embedded"\n'
    )
    return f"""
trust_domain = "{TRUST_DOMAIN}"
hostname = "{host}"
state_dir = "{state_dir}"
mode = "{mode}"
default_action = "deny"

{ca}
[svid]
ttl = "{ttl}"

[[workload]]
spiffe_id = "spiffe://{TRUST_DOMAIN}/app/alice"
uid = 1001

[[workload]]
spiffe_id = "spiffe://{TRUST_DOMAIN}/app/bob"
uid = 1002

[[workload]]
spiffe_id = "spiffe://{TRUST_DOMAIN}/app/mallory"
uid = 1003

[[workload]]
spiffe_id = "spiffe://{TRUST_DOMAIN}/tools/curl"
exe = "/usr/bin/curl"

[[outbound]]
cidrs = ["10.77.0.0/24"]
ports = [8080, "9000-9100"]

[[inbound]]
ports = ["{SERVER_PORT}-{SERVER_PORT + 10}", 8080]
allow = ["spiffe://{TRUST_DOMAIN}/app/alice", "spiffe://{TRUST_DOMAIN}/app/bob", "spiffe://{TRUST_DOMAIN}/tools/*"]
{extra}
"""


# A TCP server: for each connection, read until EOF, then answer with the sha256 of what it
# got, followed by `reply_bytes` of a deterministic pattern. Logs one line per connection.
SERVER = r"""
import hashlib, socket, sys, threading
port, reply_bytes, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(128)
def pattern(n):
    block = bytes(range(256)) * 256
    out = bytearray()
    while len(out) < n: out += block
    return bytes(out[:n])
def serve(c, addr):
    h = hashlib.sha256(); n = 0
    while True:
        b = c.recv(1 << 16)
        if not b: break
        h.update(b); n += len(b)
    with open(log, "a") as f: f.write(f"{addr[0]} {n}\n")
    try: c.sendall(h.hexdigest().encode() + b"\n" + pattern(reply_bytes))
    except OSError: pass
    c.close()
while True:
    c, addr = s.accept()
    threading.Thread(target=serve, args=(c, addr), daemon=True).start()
"""

# A client: send `n` bytes (random, with a marker at the start), half-close, read the answer,
# print JSON with what it sent and what it received.
CLIENT = r"""
import hashlib, json, os, socket, sys
host, port, n, marker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
data = marker + os.urandom(max(0, n - len(marker)))
s = socket.create_connection((host, port), timeout=20)
s.sendall(data); s.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    b = s.recv(1 << 16)
    if not b: break
    got += b
digest, _, body = bytes(got).partition(b"\n")
print(json.dumps({"sent_sha": hashlib.sha256(data).hexdigest(), "echo_sha": digest.decode(), "body_len": len(body),
                  "body_sha": hashlib.sha256(body).hexdigest(), "pid": os.getpid()}))
"""


def pattern_sha(n):
    import hashlib
    block = bytes(range(256)) * 256
    out = bytearray()
    while len(out) < n:
        out += block
    return hashlib.sha256(bytes(out[:n])).hexdigest()
