"""Hosts, configs and certificates for the HTTP-aware path (test_http.py); its workload
programs are in workloads/ (http_*.py and others).

Topology (namespaces prefixed `idh`, so they never clash with the `idg` ones of other tests):
  a 10.77.0.1  workloads + idgate (outbound: HTTP rules, JWT-SVIDs, TLS origination)
  b 10.77.0.2  idgate (inbound, identity header) + idgate-test-httpd on 8080 and 8081; 8082 closed
  c 10.77.0.3  idgate-test-httpd over HTTPS: 443 (cert for api.example.com), 8443 (wrong.example.com)
"""
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

import pki
from eventually import eventually
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
    """A P-256 CA, and server certificates for api.example.com and wrong.example.com."""
    pki.make_ca(d, "idgate test external CA")
    for name in ("api.example.com", "wrong.example.com"):
        pki.issue(d, d / f"{name}.pem", d / f"{name}-key.pem", dns=[name], cn=name, usages=[ExtendedKeyUsageOID.SERVER_AUTH], days=2)
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

        def listening():
            if "listening on" in log.read_text():
                return True
            if self.proc.poll() is not None:
                raise RuntimeError(f"idgate-test-httpd {listen} did not start: {log.with_suffix('.err').read_text()}")
            return False

        eventually(listening, lambda: f"idgate-test-httpd {listen} started: {log.with_suffix('.err').read_text()}", timeout=10, interval=0.02)

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
