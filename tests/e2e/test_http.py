"""The HTTP-aware path (issue 4): per-identity credential injection, anti-spoofing, inbound
identity headers, JWT-SVIDs, TLS origination to external APIs, HTTP/1.1 framing edge cases,
secret rotation and redaction. One topology for the whole module (see http_hosts.py)."""
import base64
import json
import os
import time

import pytest

from eventually import eventually
from hosts import pattern_sha
from http_hosts import ALICE, B_SERVER_ID, BOB, CAROL, JWT_AUDIENCE, JWT_TTL, MALLORY, UIDS, HttpNet

MIB = 1 << 20
B = "10.77.0.2"
C = "10.77.0.3"


@pytest.fixture(scope="module")
def hx(tmp_path_factory):
    n = HttpNet(tmp_path_factory.mktemp("http"))
    yield n
    n.cleanup()


def run_json(hx, workload, *args, uid, timeout=60):
    r = hx.a.workload(workload, *args, uid=uid, timeout=timeout, check=False)
    assert r.returncode == 0, f"workload failed (uid {uid}): {r.stderr.decode()[-2000:]}"
    return json.loads(r.stdout)


def request(hx, sid, host, port, path, headers=None, method="GET"):
    """An HTTP/1.1 request (python http.client) from workload `sid` on host a."""
    return run_json(hx, "http_request", host, port, method, path, json.dumps(headers or {}), uid=UIDS[sid])


def inspect(hx, sid, path, headers=None, host=B, port=8080):
    r = request(hx, sid, host, port, path, headers)
    assert r["status"] == 200, r
    return json.loads(r["body"])


def curl_h2c(hx, sid, url, headers=(), extra=()):
    """HTTP/2 with prior knowledge from workload `sid`: (http_version, status, body)."""
    args = ["curl", "-sS", "--http2-prior-knowledge", "--max-time", "20", "-w", "\n%{http_version} %{http_code}", *extra]
    for h in headers:
        args += ["-H", h]
    r = hx.a.run(*args, url, uid=UIDS[sid], check=False)
    assert r.returncode == 0, r.stderr
    body, _, tail = r.stdout.decode().rpartition("\n")
    version, status = tail.split()
    return version, int(status), body


def xfcc(values):
    """x-forwarded-client-cert values -> {key: value} of the single element."""
    assert values is not None and len(values) == 1, f"expected exactly one identity header, got {values}"
    fields = dict(kv.split("=", 1) for kv in values[0].split(";"))
    assert set(fields) <= {"By", "URI", "Hash"}, values
    if "Hash" in fields:
        assert len(fields["Hash"]) == 64 and int(fields["Hash"], 16) >= 0, values
    return fields


FORGED = {
    "Authorization": "Bearer forged",
    "X-Caller": "spiffe://demo.idgate/app/admin",
    "X-Forwarded-Client-Cert": "By=spiffe://demo.idgate/idgate/host/host-b;URI=spiffe://demo.idgate/app/admin",
    "Cookie": "session=workload",
}


def test_each_identity_gets_its_own_token_over_http1_and_h2c(hx):
    for sid, name in ((ALICE, "alice"), (BOB, "bob")):
        doc = inspect(hx, sid, f"/inspect/h1/{name}", FORGED)
        h = doc["headers"]
        assert doc["version"] == "HTTP/1.1"
        assert h.get("authorization") == [f"Bearer {hx.tokens[name]}"], f"{name}: {h.get('authorization')}"
        assert h.get("x-caller") == [sid], h.get("x-caller")
        assert xfcc(h.get("x-forwarded-client-cert"))["URI"] == sid

        version, status, body = curl_h2c(hx, sid, f"http://{B}:8080/inspect/h2/{name}",
                                         [f"{k}: {v}" for k, v in FORGED.items()])
        assert (version, status) == ("2", 200), (version, status, body)
        doc2 = json.loads(body)
        assert doc2["version"] == "HTTP/2.0", "h2c from the workload should reach the service as h2c"
        h2 = doc2["headers"]
        assert h2.get("authorization") == [f"Bearer {hx.tokens[name]}"], f"{name} h2c: {h2.get('authorization')}"
        assert h2.get("x-caller") == [sid]
        assert xfcc(h2.get("x-forwarded-client-cert"))["URI"] == sid

    # alice's rule also appends and removes; bob's does neither.
    alice = inspect(hx, ALICE, "/inspect/h1/alice-extras", FORGED)["headers"]
    assert alice.get("via") == ["idgate"] and "cookie" not in alice, alice
    bob = inspect(hx, BOB, "/inspect/h1/bob-extras", FORGED)["headers"]
    assert "via" not in bob and bob.get("cookie") == ["session=workload"], bob


def test_headers_rules_would_set_are_stripped_for_workloads_without_a_rule(hx):
    # carol has no token rule for this destination: alice's and bob's rules would set
    # authorization and x-caller there, so her forged copies go; the env rule (any source) applies.
    h = inspect(hx, CAROL, "/inspect/env/carol", FORGED)["headers"]
    assert "authorization" not in h and "x-caller" not in h, h
    assert h.get("x-env-token") == [hx.env_token], h.get("x-env-token")
    assert xfcc(h.get("x-forwarded-client-cert"))["URI"] == CAROL


def test_inbound_sets_identity_header_and_drops_forged_copies(hx):
    for headers in ({}, FORGED, {"x-forwarded-client-cert": "URI=spiffe://demo.idgate/app/admin"}):
        fields = xfcc(inspect(hx, ALICE, "/inspect/xfcc", headers)["headers"].get("x-forwarded-client-cert"))
        assert fields["By"] == B_SERVER_ID and fields["URI"] == ALICE, fields
    _, status, body = curl_h2c(hx, BOB, f"http://{B}:8080/inspect/xfcc-h2", ["x-forwarded-client-cert: URI=forged"])
    fields = xfcc(json.loads(body)["headers"].get("x-forwarded-client-cert"))
    assert fields["By"] == B_SERVER_ID and fields["URI"] == BOB, fields


# Names that servers mapping header fields to CGI-style variables (WSGI, PHP-FPM, CGI:
# HTTP_X_FORWARDED_CLIENT_CERT) read as the protected header: `_` and `-` are one there.
LOOKALIKES = {
    "X_Forwarded_Client_Cert": "By=spiffe://demo.idgate/idgate/host/host-b;URI=spiffe://demo.idgate/app/admin",
    "x-forwarded_client-cert": "URI=spiffe://demo.idgate/app/admin",
    "X_Caller": "spiffe://demo.idgate/app/admin",
}


def cgi_names(headers):
    """The service's headers as a CGI-style server sees them: `_` and `-` alike."""
    out = {}
    for name, values in headers.items():
        out.setdefault(name.lower().replace("_", "-"), []).extend(values)
    return out


def test_look_alike_names_cannot_forge_protected_headers(hx):
    # The identity header (inbound side) and what rules set (outbound side) are stripped under
    # every spelling a service might fold into theirs, over HTTP/1.1 and h2c.
    for sid, path in ((ALICE, "/inspect/lookalike/alice"), (CAROL, "/inspect/lookalike/carol")):
        h = cgi_names(inspect(hx, sid, path, LOOKALIKES)["headers"])
        assert xfcc(h.get("x-forwarded-client-cert"))["URI"] == sid, h
        assert h.get("x-caller") == ([sid] if sid == ALICE else None), h
    _, status, body = curl_h2c(hx, ALICE, f"http://{B}:8080/inspect/lookalike-h2", [f"{k}: {v}" for k, v in LOOKALIKES.items()])
    assert status == 200, body
    h = cgi_names(json.loads(body)["headers"])
    assert xfcc(h.get("x-forwarded-client-cert"))["URI"] == ALICE, h
    assert h.get("x-caller") == [ALICE], h
    # A local caller on host B (strict mode) goes through the inbound side only.
    r = hx.b.workload("http_request", "127.0.0.1", 8080, "GET", "/inspect/lookalike-local", json.dumps(LOOKALIKES), uid=UIDS[ALICE], check=False)
    assert r.returncode == 0, r.stderr.decode()[-500:]
    h = cgi_names(json.loads(json.loads(r.stdout)["body"])["headers"])
    assert xfcc(h.get("x-forwarded-client-cert"))["URI"] == ALICE, h


ADMIN = "spiffe://demo.idgate/app/admin"
V2_FORGED = {"X-V2-Caller": ADMIN, "X_V2_Caller": ADMIN}


def raw_response_json(r):
    """The JSON body of the one response RAW read (the connection closed after it)."""
    assert r["eof"] and r["data"].startswith("HTTP/1."), r
    return json.loads(r["data"].split("\r\n\r\n", 1)[1])


def test_a_rule_header_cannot_be_forged_by_dodging_the_rules_host_or_path(hx):
    # b:8084 is api.b.test and alias.b.test; alice's rule sets x-v2-caller for api.b.test and
    # /inspect/v2/ only. Every request to b:8084 loses a workload's copy, whichever Host or path.
    h = cgi_names(inspect(hx, ALICE, "/inspect/v2/rule", {"Host": "api.b.test", **V2_FORGED}, port=8084)["headers"])
    assert h.get("x-v2-caller") == [ALICE], h
    leaked = {}  # every dodge that got a forged copy through, to see them all at once
    for what, sid, host, path in (
        ("an alias from the destination's hosts", ALICE, "alias.b.test", "/inspect/v2/alias"),
        ("the address as Host", ALICE, "10.77.0.2:8084", "/inspect/v2/address"),
        ("a doubled slash", ALICE, "api.b.test", "//inspect/v2/slashes"),
        ("another case", ALICE, "api.b.test", "/inspect/V2/case"),
        ("a workload the rule is not for", CAROL, "api.b.test", "/inspect/v2/carol"),
    ):
        h = cgi_names(inspect(hx, sid, path, {"Host": host, **V2_FORGED}, port=8084)["headers"])
        if "x-v2-caller" in h:
            leaked[what] = h["x-v2-caller"]
    raw = (b"GET /inspect/v2/http10 HTTP/1.0\r\nX-V2-Caller: " + ADMIN.encode() + b"\r\nx_v2_caller: " + ADMIN.encode() + b"\r\n\r\n")
    h = cgi_names(raw_response_json(run_json(hx, "raw_http", B, 8084, raw.hex(), uid=UIDS[ALICE]))["headers"])
    if "x-v2-caller" in h:
        leaked["HTTP/1.0 with no Host"] = h["x-v2-caller"]
    _, status, body = curl_h2c(hx, ALICE, "http://alias.b.test:8084/inspect/v2/h2c-alias", [f"{k}: {v}" for k, v in V2_FORGED.items()],
                               extra=["--resolve", "alias.b.test:8084:10.77.0.2"])
    assert status == 200, body
    h = cgi_names(json.loads(body)["headers"])
    if "x-v2-caller" in h:
        leaked["h2c with an alias as :authority"] = h["x-v2-caller"]
    assert leaked == {}, f"forged x-v2-caller reached the service: {json.dumps(leaked, indent=1)}"


# Trailer fields a service may merge into the request's headers: the identity header and a
# rule's header (under both spellings) must not arrive that way either; others pass.
FORGED_TRAILERS = {"X-Forwarded-Client-Cert": f"URI={ADMIN}", "x_forwarded_client_cert": f"URI={ADMIN}",
                   "X-V2-Caller": ADMIN, "X_V2_Caller": ADMIN, "X-Checksum": "abc"}


def chunked_with_trailers(path, host):
    names = ", ".join(FORGED_TRAILERS)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nTrailer: {names}\r\n\r\n"
    trailers = "".join(f"{k}: {v}\r\n" for k, v in FORGED_TRAILERS.items())
    return (head + "5\r\nhello\r\n0\r\n" + trailers + "\r\n").encode()


def test_request_trailers_cannot_carry_protected_headers(hx):
    seen = {}  # the service's trailers per way in, to see them all at once
    # HTTP/1.1 chunked, through both idgates.
    doc = raw_response_json(run_json(hx, "raw_http", B, 8084, chunked_with_trailers("/inspect/v2/trailers", "api.b.test").hex(), uid=UIDS[ALICE]))
    assert doc["body_len"] == 5 and cgi_names(doc["headers"]).get("x-v2-caller") == [ALICE], doc
    seen["HTTP/1.1 chunked"] = cgi_names(doc["trailers"])
    # h2c, through both idgates.
    r = hx.a.workload("h2c_trailers", B, 8084, "api.b.test", "/inspect/v2/h2c-trailers", json.dumps({}),
                    json.dumps({k.lower(): v for k, v in FORGED_TRAILERS.items()}), uid=UIDS[ALICE], check=False)
    assert r.returncode == 0, r.stderr.decode()[-1000:]
    doc = json.loads(r.stdout)
    assert doc["version"] == "HTTP/2.0" and doc["body_len"] == 5, doc
    seen["h2c"] = cgi_names(doc["trailers"])
    # A local caller on b (strict mode): the inbound side alone strips the identity header.
    r = hx.b.workload("raw_http", "127.0.0.1", 8080, chunked_with_trailers("/inspect/local-trailers", "127.0.0.1").hex(), uid=UIDS[ALICE], check=False)
    assert r.returncode == 0, r.stderr.decode()[-500:]
    doc = raw_response_json(json.loads(r.stdout))
    seen["local caller, HTTP/1.1 chunked"] = {k: v for k, v in cgi_names(doc["trailers"]).items() if k != "x-v2-caller"}
    want = {way: {"x-checksum": ["abc"]} for way in seen}
    assert seen == want, f"protected trailers reached the service: {json.dumps(seen, indent=1)}"


def test_local_callers_get_the_identity_header_and_cannot_forge_it(hx):
    # Strict mode: b's own processes reach its protected HTTP port through idgate as well.
    forged = {"X-Forwarded-Client-Cert": "By=spiffe://demo.idgate/idgate/host/host-b;URI=spiffe://demo.idgate/app/admin"}
    r = hx.b.workload("http_request", "127.0.0.1", 8080, "GET", "/inspect/local", json.dumps(forged), uid=UIDS[ALICE], check=False)
    assert r.returncode == 0, r.stderr.decode()[-500:]
    doc = json.loads(json.loads(r.stdout)["body"])
    fields = xfcc(doc["headers"].get("x-forwarded-client-cert"))
    assert fields["By"] == B_SERVER_ID and fields["URI"] == ALICE, fields
    r = hx.b.workload("http_request", "127.0.0.1", 8080, "GET", "/inspect/local-mallory", json.dumps(forged), uid=UIDS[MALLORY], check=False)
    assert r.returncode != 0, "mallory reached the protected HTTP service locally"
    assert "/inspect/local-mallory" not in hx.b8080.paths()


def test_denied_and_unreachable_are_http_errors_not_plaintext(hx):
    r = request(hx, MALLORY, B, 8080, "/inspect/mallory")
    assert r["status"] == 403, r
    assert "/inspect/mallory" not in hx.b8080.paths(), "a denied request reached the server"
    r = request(hx, ALICE, B, 8082, "/inspect/closed-port")
    assert r["status"] == 502, r


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_jwt(token, jwks):
    """ES256 signature against the JWKS; returns (header, claims)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    h64, c64, s64 = token.split(".")
    header, claims = json.loads(b64url(h64)), json.loads(b64url(c64))
    assert header.get("alg") == "ES256" and header.get("kid"), header
    keys = [k for k in jwks["keys"] if k.get("kid") == header["kid"]]
    assert len(keys) == 1, f"kid {header['kid']} not in the JWKS {jwks}"
    k = keys[0]
    assert k["kty"] == "EC" and k["crv"] == "P-256", k
    pub = ec.EllipticCurvePublicNumbers(int.from_bytes(b64url(k["x"]), "big"), int.from_bytes(b64url(k["y"]), "big"),
                                        ec.SECP256R1()).public_key()
    sig = b64url(s64)
    assert len(sig) == 64, "ES256 signatures are r||s, 64 bytes"
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        pub.verify(der, f"{h64}.{c64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AssertionError(f"JWT signature does not verify against the JWKS: {token}") from None
    return header, claims


def jwt_of(hx, sid, path):
    auth = inspect(hx, sid, path, {"Authorization": "Bearer forged"}, port=8081)["headers"].get("authorization")
    assert auth and len(auth) == 1 and auth[0].startswith("Bearer "), auth
    token = auth[0][len("Bearer "):]
    hx.jwts.append(token)
    return token


def jwks(hx):
    # As a verifier on another host would: host a's admin port is open to the network, and
    # serves only what anyone may read.
    return json.loads(hx.b.run("curl", "-sf", "--max-time", "5", "http://10.77.0.1:15000/jwks.json").stdout)


def check_claims(claims, sid):
    assert claims.get("iss") == "spiffe://demo.idgate/idgate/host/host-a", claims  # whose JWKS verifies it
    aud = claims.get("aud")
    assert claims.get("sub") == sid, claims
    assert aud == JWT_AUDIENCE or aud == [JWT_AUDIENCE], claims
    assert claims["exp"] - claims["iat"] == JWT_TTL, claims
    now = time.time()
    assert claims["iat"] <= now + 2 and claims["exp"] > now, (claims, now)


def test_jwt_svid_verifies_against_jwks_and_is_reminted_before_expiry(hx):
    t1 = jwt_of(hx, ALICE, "/inspect/jwt/1")
    _, c1 = verify_jwt(t1, jwks(hx))
    check_claims(c1, ALICE)
    _, cb = verify_jwt(jwt_of(hx, BOB, "/inspect/jwt/bob"), jwks(hx))
    check_claims(cb, BOB)
    assert jwt_of(hx, ALICE, "/inspect/jwt/2") == t1, "a fresh JWT-SVID was not reused (cached until half life)"

    time.sleep(max(0.0, c1["iat"] + JWT_TTL * 0.65 - time.time()))  # past half life, before expiry
    t2 = jwt_of(hx, ALICE, "/inspect/jwt/3")
    assert t2 != t1, "JWT-SVID not re-minted after half its lifetime"
    _, c2 = verify_jwt(t2, jwks(hx))
    check_claims(c2, ALICE)
    assert c2["exp"] > c1["exp"], (c1, c2)


def test_tls_origination_verifies_the_external_server(hx):
    doc = inspect(hx, ALICE, "/inspect/api", FORGED, host=C, port=80)
    h = doc["headers"]
    assert h.get("authorization") == [f"Bearer {hx.tokens['api']}"], h.get("authorization")
    assert "x-forwarded-client-cert" not in h, "the identity header leaked to an external API"
    assert doc["sni"] == "api.example.com", doc
    assert doc["remote_addr"].split(":")[0] == "10.77.0.1", doc  # straight from host a, over TLS

    r = request(hx, ALICE, C, 81, "/inspect/wrong-name", {"Authorization": "Bearer forged"})
    assert r["status"] == 502, r
    assert hx.c8443.requests() == [], "a request reached a server whose certificate does not match"
    # ...and idgate did try that server: it refused the certificate during the handshake.
    assert "TLS handshake from 10.77.0.1" in hx.c8443.log.with_suffix(".err").read_text()


def test_a_credential_follows_the_destination_not_the_host_header(hx):
    # c:80 is api.example.com (its TLS server name, verified): the rule bound to that name applies.
    doc = inspect(hx, ALICE, "/inspect/api-by-name", {"Host": "api.example.com"}, host=C, port=80)
    assert doc["headers"].get("x-api-key") == [hx.tokens["api"]], doc["headers"]
    # The same Host header on a flow to another destination the workload can reach (b:8080,
    # whose server it might control) gets no credential: the request goes nowhere.
    for headers in ({"Host": "api.example.com"}, {"Host": "API.example.com:443"}):
        r = request(hx, ALICE, B, 8080, "/inspect/host-spoof", headers)
        assert hx.tokens["api"] not in r["body"], f"b received the API's credential: {r['body']}"
        assert r["status"] == 421, r
    assert "/inspect/host-spoof" not in hx.b8080.paths(), "a misdirected request reached b"
    assert hx.idgate_a.decisions(direction="outbound", verdict="misdirected")


def test_the_trail_names_the_credential_rules_applied_never_their_values(hx):
    inspect(hx, ALICE, "/inspect/trail-rules")
    trail = hx.tmp / "state-a" / "trail.jsonl"

    def records():
        return [json.loads(line) for line in trail.read_text().splitlines()] if trail.exists() else []

    mine = eventually(lambda: [r for r in records() if r["spiffe_id"] == ALICE and "alice-token" in r.get("rules", [])],
                      lambda: f"a trail record of alice's request naming her rule: {records()[-5:]}", interval=0.1)
    assert mine[-1]["verdict"] == "tunneled" and mine[-1]["process"]["uid"] == UIDS[ALICE]
    assert hx.tokens["alice"] not in trail.read_text(), "a credential's value reached the trail"


def test_keepalive_many_requests_on_one_connection(hx):
    r = run_json(hx, "http_keepalive", B, 8080, 200, uid=UIDS[ALICE])
    assert r == {"statuses": [200], "count": 200, "auths": [[f"Bearer {hx.tokens['alice']}"]], "sockets": 1}, r


def test_ten_mib_chunked_request_body_echoes_intact(hx):
    r = run_json(hx, "http_echo", B, 8080, 10 * MIB, uid=UIDS[ALICE], timeout=90)
    assert r["status"] == 200 and r["len"] == 10 * MIB and r["got_sha"] == r["sent_sha"], r


def test_ten_mib_chunked_response_arrives_intact(hx):
    r = run_json(hx, "http_bytes", B, 8080, 10 * MIB, uid=UIDS[ALICE], timeout=90)
    assert r == {"status": 200, "len": 10 * MIB, "sha": pattern_sha(10 * MIB)}, r


def test_pipelined_requests_answered_in_order(hx):
    r = run_json(hx, "http_pipeline", B, 8080, uid=UIDS[ALICE])
    token = [f"Bearer {hx.tokens['alice']}"]
    assert r == [{"status": 200, "path": f"/inspect/pipe/{i}", "authorization": token} for i in range(3)], r


def test_websocket_upgrade_passes_bytes_intact(hx):
    r = run_json(hx, "websocket_echo", B, 8080, MIB, uid=UIDS[ALICE], timeout=60)
    assert r == {"status": 101, "accept_ok": True, "len": MIB, "intact": True}, r


@pytest.mark.parametrize("raw", [b"GARBAGE\r\n\r\n", b"GET /inspect/bad HTTP/1.1\r\nHost: 10.77.0.2\r\nbad header line\r\n\r\n"])
def test_malformed_request_gets_400_and_close_others_unaffected(hx, raw):
    r = run_json(hx, "raw_http", B, 8080, raw.hex(), uid=UIDS[ALICE])
    assert r["data"].startswith("HTTP/1.1 400"), r
    assert r["eof"], f"connection left open after a 400: {r}"
    assert not any(p.startswith(("/inspect/bad", "GARBAGE")) for p in hx.b8080.paths())
    doc = inspect(hx, ALICE, "/inspect/after-malformed")
    assert doc["headers"].get("authorization") == [f"Bearer {hx.tokens['alice']}"]


def rotated_to(hx, what):
    """Waits until alice's requests carry her current token."""
    seen = []

    def current():
        seen.append(inspect(hx, ALICE, "/inspect/rotation")["headers"].get("authorization"))
        return seen[-1] == [f"Bearer {hx.tokens['alice']}"]

    eventually(current, lambda: f"{what}: {seen[-1]}", timeout=3.0, interval=0.2)


def test_secret_file_rotation_without_restart(hx):
    old = hx.tokens["alice"]
    assert inspect(hx, ALICE, "/inspect/rotation")["headers"].get("authorization") == [f"Bearer {old}"]
    hx.set_token("alice", "alice-rotated-in-place-" + old[-8:])  # truncate + write, same inode
    rotated_to(hx, "in-place rewrite picked up")
    hx.set_token("alice", "alice-rotated-by-rename-" + old[-8:], atomic=True)  # new inode, as secret managers do
    rotated_to(hx, "rename-replace picked up")
    assert hx.idgate_a.proc.poll() is None


def test_secret_file_with_loose_mode_is_refused_fail_closed(hx):
    path = hx.secrets_dir / "alice-token"
    os.chmod(path, 0o644)
    try:
        r = request(hx, ALICE, B, 8080, "/inspect/loose-mode", FORGED)
        assert r["status"] >= 500, f"a request went out although its secret file is world-readable: {r}"
        assert "/inspect/loose-mode" not in hx.b8080.paths(), "forwarded without the credential it must carry"
        assert hx.tokens["alice"] not in r["body"]
    finally:
        os.chmod(path, 0o600)
    doc = inspect(hx, ALICE, "/inspect/mode-restored")
    assert doc["headers"].get("authorization") == [f"Bearer {hx.tokens['alice']}"]


def test_secrets_never_appear_in_logs_or_status(hx):
    # Exercise every secret source once more, so this test means something on its own.
    inspect(hx, ALICE, "/inspect/redaction", FORGED)
    inspect(hx, BOB, "/inspect/redaction", FORGED)
    inspect(hx, CAROL, "/inspect/env/redaction")
    inspect(hx, ALICE, "/inspect/redaction", host=C, port=80)
    jwt_of(hx, ALICE, "/inspect/redaction")
    request(hx, ALICE, C, 81, "/inspect/redaction-wrong")
    time.sleep(0.5)  # let the log lines land
    sources = {
        "idgate a log": hx.idgate_a.log.read_text(),
        "idgate b log": hx.idgate_b.log.read_text(),
        "idgate a /status": json.dumps(hx.idgate_a.status()),
        "idgate b /status": json.dumps(hx.idgate_b.status()),
    }
    assert "DEBUG" in sources["idgate a log"], "idgate a did not log at debug level: the check would prove nothing"
    needles = {v: "secret" for v in hx.secret_values}
    for t in hx.jwts:
        needles[t] = "JWT"
        needles[t.split(".")[2]] = "JWT signature"
    leaks = [(where, kind, value[:16] + "...") for where, text in sources.items() for value, kind in needles.items() if value in text]
    assert not leaks, f"secrets in logs/status: {leaks}"


def test_upstream_closing_idle_connections_does_not_fail_requests(hx):
    # B's idgate keeps one connection to the service per tunnelled connection; the service
    # closes it after every answer (an idle timeout), so each next request finds it closed
    # and must go out on a new one instead of failing with 502. (A close that crosses a
    # request already on the wire is a race no HTTP/1 client can retry safely.)
    server = hx.b.start_workload("one_shot_server", 8083)
    try:
        hx.b.wait_listening(8083)
        r = run_json(hx, "http_same_connection", B, 8083, 50, uid=UIDS[ALICE])
        assert r == {"statuses": [200] * 50, "bodies": ["ok"] * 50, "sockets": 1}, r
    finally:
        server.kill()
