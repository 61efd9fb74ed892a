"""moto's server (S3, STS, IAM on one HTTPS port), with the parts of AWS's request checking that
moto lacks added in front of it, and a log of every request it gets. Started by aws.start_moto.

    aws_moto.py --port 443 --cert C --key K --log requests.jsonl [--jwks bundle.json] [--max-session-seconds N]

moto itself checks, once its authentication is on, each SigV4 signature (as botocore computes
it, from the headers named in SignedHeaders, taking x-amz-content-sha256's value as the payload
hash when that header is signed), the access key, the session token (it must be the one STS
issued with the key), and the IAM policies of the user or assumed role. Its authentication is off
at start (settings.INITIAL_NO_AUTH_ACTION_COUNT is infinite) so that the test can set things up;
`POST /moto-api/reset-auth` with body `0` turns it on, and from then on this server refuses any
/moto-api request, so nothing turns it off again.

Added here, as AWS does (each refusal with AWS's error code):
- AssumeRoleWithWebIdentity is not signed (AWS does not authenticate the call): moto would
  fail on the missing Authorization header (a 500), so its check is skipped for this action
  alone. Instead the web identity token is checked: a JWT whose `iss` is an OIDC provider
  registered in IAM (`InvalidIdentityToken`), whose `aud` is one of that provider's client IDs
  (`InvalidIdentityToken`), unexpired (`ExpiredTokenException`), and, with --jwks, signed (ES256)
  by a key of that JWK set (`InvalidIdentityToken`); then the role must exist and its trust
  policy allow sts:AssumeRoleWithWebIdentity to `Federated` = that provider, its StringEquals /
  StringLike conditions on `<provider>:sub` / `:aud` met (`AccessDenied`). Without --jwks the
  token's signature is not checked (moto never checks the token at all).
- x-amz-date more than 15 minutes from now: S3 `RequestTimeTooSkewed`, other services
  `SignatureDoesNotMatch` (Signature expired), both 403. moto does not look at the date.
- S3 requests must carry x-amz-content-sha256 (400 `InvalidRequest`), and unless it is
  UNSIGNED-PAYLOAD / STREAMING-*, it must be the body's SHA-256 (400 XAmzContentSHA256Mismatch).
  Other services hash the body themselves: a signed x-amz-content-sha256 header that is not
  the body's SHA-256 (UNSIGNED-PAYLOAD included) is `SignatureDoesNotMatch` (moto would take
  the header's value for the hash, unchecked).
- moto checks signatures over the URL as werkzeug rebuilt it (decoded): keys with '+', '=',
  '*' or non-ASCII, or query values with '/', fail though rightly signed. Its check is given
  instead the canonical form (decoded, encoded again as SigV4 says) of the target as sent.
- Temporary credentials past their expiration: `ExpiredToken` (S3 400, others 403). moto never
  expires them. --max-session-seconds caps the lifetime AssumeRoleWithWebIdentity grants (to
  test renewal).
"""
import argparse
import base64
import datetime
import fnmatch
import hashlib
import io
import json
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from xml.sax.saxutils import escape

from moto.core.authorization import ActionAuthenticatorMixin
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

ACCOUNT = "123456789012"
SKEW = datetime.timedelta(minutes=15)
AMZ_DATE = "%Y%m%dT%H%M%SZ"
OPTIONS = None
LOCK = threading.Lock()
STATE = {"auth_on": False}


def now():
    return datetime.datetime.now(datetime.UTC)


class Refused(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --- moto patches -----------------------------------------------------------------------------

_authenticate = ActionAuthenticatorMixin._authenticate_and_authorize_action


_REQUEST = threading.local()  # the request's path and query as sent (RAW_URI), set in front


def canonical_uri(raw):
    """AWS's canonical URI and query of a request target: the path decoded and encoded again
    (all but unreserved characters and '/'), the query's names and values likewise."""
    path, _, query = raw.partition("?")
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append(f"{urllib.parse.quote(urllib.parse.unquote(name), safe='~')}={urllib.parse.quote(urllib.parse.unquote(value), safe='~')}")
    return urllib.parse.quote(urllib.parse.unquote(path), safe="/~") + ("?" + "&".join(pairs) if pairs else "")


def _authenticate_except_web_identity(self, iam_request_cls, resource="*"):
    # AssumeRoleWithWebIdentity is unauthenticated at AWS; its token is checked in front (below).
    if getattr(self, "service_name", None) == "sts" and self._get_action() == "AssumeRoleWithWebIdentity":
        return None
    # moto checks the signature over the URL werkzeug rebuilt (request.url), whose path and query
    # are not encoded as they were sent: a key with '+', '=', '*' or non-ASCII, or a query value
    # with '/', would fail. Check it over the canonical form of the target as sent, as AWS does.
    raw = getattr(_REQUEST, "raw_uri", None)
    if not raw:
        return _authenticate(self, iam_request_cls, resource)
    saved = self.uri
    self.uri = "https://moto" + canonical_uri(raw)
    try:
        return _authenticate(self, iam_request_cls, resource)
    finally:
        self.uri = saved


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_except_web_identity


def _cap_duration():
    from moto.sts.models import STSBackend

    original = STSBackend.assume_role_with_web_identity

    def capped(self, **kwargs):
        if OPTIONS.max_session_seconds:
            kwargs["duration"] = min(int(kwargs.get("duration") or 3600), OPTIONS.max_session_seconds)
        return original(self, **kwargs)

    STSBackend.assume_role_with_web_identity = capped


# --- checks in front of moto --------------------------------------------------------------------

def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def iam_backend():
    from moto.iam.models import iam_backends

    return iam_backends[ACCOUNT]["aws"]


def verify_es256(header, signing_input, signature):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if header.get("alg") != "ES256" or len(signature) != 64:
        return False
    keys = json.loads(Path(OPTIONS.jwks).read_text()).get("keys", [])
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    for jwk in keys:
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            continue
        if "kid" in header and "kid" in jwk and header["kid"] != jwk["kid"]:
            continue
        public = ec.EllipticCurvePublicNumbers(int.from_bytes(b64url(jwk["x"]), "big"), int.from_bytes(b64url(jwk["y"]), "big"), ec.SECP256R1()).public_key()
        try:
            public.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            return True
        except InvalidSignature:
            continue
    return False


def condition_met(operator, values, claims, provider):
    for key, wanted in values.items():
        prefix = provider + ":"
        if not key.startswith(prefix):
            return False  # a condition key this emulation does not know: not met (fail closed)
        actual = claims.get(key[len(prefix):])
        actual = actual if isinstance(actual, list) else [actual]
        wanted = wanted if isinstance(wanted, list) else [wanted]
        if operator == "StringEquals":
            ok = any(a == w for a in actual for w in wanted)
        elif operator == "StringLike":
            ok = any(isinstance(a, str) and fnmatch.fnmatchcase(a, w) for a in actual for w in wanted)
        else:
            return False
        if not ok:
            return False
    return True


def trust_allows(document, provider_arn, provider, claims):
    statements = json.loads(document)["Statement"]
    for st in statements if isinstance(statements, list) else [statements]:
        actions = st.get("Action", [])
        actions = actions if isinstance(actions, list) else [actions]
        federated = st.get("Principal", {}).get("Federated", []) if isinstance(st.get("Principal"), dict) else []
        federated = federated if isinstance(federated, list) else [federated]
        if st.get("Effect") != "Allow" or provider_arn not in federated:
            continue
        if not any(fnmatch.fnmatchcase("sts:AssumeRoleWithWebIdentity", a) for a in actions):
            continue
        if all(condition_met(op, vals, claims, provider) for op, vals in st.get("Condition", {}).items()):
            return True
    return False


def check_web_identity(form):
    token = form.get("WebIdentityToken", "")
    role_arn = form.get("RoleArn", "")
    try:
        head64, claims64, sig64 = token.split(".")
        header, claims, signature = json.loads(b64url(head64)), json.loads(b64url(claims64)), b64url(sig64)
        assert isinstance(claims, dict)
    except Exception:
        raise Refused(400, "InvalidIdentityToken", "The web identity token is not a valid JWT") from None
    iss = str(claims.get("iss", ""))
    parsed = urllib.parse.urlparse(iss)
    provider = parsed.netloc + parsed.path
    provider_arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}"
    found = iam_backend().open_id_providers.get(provider_arn)
    if parsed.scheme != "https" or found is None:
        raise Refused(400, "InvalidIdentityToken", f"No OpenIDConnect provider found in your account for {iss}")
    auds = claims.get("aud")
    auds = auds if isinstance(auds, list) else [auds]
    if not any(a in found.client_id_list for a in auds):
        raise Refused(400, "InvalidIdentityToken", f"Incorrect token audience {auds}")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp <= time.time():
        raise Refused(400, "ExpiredTokenException", f"Token expired: exp {exp}, now {int(time.time())}")
    if OPTIONS.jwks and not verify_es256(header, f"{head64}.{claims64}".encode(), signature):
        raise Refused(400, "InvalidIdentityToken", "The web identity token's signature could not be verified")
    denied = Refused(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
    try:
        role = iam_backend().get_role_by_arn(role_arn)
    except Exception:
        raise denied from None
    if not trust_allows(role.assume_role_policy_document, provider_arn, provider, claims):
        raise denied


def credential(authorization):
    """(access key, date, region, service) of a SigV4 Authorization header."""
    scope = authorization.partition("Credential=")[2].partition(",")[0].strip()
    parts = scope.split("/")
    if not authorization.startswith("AWS4-HMAC-SHA256 ") or len(parts) != 5:
        raise Refused(400, "InvalidRequest", "not a SigV4 Authorization header")
    return parts[0], parts[1], parts[2], parts[3]


def check_signed(headers, body):
    access_key, _, _, service = credential(headers["authorization"])
    s3 = service == "s3"
    signed = headers["authorization"].partition("SignedHeaders=")[2].partition(",")[0].split(";")
    stamp = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(stamp, AMZ_DATE).replace(tzinfo=datetime.UTC)
    except ValueError:
        raise Refused(403, "AccessDenied" if s3 else "IncompleteSignature", f"bad or missing x-amz-date {stamp!r}") from None
    if abs(now() - when) > SKEW:
        if s3:
            raise Refused(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
        raise Refused(403, "SignatureDoesNotMatch", f"Signature expired: {stamp} is now earlier than {(now() - SKEW).strftime(AMZ_DATE)}")
    digest = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if s3:
        if claimed is None:
            raise Refused(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        if claimed != "UNSIGNED-PAYLOAD" and not claimed.startswith("STREAMING-") and claimed != digest:
            raise Refused(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
    elif claimed is not None and "x-amz-content-sha256" in signed and claimed != digest:
        raise Refused(403, "SignatureDoesNotMatch", "x-amz-content-sha256 is not the body's SHA-256 (this service hashes the body itself)")
    from moto.sts.models import sts_backends

    for role in sts_backends[ACCOUNT]["aws"].assumed_roles:
        if role.access_key_id == access_key and role.expiration.replace(tzinfo=datetime.UTC) <= now():
            if s3:
                raise Refused(400, "ExpiredToken", "The provided token has expired.")
            raise Refused(403, "ExpiredToken", "The security token included in the request is expired")


def error_body(service, refusal):
    code, message = escape(refusal.code), escape(refusal.message)
    if service == "s3":
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{uuid.uuid4()}</RequestId></Error>'
    kind = "Sender" if refusal.status < 500 else "Receiver"
    return (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>{kind}</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")


# --- the WSGI application: log, check, then moto ------------------------------------------------

def read_body(environ):
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def header_map(environ):
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers[key.replace("_", "-").lower()] = value
    return headers


def application(moto_app):
    def app(environ, start_response):
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        headers = header_map(environ)
        body = read_body(environ)
        path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        _REQUEST.raw_uri = path
        record = {"time": now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "method": environ["REQUEST_METHOD"], "path": path,
                  "headers": headers, "chunked": chunked, "body_b64": base64.b64encode(body).decode()}
        form = {}
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(urllib.parse.parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        record["action"] = form.get("Action")
        service = None
        try:
            if path.startswith("/moto-api"):
                if STATE["auth_on"]:
                    raise Refused(403, "AccessDenied", "moto's API is closed once authentication is on")
                if path.startswith("/moto-api/reset-auth"):
                    if body.strip() not in (b"0", b"0.0"):
                        raise Refused(403, "AccessDenied", "authentication can only be turned on")
                    STATE["auth_on"] = True
            elif form.get("Action") == "AssumeRoleWithWebIdentity":  # signed or not: AWS ignores a signature
                service = "sts"
                check_web_identity(form)
            elif "authorization" in headers:
                service = credential(headers["authorization"])[3]
                check_signed(headers, body)
        except Refused as refusal:
            text = error_body(service, refusal).encode()
            record.update(status=refusal.status, error=refusal.code, by="front")
            log(record)
            start_response(f"{refusal.status} Refused", [("Content-Type", "text/xml"), ("Content-Length", str(len(text)))])
            return [text]
        captured = {}

        def start(status, response_headers, exc_info=None):
            captured["status"] = int(status.split()[0])
            return start_response(status, response_headers, exc_info)

        chunks = list(moto_app(environ, start))
        record.update(status=captured.get("status"), by="moto")
        if captured.get("status", 500) >= 400:
            text = b"".join(chunks)[:4000].decode("utf-8", "replace")
            record["error"] = text.partition("<Code>")[2].partition("</Code>")[0] or None
            record["response"] = text
        elif record.get("action") == "AssumeRoleWithWebIdentity":
            # The credentials a client got: what a test recomputes that client's signatures with.
            record["response"] = b"".join(chunks).decode("utf-8", "replace")
        log(record)
        return chunks

    return app


def log(record):
    with LOCK, open(OPTIONS.log, "a") as f:
        f.write(json.dumps(record) + "\n")


def main():
    global OPTIONS
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--jwks")
    parser.add_argument("--max-session-seconds", type=int)
    OPTIONS = parser.parse_args()
    _cap_duration()
    moto_app = DomainDispatcherApplication(create_backend_app)
    print(f"aws_moto: serving on {OPTIONS.host}:{OPTIONS.port}", file=sys.stderr, flush=True)
    run_simple(OPTIONS.host, OPTIONS.port, application(moto_app), threaded=True, ssl_context=(OPTIONS.cert, OPTIONS.key))


if __name__ == "__main__":
    main()
