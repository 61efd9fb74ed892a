"""Credentials exchanged for the caller's identity (`[[credential]]`), against servers nobody
here wrote: panva's oidc-provider (client credentials with a private_key_jwt assertion idgate
signs, RFC 8693 token exchange of the caller's JWT-SVID) with a resource server that verifies
its JWT access tokens (jose), and moto (STS AssumeRoleWithWebIdentity; S3 and STS verifying
every SigV4 signature). No workload and no file on host a holds a secret: idgate's JWT key is
the fleet's (`idgate ca issue`), published with `idgate ca jwks`.

Topology (namespaces prefixed `idx`):
  a 10.77.0.1  idgate + workloads (alice, bob, carol: registered clients; mallory: not)
  c 10.77.0.3  oidc-provider :8443 (and :8447, whose tokens last 12 s), resource server :9443
               (api.test), moto :443 (S3, STS); token endpoints that fail: :8444 never
               answers, :8445 answers garbage, :8446 is closed
  c:9080 -> api.test with a client credentials token, :9081 token exchange, :9082-9084 the
  failing endpoints; :9085 -> :9444, a resource server for the short-lived tokens;
  c:80 -> moto (S3), c:81 -> moto (STS API)
"""
import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

import aws
import idp
import pki
from eventually import eventually
from fleet import ca
from hosts import TRUST_DOMAIN
from netns import IDGATE, Topology

ALICE = f"spiffe://{TRUST_DOMAIN}/app/alice"
BOB = f"spiffe://{TRUST_DOMAIN}/app/bob"
MALLORY = f"spiffe://{TRUST_DOMAIN}/app/mallory"
CAROL = f"spiffe://{TRUST_DOMAIN}/app/carol"
UIDS = {ALICE: 1001, BOB: 1002, MALLORY: 1003, CAROL: 1004}
SHORT_TTL = 12  # seconds: the short-lived tokens of the provider on :8447
FLAKY_TTL = 30  # seconds: the tokens of the provider on :8448, which a test stops
ISSUER = "https://issuer.test/fleet"  # where `idgate ca jwks` output would be served
IDP_URL = "https://10.77.0.3:8443"
API = "https://api.test"
EXCHANGE_AUDIENCE = "idp.test"

pytestmark = pytest.mark.skipif(not idp.npm_ready(), reason="tests/idp's packages are not installed (npm ci --prefix tests/idp; tests/setup.sh does)")


def config_a(net):
    workloads = "".join(f'[[workload]]\nspiffe_id = "{sid}"\nuid = {uid}\n\n' for sid, uid in UIDS.items())
    tls = f'ca_bundle = "{net.tls}/ca.pem"'
    return f"""
trust_domain = "{TRUST_DOMAIN}"
hostname = "host-a"
state_dir = "{net.tmp}/state-a"
mode = "strict"
default_action = "deny"

[ca]
source = "files"
cert = "{net.host_ca}/ca.pem"
key = "{net.host_ca}/ca-key.pem"
trust_bundle = ["{net.root}/ca.pem"]

[listen]
admin = "127.0.0.1:15000"

[trail]
file = "{net.tmp}/trail.jsonl"

[http]
jwt_issuer = "{ISSUER}"
jwt_key = "{net.host_ca}/jwt-key.pem"

{workloads}
[[outbound]]
cidrs = ["10.77.0.3/32"]
ports = [9080, 9081, 9082, 9083, 9084]
protocol = "http"
hosts = ["api.test"]
tls = {{ server_name = "api.test", port = 9443, {tls} }}

[[outbound]]
cidrs = ["10.77.0.3/32"]
ports = [9085]
protocol = "http"
tls = {{ server_name = "api.test", port = 9444, {tls} }}

[[outbound]]
cidrs = ["10.77.0.3/32"]
ports = [9086]
protocol = "http"
tls = {{ server_name = "api.test", port = 9445, {tls} }}

[[outbound]]
cidrs = ["10.77.0.3/32"]
ports = [80, 81]
protocol = "http"
hosts = ["{aws.S3_HOST}", "{aws.STS_HOST}"]
tls = {{ server_name = "{aws.S3_HOST}", port = 443, {tls} }}

[[credential]]
name = "api"
kind = "oauth_client_credentials"
endpoint = "{IDP_URL}/token"
scope = "read"
{tls}

[[credential]]
name = "api-exchange"
kind = "oauth_token_exchange"
endpoint = "{IDP_URL}/token"
client_id = "sts-public"
token_audience = "{EXCHANGE_AUDIENCE}"
{tls}

[[credential]]
name = "silent"
kind = "oauth_client_credentials"
endpoint = "https://10.77.0.3:8444/token"
timeout = "1s"
{tls}

[[credential]]
name = "garbage"
kind = "oauth_client_credentials"
endpoint = "https://10.77.0.3:8445/token"
{tls}

[[credential]]
name = "stopped"
kind = "oauth_client_credentials"
endpoint = "https://10.77.0.3:8446/token"
{tls}

[[credential]]
name = "short"
kind = "oauth_client_credentials"
endpoint = "https://10.77.0.3:8447/token"
{tls}

[[credential]]
name = "flaky"
kind = "oauth_client_credentials"
endpoint = "https://10.77.0.3:8448/token"
{tls}

[[credential]]
name = "s3-reader"
kind = "aws_web_identity"
role_arn = "{aws.role_arn(aws.READER)}"
endpoint = "https://10.77.0.3/"  # no resolver in the test namespaces
duration = "15m"
{tls}

[[http_rule]]
ports = [9080]
set = {{ authorization = "Bearer ${{credential:api}}" }}

[[http_rule]]
ports = [9081]
set = {{ authorization = "Bearer ${{credential:api-exchange}}" }}

[[http_rule]]
ports = [9082]
set = {{ authorization = "Bearer ${{credential:silent}}" }}

[[http_rule]]
ports = [9083]
set = {{ authorization = "Bearer ${{credential:garbage}}" }}

[[http_rule]]
ports = [9084]
set = {{ authorization = "Bearer ${{credential:stopped}}" }}

[[http_rule]]
ports = [9085]
set = {{ authorization = "Bearer ${{credential:short}}" }}

[[http_rule]]
ports = [9086]
set = {{ authorization = "Bearer ${{credential:flaky}}" }}

[[http_rule]]
source = "{ALICE}"
ports = [80]
aws_sigv4 = {{ credential = "s3-reader", service = "s3", region = "{aws.REGION}", payload = "unsigned" }}

[[http_rule]]
source = "{ALICE}"
ports = [81]
aws_sigv4 = {{ credential = "s3-reader", service = "sts", region = "{aws.REGION}", payload = "signed", max_body = 4096 }}
"""


class Net:
    pass


def silent_server(host, port, stop):
    """Accepts TCP connections on `port` and never answers (a hung token endpoint)."""
    s = host.socket(socket.AF_INET, socket.SOCK_STREAM)

    def run():
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host.ip, port))
        s.listen(16)
        s.settimeout(0.2)
        held = []
        while not stop.is_set():
            try:
                held.append(s.accept()[0])
            except TimeoutError:
                pass
        for c in held:
            c.close()
        s.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def garbage_server(host, port, tls_dir, stop):
    """A TLS server on `port` that answers every request 200 with a page that is no token."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_dir / "idp.pem", tls_dir / "idp-key.pem")
    s = host.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host.ip, port))
    s.listen(16)
    s.settimeout(0.2)

    def run():
        while not stop.is_set():
            try:
                conn = s.accept()[0]
            except TimeoutError:
                continue
            try:
                conn.settimeout(5)
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)
                    page = b"<html>maintenance</html>"
                    tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(page), page))
            except (OSError, ssl.SSLError):
                pass
        s.close()

    threading.Thread(target=run, daemon=True).start()


def client_jwks(net, spiffe_id):
    """The keys of the hosts granted `spiffe_id` (`idgate ca jwks --for`): what its client trusts."""
    out = net.tmp / f"jwks-{spiffe_id.rsplit('/', 1)[1]}"
    ca("jwks", "--dir", net.root, "--issuer", ISSUER, "--for", spiffe_id, "--out", out)
    return json.loads((out / "jwks.json").read_text())


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = Net()
    n.tmp = tmp_path_factory.mktemp("credentials")
    n.topo = Topology(prefix=os.environ.get("IDGATE_NETNS_PREFIX", "id") + "x")
    n.a = n.topo.add_host("a", 1)
    n.c = n.topo.add_host("c", 3)
    n.procs = []
    n.stop = threading.Event()
    try:
        # The fleet: a root, host a's CA and JWT key, and the fleet's published JWKS.
        n.root = n.tmp / "root"
        ca("init", "--dir", n.root, "--trust-domain", TRUST_DOMAIN)
        n.host_ca = n.tmp / "host-a-ca"
        ca("issue", "--dir", n.root, "--host", "host-a", "--address", "10.77.0.1", "--grant", f"spiffe://{TRUST_DOMAIN}/app/*", "--out", n.host_ca)
        n.published = n.tmp / "published"
        ca("jwks", "--dir", n.root, "--issuer", ISSUER, "--out", n.published)
        fleet_jwks = json.loads((n.published / "jwks.json").read_text())
        n.alice_jwks = n.tmp / "alice-jwks"
        ca("jwks", "--dir", n.root, "--issuer", ISSUER, "--for", ALICE, "--out", n.alice_jwks)
        assert client_jwks(n, ALICE) == json.loads((n.alice_jwks / "jwks.json").read_text())
        # The external services' TLS.
        n.tls = n.tmp / "tls"
        pki.make_ca(n.tls, "idgate test external CA")
        server = [ExtendedKeyUsageOID.SERVER_AUTH]
        pki.issue(n.tls, n.tls / "idp.pem", n.tls / "idp-key.pem", ips=["10.77.0.3"], cn="idp", usages=server)
        pki.issue(n.tls, n.tls / "api.pem", n.tls / "api-key.pem", dns=["api.test"], cn="api.test", usages=server)
        pki.issue(n.tls, n.tls / "aws.pem", n.tls / "aws-key.pem", dns=[aws.S3_HOST, aws.STS_HOST], ips=["10.77.0.3"], cn="aws", usages=server)
        clients = [{"client_id": sid, "jwks": client_jwks(n, sid), "scope": "read write", "grant_types": ["client_credentials"]} for sid in (ALICE, BOB, CAROL)]
        n.procs.append(idp.start_provider(
            n.c, n.tmp, name="idp-short", listen="10.77.0.3", port=8447, issuer="https://10.77.0.3:8447", tls_cert=n.tls / "idp.pem",
            tls_key=n.tls / "idp-key.pem", access_token_ttl=SHORT_TTL, resource=API, clients=clients))
        n.flaky = idp.start_provider(
            n.c, n.tmp, name="idp-flaky", listen="10.77.0.3", port=8448, issuer="https://10.77.0.3:8448", tls_cert=n.tls / "idp.pem",
            tls_key=n.tls / "idp-key.pem", access_token_ttl=FLAKY_TTL, resource=API, clients=clients)
        n.procs.append(n.flaky)
        n.procs.append(idp.start_resource(
            n.c, n.tmp, name="resource-flaky", listen="10.77.0.3", port=9445, tls_cert=n.tls / "api.pem", tls_key=n.tls / "api-key.pem",
            issuer="https://10.77.0.3:8448", audience=API, jwks_uri="https://10.77.0.3:8448/jwks", ca_file=n.tls / "ca.pem"))
        n.procs.append(idp.start_provider(
            n.c, n.tmp, listen="10.77.0.3", port=8443, issuer=IDP_URL, tls_cert=n.tls / "idp.pem", tls_key=n.tls / "idp-key.pem",
            access_token_ttl=3600, resource=API,
            clients=[
                *clients,
                {"client_id": "sts-public", "token_endpoint_auth_method": "none", "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"]},
            ],
            token_exchange={"trusted_issuer": ISSUER, "trusted_jwks": fleet_jwks, "audience": EXCHANGE_AUDIENCE, "allowed_subjects": [ALICE]}))
        n.procs.append(idp.start_resource(
            n.c, n.tmp, listen="10.77.0.3", port=9443, tls_cert=n.tls / "api.pem", tls_key=n.tls / "api-key.pem", issuer=IDP_URL, audience=API,
            jwks_uri=f"{IDP_URL}/jwks", ca_file=n.tls / "ca.pem"))
        n.procs.append(idp.start_resource(
            n.c, n.tmp, name="resource-short", listen="10.77.0.3", port=9444, tls_cert=n.tls / "api.pem", tls_key=n.tls / "api-key.pem",
            issuer="https://10.77.0.3:8447", audience=API, jwks_uri="https://10.77.0.3:8447/jwks", ca_file=n.tls / "ca.pem"))
        silent_server(n.c, 8444, n.stop)
        garbage_server(n.c, 8445, n.tls, n.stop)
        proc, n.moto = aws.start_moto(n.c, n.tmp, cert=n.tls / "aws.pem", key=n.tls / "aws-key.pem", ca=n.tls / "ca.pem", issuer=ISSUER,
                                      subjects={aws.READER: ALICE}, jwks=n.published / "jwks.json")
        n.procs.append(proc)
        # The proc connector answers only in the first network namespace: as in test_prewarm.py,
        # idgate opens its events socket there (as one on a real host does).
        n.idgate = n.a.start_idgate(config_a(n), n.tmp / "a", env={"IDGATE_PROC_EVENTS_NETNS": f"/proc/{os.getpid()}/ns/net"})
        yield n
    finally:
        n.stop.set()
        for p in n.procs:
            p.terminate()
        for p in n.procs:
            try:
                p.wait(timeout=5)
            except Exception:
                p.kill()
        n.topo.cleanup()


def request(net, who, port, method="GET", path="/whoami", headers=None, body=None):
    args = ["10.77.0.3", port, method, path, json.dumps(headers or {})] + ([body] if body is not None else [])
    out = net.a.workload("http_request", *args, uid=UIDS[who]).stdout
    return json.loads(out)


def provider_log(net):
    return (net.tmp / "c-idp.log").read_text()


def status(net):
    return net.idgate.status()["credential_exchanges"]


def test_client_credentials_token_is_exchanged_once_and_verifies_at_the_resource_server(net):
    got = request(net, ALICE, 9080, headers={"Host": "api.test"})
    assert got["status"] == 200, got
    claims = json.loads(got["body"])
    assert claims["sub"] == ALICE and claims["client_id"] == ALICE and claims["scope"] == "read", claims
    before = status(net)
    for _ in range(3):
        assert request(net, ALICE, 9080, headers={"Host": "api.test"})["status"] == 200
    after = status(net)
    assert after["cache_hits"] >= before["cache_hits"] + 3, (before, after)
    # (Each workload's exec also fetches ahead: counted by the provider, not by idgate's total.)
    assert provider_log(net).count(f"grant=client_credentials client={ALICE}") == 1, provider_log(net)
    # A token the workload writes itself is replaced, never forwarded.
    forged = request(net, ALICE, 9080, headers={"Host": "api.test", "Authorization": "Bearer forged"})
    assert forged["status"] == 200 and json.loads(forged["body"])["sub"] == ALICE


def test_a_workload_the_provider_does_not_know_gets_503_and_nothing_is_forwarded(net):
    got = request(net, MALLORY, 9080, headers={"Host": "api.test"})
    assert got["status"] == 503, got
    assert "credential `api`" in got["body"] and "invalid_client" in got["body"], got["body"]
    resource_log = (net.tmp / "c-resource.log").read_text()
    assert MALLORY not in resource_log
    refused = [d for d in net.idgate.decisions() if d.get("source_id") == MALLORY and d.get("verdict") == "credential_unavailable"]
    assert refused, net.idgate.decisions()


def test_token_exchange_gives_a_token_for_the_callers_identity(net):
    got = request(net, ALICE, 9081, headers={"Host": "api.test"})
    assert got["status"] == 200, got
    claims = json.loads(got["body"])
    assert claims["sub"] == ALICE and claims["client_id"] == "sts-public", claims
    # A subject the provider does not allow: 503 naming the source, nothing forwarded.
    denied = request(net, MALLORY, 9081, headers={"Host": "api.test"})
    assert denied["status"] == 503 and "credential `api-exchange`" in denied["body"] and "invalid_grant" in denied["body"], denied


def test_concurrent_first_requests_share_one_exchange(net):
    code = """
import http.client, json, sys, threading
results = []
def one():
    c = http.client.HTTPConnection("10.77.0.3", 9080, timeout=30)
    c.request("GET", "/whoami", headers={"Host": "api.test"})
    r = c.getresponse()
    results.append((r.status, json.loads(r.read())["sub"]))
threads = [threading.Thread(target=one) for _ in range(20)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(results))
"""
    results = json.loads(net.a.python(code, uid=UIDS[BOB]).stdout)
    assert results == [[200, BOB]] * 20, results
    assert provider_log(net).count(f"grant=client_credentials client={BOB}") == 1, provider_log(net)


def test_a_token_endpoint_that_fails_answers_503_naming_why_and_nothing_is_forwarded(net):
    garbage = request(net, ALICE, 9083, headers={"Host": "api.test"})
    assert garbage["status"] == 503 and "credential `garbage`" in garbage["body"] and "not JSON" in garbage["body"], garbage
    stopped = request(net, ALICE, 9084, headers={"Host": "api.test"})
    assert stopped["status"] == 503 and "credential `stopped`" in stopped["body"] and "refused" in stopped["body"].lower(), stopped
    assert "maintenance" not in garbage["body"]


def test_a_credential_is_refreshed_before_it_expires_and_requests_never_wait_for_it(net):
    log = net.tmp / "c-idp-short.log"
    first = request(net, ALICE, 9085, headers={"Host": "api.test"})
    assert first["status"] == 200, first
    exp1 = json.loads(first["body"])["exp"]
    assert log.read_text().count(f"client={ALICE}") == 1
    time.sleep(SHORT_TTL * 3 / 4 + 0.5)
    # Past three quarters of its life: a new one is fetched behind it (by this request, or by
    # the fetch ahead at its process's exec), the request never waiting for a failure.
    second = request(net, ALICE, 9085, headers={"Host": "api.test"})
    assert second["status"] == 200 and json.loads(second["body"])["exp"] >= exp1, second
    eventually(lambda: log.read_text().count(f"client={ALICE}") == 2, lambda: log.read_text(), timeout=5)
    time.sleep(max(0.0, exp1 - time.time()) + 0.5)
    # The first token has expired: the request carries the refreshed one, with no exchange of its own.
    third = request(net, ALICE, 9085, headers={"Host": "api.test"})
    assert third["status"] == 200 and json.loads(third["body"])["exp"] > exp1, third
    assert log.read_text().count(f"client={ALICE}") == 2, log.read_text()


def test_a_workload_that_starts_has_its_credentials_fetched_before_its_first_request(net):
    assert f"client={CAROL}" not in provider_log(net)
    carol = net.a.start_workload("connect_on_go", "10.77.0.3", 9080, uid=UIDS[CAROL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        eventually(lambda: f"grant=client_credentials client={CAROL}" in provider_log(net), lambda: provider_log(net), timeout=10)
        got = request(net, CAROL, 9080, headers={"Host": "api.test"})
        assert got["status"] == 200 and json.loads(got["body"])["sub"] == CAROL, got
        assert provider_log(net).count(f"grant=client_credentials client={CAROL}") == 1, provider_log(net)
    finally:
        carol.kill()
        carol.wait()


def test_a_reload_keeps_the_cache_of_an_unchanged_source_and_drops_a_changed_ones(net):
    assert request(net, ALICE, 9080, headers={"Host": "api.test"})["status"] == 200
    count = provider_log(net).count(f"grant=client_credentials client={ALICE}")
    net.a.run(IDGATE, "reload", "-c", net.idgate.config)
    assert request(net, ALICE, 9080, headers={"Host": "api.test"})["status"] == 200
    assert provider_log(net).count(f"grant=client_credentials client={ALICE}") == count
    changed = net.idgate.config.read_text().replace('scope = "read"', 'scope = "read write"', 1)
    net.idgate.config.write_text(changed)
    net.a.run(IDGATE, "reload", "-c", net.idgate.config)
    got = request(net, ALICE, 9080, headers={"Host": "api.test"})
    assert got["status"] == 200 and json.loads(got["body"])["scope"] == "read write", got
    assert provider_log(net).count(f"grant=client_credentials client={ALICE}") == count + 1
    assert "restart: credential" not in net.idgate.log.read_text(), "a reload applies [[credential]] changes and must say so"


def test_a_token_endpoint_that_fails_at_refresh_is_not_asked_at_every_request(net):
    code = """
import http.client, sys
c = http.client.HTTPConnection("10.77.0.3", 9086, timeout=10)
statuses = []
for _ in range(40):
    c.request("GET", "/whoami", headers={"Host": "api.test"})
    r = c.getresponse(); r.read(); statuses.append(r.status)
print(" ".join(map(str, statuses)))
"""
    # The token in use (a workload's start may have fetched it a while ago): wait for one with
    # most of its life ahead, then until it is past its refresh point (a quarter of its life
    # left) but still usable (a tenth left).
    for _ in range(10):
        got = request(net, ALICE, 9086, headers={"Host": "api.test"})
        assert got["status"] == 200, got
        exp = json.loads(got["body"])["exp"]
        if exp - time.time() > FLAKY_TTL / 2:
            break
        time.sleep(1)
    # exp is whole seconds, idgate counts from the answer's arrival: up to a second later.
    time.sleep(max(0.0, exp - FLAKY_TTL / 4 + 1.5 - time.time()))
    net.flaky.terminate()
    net.flaky.wait(timeout=5)
    # Past the refresh point with the server gone: the current token is still served, and the
    # refresh is tried at most once per second, not for each of the 40 requests.
    statuses = net.a.python(code, uid=UIDS[ALICE]).stdout.decode().split()
    assert statuses == ["200"] * 40, statuses
    refreshes = [line for line in net.idgate.log.read_text().splitlines() if "credential refresh failed" in line and "source=flaky" in line]
    assert 1 <= len(refreshes) <= 3, refreshes


def test_a_silent_token_endpoint_answers_503_within_its_timeout(net):
    started = time.monotonic()
    got = request(net, ALICE, 9082, headers={"Host": "api.test"})
    took = time.monotonic() - started
    assert got["status"] == 503 and "credential `silent`" in got["body"] and "no answer within" in got["body"], got
    assert took < 4, f"answered after {took:.1f}s (timeout 1s)"


def assumed_credentials(net):
    records = [r for r in net.moto.requests(action="AssumeRoleWithWebIdentity") if r.get("status") == 200]
    assert records, net.moto.requests()
    import xml.etree.ElementTree as ET
    ns = {"s": "https://sts.amazonaws.com/doc/2011-06-15/"}
    c = ET.fromstring(records[-1]["response"]).find(".//s:Credentials", ns)
    return aws.Credentials(*(c.findtext(f"s:{n}", namespaces=ns) for n in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")))


def test_alice_reads_and_writes_s3_with_no_aws_secret_on_her_host(net):
    s3 = {"Host": aws.S3_HOST}
    got = request(net, ALICE, 80, path=f"/{aws.BUCKET}/{aws.OBJECT_KEY}", headers=s3)
    assert got["status"] == 200 and got["body"] == aws.OBJECT_BODY.decode(), got
    put = request(net, ALICE, 80, "PUT", f"/{aws.BUCKET}/from-alice.txt", {**s3, "Content-Type": "text/plain"}, body="written through idgate\n")
    assert put["status"] == 200, put
    back = request(net, ALICE, 80, path=f"/{aws.BUCKET}/from-alice.txt", headers=s3)
    assert back["status"] == 200 and back["body"] == "written through idgate\n", back
    # STS checked the JWT-SVID: signed by the fleet's published key, sub = alice (the role's
    # trust policy); moto verified each signature, and botocore's signer agrees with idgate's.
    creds = assumed_credentials(net)
    signed = [r for r in net.moto.requests(by="moto") if f"Credential={creds.access_key}/" in r["headers"].get("authorization", "") and r["status"] == 200]
    assert len(signed) >= 3, signed
    for record in signed:
        sent, recomputed = aws.signature_of_record(record, creds)
        assert sent == recomputed, record
    assert all(r["headers"].get("x-amz-content-sha256") == aws.UNSIGNED_PAYLOAD for r in signed if r["path"].startswith(f"/{aws.BUCKET}"))
    # Controls: moto refuses what idgate did not sign, a tampered header, an old date.
    url = f"https://{aws.S3_HOST}/{aws.BUCKET}/{aws.OBJECT_KEY}"
    assert net.moto.signed_request("GET", url, creds)[0] == 200
    old = time.strftime(aws.AMZ_DATE, time.gmtime(time.time() - 20 * 60))
    assert net.moto.signed_request("GET", url, creds, amz_date=old)[0] == 403
    # idgate's own signed GET replayed for another object: the signature covers the path.
    record = next(r for r in signed if r["method"] == "GET")
    replay = {k: v for k, v in record["headers"].items() if k != "content-length"}
    assert net.moto.request("GET", f"https://{aws.S3_HOST}{record['path']}", replay)[0] == 200
    assert net.moto.request("GET", f"https://{aws.S3_HOST}/{aws.BUCKET}/from-alice.txt", replay)[0] == 403
    # Mallory has no rule for it: her request leaves unsigned and S3 refuses it.
    theirs = request(net, MALLORY, 80, path=f"/{aws.BUCKET}/{aws.OBJECT_KEY}", headers=s3)
    assert theirs["status"] == 403, theirs


def test_an_sts_api_call_has_its_body_hashed_and_signed(net):
    body = "Action=GetCallerIdentity&Version=2011-06-15"
    headers = {"Host": aws.STS_HOST, "Content-Type": "application/x-www-form-urlencoded"}
    got = request(net, ALICE, 81, "POST", "/", headers, body=body)
    assert got["status"] == 200 and "assumed-role/alice-reader" in got["body"], got
    record = net.moto.requests(action="GetCallerIdentity", status=200)[-1]
    assert record["headers"]["x-amz-content-sha256"] == aws.sha256_hex(body.encode())
    # Over the limit: 413, nothing sent.
    before = len(net.moto.requests())
    big = request(net, ALICE, 81, "POST", "/", headers, body=body + "&" + "x" * 5000)
    assert big["status"] == 413, big
    assert len(net.moto.requests()) == before


def test_credentials_stay_out_of_status_logs_and_the_trail(net):
    creds = assumed_credentials(net)
    human = net.a.run(IDGATE, "status", "-c", net.idgate.config).stdout.decode()
    assert "credential exchanges" in human, human
    metrics = net.a.run("curl", "-sf", "http://127.0.0.1:15000/metrics").stdout.decode()
    assert "idgate_credential_exchanges_total" in metrics and "idgate_credential_exchange_seconds_bucket" in metrics, metrics
    seen = json.dumps(net.idgate.status()) + human + metrics + (net.tmp / "trail.jsonl").read_text() + net.idgate.log.read_text()
    for secret in (creds.secret_key, creds.token):
        assert secret not in seen
    assert "credential exchanged" in net.idgate.log.read_text()
    # The trail names the source and the credential's expiry of each flow that carried one.
    records = [json.loads(line) for line in (net.tmp / "trail.jsonl").read_text().splitlines()]
    carried = [r for r in records if r.get("credentials") and r["spiffe_id"] == ALICE]
    sources = {c["source"] for r in carried for c in r["credentials"]}
    assert {"api", "s3-reader"} <= sources, sources
    assert all(c["expires"] > time.time() - 60 for r in carried for c in r["credentials"])
    refused = [r for r in records if r["verdict"] == "credential_unavailable"]
    assert any("credential `api`" in r["reason"] for r in refused), refused


def test_published_jwks_holds_the_hosts_key_and_for_filters_by_grant(net):
    fleet = json.loads((net.published / "jwks.json").read_text())["keys"]
    served = json.loads(net.a.run("curl", "-sf", "http://127.0.0.1:15000/jwks.json").stdout)["keys"]
    assert [k["kid"] for k in served] == [k["kid"] for k in fleet]
    discovery = json.loads((net.published / ".well-known/openid-configuration").read_text())
    assert discovery["issuer"] == ISSUER and discovery["jwks_uri"] == f"{ISSUER}/jwks.json"
    outside = net.tmp / "outside"
    ca("jwks", "--dir", net.root, "--issuer", ISSUER, "--for", "spiffe://other.domain/app/x", "--out", outside)
    assert json.loads((outside / "jwks.json").read_text())["keys"] == []
    refused = ca("jwks", "--dir", net.root, "--issuer", "http://plain.test", "--out", outside, check=False)
    assert refused.returncode != 0 and "https://" in refused.stderr


def test_check_names_a_bad_credential_source(net):
    bad = net.tmp / "bad.toml"
    bad.write_text(config_a(net).replace('kind = "oauth_token_exchange"', 'kind = "oauth_token_exchange"\nrole_arn = "arn:aws:iam::1:role/x"'))
    out = subprocess.run([str(IDGATE), "check", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "credential[1] `api-exchange`: role_arn not used" in out.stderr + out.stdout, out
    plain = net.tmp / "plain.toml"
    plain.write_text(config_a(net).replace(f'endpoint = "{IDP_URL}/token"', 'endpoint = "http://10.77.0.3:8443/token"', 1))
    out = subprocess.run([str(IDGATE), "check", "-c", str(plain)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "must be an https:// URL" in out.stderr + out.stdout, out
    # What run would refuse, check refuses too: an unreadable CA bundle, a loose JWT key.
    missing = net.tmp / "missing-bundle.toml"
    before_second = '\n\n[[credential]]\nname = "api-exchange"'
    missing.write_text(config_a(net).replace(f'ca_bundle = "{net.tls}/ca.pem"{before_second}', f'ca_bundle = "/nonexistent/ca.pem"{before_second}', 1))
    out = subprocess.run([str(IDGATE), "check", "-c", str(missing)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "credential[0]" in out.stderr + out.stdout and "/nonexistent/ca.pem" in out.stderr + out.stdout, out
    loose = net.tmp / "loose-jwt-key.pem"
    loose.write_bytes((net.host_ca / "jwt-key.pem").read_bytes())
    loose.chmod(0o644)
    key_config = net.tmp / "loose-key.toml"
    key_config.write_text(config_a(net).replace(f'jwt_key = "{net.host_ca}/jwt-key.pem"', f'jwt_key = "{loose}"'))
    out = subprocess.run([str(IDGATE), "check", "-c", str(key_config)], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "http.jwt_key" in out.stderr + out.stdout and "0644" in out.stderr + out.stdout, out

