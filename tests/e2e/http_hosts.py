"""Hosts, configs, certificates and workload programs for the HTTP-aware path (test_http.py).

Topology (namespaces prefixed `idh`, so they never clash with the `idg` ones of other tests):
  a 10.77.0.1  workloads + idgate (outbound: HTTP rules, JWT-SVIDs, TLS origination)
  b 10.77.0.2  idgate (inbound, identity header) + idgate-test-httpd on 8080 and 8081; 8082 closed
  c 10.77.0.3  idgate-test-httpd over HTTPS: 443 (cert for api.example.com), 8443 (wrong.example.com)
"""
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from hosts import TRUST_DOMAIN
from netns import IDGATE, REPO, Topology

HTTPD = Path(os.environ.get("IDGATE_HTTPD_BIN", REPO / "target" / "release" / "idgate-test-httpd"))

ALICE = f"spiffe://{TRUST_DOMAIN}/app/alice"
BOB = f"spiffe://{TRUST_DOMAIN}/app/bob"
MALLORY = f"spiffe://{TRUST_DOMAIN}/app/mallory"
CAROL = f"spiffe://{TRUST_DOMAIN}/app/carol"
UIDS = {ALICE: 1001, BOB: 1002, MALLORY: 1003, CAROL: 1004}
B_SERVER_ID = f"spiffe://{TRUST_DOMAIN}/idgate/host/host-b"  # default: .../idgate/host/<hostname>
JWT_TTL = 10  # seconds; the minimum idgate allows, so re-minting (at half life) is testable
JWT_AUDIENCE = "billing"
ENV_VAR = "IDGATE_TEST_ENV_TOKEN"

WORKLOADS = "".join(f'[[workload]]\nspiffe_id = "{sid}"\nuid = {uid}\n\n' for sid, uid in UIDS.items())


def config_a(state_dir, ca_dir, secrets_dir, tls_dir):
    return f"""
trust_domain = "{TRUST_DOMAIN}"
hostname = "host-a"
state_dir = "{state_dir}"
mode = "strict"
default_action = "deny"

[ca]
source = "files"
cert = "{ca_dir}/ca.pem"
key = "{ca_dir}/ca-key.pem"

[listen]
admin = "0.0.0.0:15000"  # verifiers on other hosts fetch the JWKS

[trail]
file = "{state_dir}/trail.jsonl"

[http]
identity_header = "x-forwarded-client-cert"
identity_format = "xfcc"
jwt_ttl = "{JWT_TTL}s"

{WORKLOADS}
# 8080, 8081: idgate-test-httpd on b; 8082: nothing listens there; 8083: a server that
# closes every connection after one answer (started by its test).
[[outbound]]
cidrs = ["10.77.0.2/32"]
ports = [8080, 8081, 8082, 8083]
protocol = "http"

# b:8084 is known by two names. Its rule is bound to one of them and to a path: naming the
# other, the address, or another spelling of the path must not let a workload forge its header.
[[outbound]]
cidrs = ["10.77.0.2/32"]
ports = [8084]
protocol = "http"
hosts = ["api.b.test", "alias.b.test"]

[[http_rule]]
name = "v2-caller"
source = "{ALICE}"
host = "api.b.test"
path_prefix = "/inspect/v2/"
set = {{ "x-v2-caller" = "${{spiffe_id}}" }}

# The workload speaks plain HTTP to c:80; idgate originates TLS to c:443 (right certificate).
[[outbound]]
cidrs = ["10.77.0.3/32"]
ports = [80]
protocol = "http"
tls = {{ server_name = "api.example.com", port = 443, ca_bundle = "{tls_dir}/ca.pem" }}

# c:81 -> c:8443, whose certificate is for wrong.example.com.
[[outbound]]
cidrs = ["10.77.0.3/32"]
ports = [81]
protocol = "http"
tls = {{ server_name = "api.example.com", port = 8443, ca_bundle = "{tls_dir}/ca.pem" }}

[[http_rule]]
name = "alice-token"
source = "{ALICE}"
host = "10.77.0.2"
ports = [8080]
path_prefix = "/"
set = {{ authorization = "Bearer ${{file:{secrets_dir}/alice-token}}", "x-caller" = "${{spiffe_id}}" }}
append = {{ via = "idgate" }}
remove = ["cookie"]

[[http_rule]]
source = "{BOB}"
ports = [8080]
set = {{ authorization = "Bearer ${{file:{secrets_dir}/bob-token}}", "x-caller" = "${{spiffe_id}}" }}

# Any identified workload, one path only.
[[http_rule]]
ports = [8080]
path_prefix = "/inspect/env"
set = {{ "x-env-token" = "${{env:{ENV_VAR}}}" }}

[[http_rule]]
source = "spiffe://{TRUST_DOMAIN}/app/*"
ports = [8081]
set = {{ authorization = "Bearer ${{jwt_svid:{JWT_AUDIENCE}}}" }}

[[http_rule]]
source = "{ALICE}"
ports = [80, 81]
set = {{ authorization = "Bearer ${{file:{secrets_dir}/api-token}}" }}

# Bound by name: only flows to the destination known as api.example.com (c:80, by its TLS
# server name) carry it, whatever Host header a workload writes on other flows.
[[http_rule]]
source = "{ALICE}"
host = "api.example.com"
set = {{ "x-api-key" = "${{file:{secrets_dir}/api-token}}" }}
"""


def config_b(state_dir, ca_dir):
    return f"""
trust_domain = "{TRUST_DOMAIN}"
hostname = "host-b"
state_dir = "{state_dir}"
mode = "strict"
default_action = "deny"

[ca]
source = "files"
cert = "{ca_dir}/ca.pem"
key = "{ca_dir}/ca-key.pem"

[http]
identity_header = "x-forwarded-client-cert"
identity_format = "xfcc"

{WORKLOADS}
[[outbound]]
cidrs = ["10.77.0.1/32"]
ports = [8080]

[[inbound]]
ports = [8080, 8081, 8082, 8083, 8084]
allow = ["{ALICE}", "{BOB}", "{CAROL}"]
protocol = "http"
"""


def make_tls(d: Path):
    """A P-256 CA, and leaf certificates for api.example.com and wrong.example.com."""
    d.mkdir(parents=True, exist_ok=True)

    def ossl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, cwd=d)

    (d / "ca.cnf").write_text(
        "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\nbasicConstraints = critical, CA:TRUE\n"
        "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
    )
    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca-key.pem")
    ossl("req", "-x509", "-new", "-key", "ca-key.pem", "-subj", "/CN=idgate test external CA", "-days", "2",
         "-config", "ca.cnf", "-extensions", "v3_ca", "-out", "ca.pem")
    for name in ("api.example.com", "wrong.example.com"):
        (d / f"{name}.ext").write_text(
            f"subjectAltName = DNS:{name}\nbasicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
        )
        ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}-key.pem")
        ossl("req", "-new", "-key", f"{name}-key.pem", "-subj", f"/CN={name}", "-config", "ca.cnf", "-out", f"{name}.csr")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return d


def write_secret(path: Path, value: str, atomic=False):
    """Root-owned, mode 0600, with a trailing newline (idgate trims it)."""
    target = path.with_name(path.name + ".new") if atomic else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(target, 0o600)
    if atomic:
        os.rename(target, path)


class Httpd:
    """idgate-test-httpd in a host's namespace; stdout (one line per request) goes to a log."""

    def __init__(self, host, listen, log: Path, tls=None):
        self.log = log
        args = [HTTPD, "--listen", listen]
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.out = open(log, "w")
        self.err = open(log.with_suffix(".err"), "w")
        self.proc = host.popen(*args, stdout=self.out, stderr=self.err)
        deadline = time.time() + 10
        while "listening on" not in log.read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"idgate-test-httpd {listen} did not start: {log.with_suffix('.err').read_text()}")
            time.sleep(0.02)

    def requests(self):
        """[(method, path, version, peer)] in arrival order."""
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("request "):
                _, method, path, version, _, peer = line.split(" ")
                out.append((method, path, version, peer))
        return out

    def paths(self):
        return [r[1] for r in self.requests()]


class HttpNet:
    def __init__(self, tmp: Path):
        if not HTTPD.exists():
            pytest.fail(f"{HTTPD} is missing: cargo build --release -p idgate-test-httpd", pytrace=False)
        self.tmp = tmp
        os.chmod(tmp, 0o755)
        # Its own prefix (h after the run's), so it never clashes with the other tests' hosts.
        self.topo = Topology(prefix=os.environ.get("IDGATE_NETNS_PREFIX", "id") + "h")
        self.a = self.topo.add_host("a", 1)
        self.b = self.topo.add_host("b", 2)
        self.c = self.topo.add_host("c", 3)
        self.ca_dir = tmp / "ca"
        subprocess.run([str(IDGATE), "ca-init", "--dir", str(self.ca_dir), "--trust-domain", TRUST_DOMAIN],
                       check=True, capture_output=True)
        self.tls_dir = make_tls(tmp / "tls")
        self.secrets_dir = tmp / "secrets"
        self.secrets_dir.mkdir(mode=0o700)
        # Every secret value handed to idgate, rotated ones included: none may show up in logs.
        self.secret_values = []
        self.tokens = {}
        for name in ("alice", "bob", "api"):
            self.set_token(name, f"{name}-secret-{secrets.token_hex(12)}")
        self.env_token = f"env-secret-{secrets.token_hex(12)}"
        self.secret_values.append(self.env_token)
        self.jwts = []  # every JWT-SVID a server received

        self.b8080 = Httpd(self.b, "0.0.0.0:8080", tmp / "httpd-b8080.log")
        self.b8081 = Httpd(self.b, "0.0.0.0:8081", tmp / "httpd-b8081.log")
        self.b8084 = Httpd(self.b, "0.0.0.0:8084", tmp / "httpd-b8084.log")
        t = self.tls_dir
        self.c443 = Httpd(self.c, "0.0.0.0:443", tmp / "httpd-c443.log", (t / "api.example.com.pem", t / "api.example.com-key.pem"))
        self.c8443 = Httpd(self.c, "0.0.0.0:8443", tmp / "httpd-c8443.log", (t / "wrong.example.com.pem", t / "wrong.example.com-key.pem"))

        saved = {k: os.environ.get(k) for k in ("RUST_LOG", ENV_VAR)}
        os.environ.update(RUST_LOG="debug", **{ENV_VAR: self.env_token})
        try:
            self.idgate_a = self.a.start_idgate(config_a(tmp / "state-a", self.ca_dir, self.secrets_dir, self.tls_dir), tmp)
            os.environ.pop(ENV_VAR)
            self.idgate_b = self.b.start_idgate(config_b(tmp / "state-b", self.ca_dir), tmp)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def set_token(self, name, value, atomic=False):
        write_secret(self.secrets_dir / f"{name}-token", value, atomic=atomic)
        self.tokens[name] = value
        self.secret_values.append(value)

    def cleanup(self):
        self.topo.cleanup()


# Shared by the workload programs below (they run as a workload uid, with /usr/bin/python3).
WL_LIB = r"""
import base64, hashlib, http.client, json, os, socket, sys, threading, time

class Conn:
    def __init__(self, host, port, timeout=30):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
    def fill(self):
        b = self.s.recv(1 << 16)
        if not b:
            raise EOFError("connection closed; unparsed: %r" % self.buf[:200])
        self.buf += b
    def until(self, sep):
        while sep not in self.buf:
            self.fill()
        out, _, self.buf = self.buf.partition(sep)
        return out
    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out
    def head(self):
        lines = self.until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        return lines[0], status, headers
    def response(self, sink=None):
        # -> (status line, status, headers, body); `sink(chunk)` instead of keeping the body.
        line, status, headers = self.head()
        body = bytearray()
        put = sink or body.extend
        if status < 200 or status in (204, 304):
            pass
        elif "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
            while True:
                size = int(self.until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self.until(b"\r\n")  # no trailers expected
                    break
                while size:
                    if not self.buf:
                        self.fill()
                    part = self.buf[:size]
                    self.buf = self.buf[len(part):]
                    size -= len(part)
                    put(part)
                self.exact(2)
        elif "content-length" in headers:
            n = int(headers["content-length"][0])
            while n:
                if not self.buf:
                    self.fill()
                part = self.buf[:n]
                self.buf = self.buf[len(part):]
                n -= len(part)
                put(part)
        else:
            while True:
                try:
                    self.fill()
                except EOFError:
                    break
            put(self.buf)
            self.buf = b""
        return line, status, headers, bytes(body)
    def read_to_eof(self):
        while True:
            try:
                self.fill()
            except EOFError:
                return self.buf
"""

# argv: host port method path headers-json -> JSON {status, headers, body}
REQUEST = WL_LIB + r"""
host, port, method, path, headers = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
c = http.client.HTTPConnection(host, port, timeout=30)
c.request(method, path, headers=headers)
r = c.getresponse()
body = r.read()
print(json.dumps({"status": r.status, "headers": r.getheaders(), "body": body.decode("latin-1")}))
"""

# argv: host port authority path headers-json trailers-json -> the response body. HTTP/2 with
# prior knowledge, by hand (curl cannot send request trailers): a POST of "hello" whose
# trailers follow in a HEADERS frame; field blocks are HPACK literals without indexing.
H2C_TRAILERS = WL_LIB + r"""
import struct
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
request = [(":method", "POST"), (":scheme", "http"), (":authority", authority), (":path", path)] + list(headers.items())
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 4, 1, block(request))
          + frame(0, 0, 1, b"hello") + frame(1, 5, 1, block(trailers.items())))
buf, body, done = b"", b"", False
while not done:
    while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
        b = s.recv(65536)
        if not b:
            raise EOFError("closed; body so far %r" % body)
        buf += b
    n, kind, flags, stream = int.from_bytes(buf[:3], "big"), buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff
    payload, buf = buf[9:9 + n], buf[9 + n:]
    if kind == 4 and not flags & 1:
        s.sendall(frame(4, 1, 0, b""))
    elif kind == 0 and stream == 1:
        body += payload
        done = bool(flags & 1)
    elif kind == 1 and stream == 1:
        done = bool(flags & 1)
    elif kind in (3, 7):
        raise RuntimeError("reset or GOAWAY: %s" % payload.hex())
print(body.decode())
"""

# A server that answers one request per connection and then closes it without saying so
# (no `Connection: close`), like a server whose keep-alive idle timeout just fired.
ONE_SHOT_SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
def serve(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = c.recv(4096)
        if not b: return c.close()
        buf += b
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# argv: host port n -> n keep-alive requests on one connection
KEEPALIVE = WL_LIB + r"""
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection(host, port, timeout=30)
statuses, auths, socks = [], set(), []
for i in range(n):
    c.request("GET", f"/inspect/keepalive/{i}")
    r = c.getresponse()
    doc = json.loads(r.read())
    statuses.append(r.status)
    auths.add(tuple(doc["headers"].get("authorization", [])))
    assert doc["path"] == f"/inspect/keepalive/{i}", doc["path"]
    socks.append(c.sock)  # kept alive, so ids cannot be reused
print(json.dumps({"statuses": sorted(set(statuses)), "count": len(statuses), "auths": sorted(auths), "sockets": len({id(s) for s in socks})}))
"""

# argv: host port n -> POST n random bytes chunked to /echo while reading the echo
ECHO = WL_LIB + r"""
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = Conn(host, port)
sent = hashlib.sha256()
def send():
    c.s.sendall(f"POST /echo HTTP/1.1\r\nHost: {host}:{port}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n".encode())
    left = n
    while left:
        chunk = os.urandom(min(left, 65536))
        sent.update(chunk)
        c.s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        left -= len(chunk)
    c.s.sendall(b"0\r\n\r\n")
t = threading.Thread(target=send)
t.start()
got = hashlib.sha256()
count = [0]
def sink(b):
    got.update(b); count[0] += len(b)
line, status, headers, _ = c.response(sink)
t.join()
print(json.dumps({"status": status, "len": count[0], "sent_sha": sent.hexdigest(), "got_sha": got.hexdigest(),
                  "transfer_encoding": headers.get("transfer-encoding"), "content_length": headers.get("content-length")}))
"""

# argv: host port n -> GET /bytes/n, sha256 of the body
BYTES = WL_LIB + r"""
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection(host, port, timeout=30)
c.request("GET", f"/bytes/{n}")
r = c.getresponse()
h = hashlib.sha256(); total = 0
while True:
    b = r.read(1 << 16)
    if not b: break
    h.update(b); total += len(b)
print(json.dumps({"status": r.status, "len": total, "sha": h.hexdigest()}))
"""

# argv: host port -> 3 requests in one write, 3 responses read in order
PIPELINE = WL_LIB + r"""
host, port = sys.argv[1], int(sys.argv[2])
c = Conn(host, port)
c.s.sendall(b"".join(f"GET /inspect/pipe/{i} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode() for i in range(3)))
out = []
for i in range(3):
    line, status, headers, body = c.response()
    doc = json.loads(body)
    out.append({"status": status, "path": doc["path"], "authorization": doc["headers"].get("authorization")})
print(json.dumps(out))
"""

# argv: host port n -> WebSocket handshake, then n random bytes echoed back
WEBSOCKET = WL_LIB + r"""
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = Conn(host, port)
key = base64.b64encode(os.urandom(16)).decode()
c.s.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
line, status, headers = c.head()
expect = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
data = os.urandom(n)
def send():
    c.s.sendall(data)
    c.s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
if status == 101:
    t.start()
got = c.read_to_eof() if status == 101 else b""
if status == 101:
    t.join()
print(json.dumps({"status": status, "accept_ok": headers.get("sec-websocket-accept") == [expect],
                  "len": len(got), "intact": got == data}))
"""

# argv: host port raw-bytes(hex) -> what came back before EOF, and whether EOF came
RAW = WL_LIB + r"""
host, port, raw = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
c = Conn(host, port, timeout=10)
c.s.sendall(raw)
try:
    data, eof = c.read_to_eof(), True
except socket.timeout:
    data, eof = c.buf, False
print(json.dumps({"data": data.decode("latin-1"), "eof": eof}))
"""
