"""AWS for the tests: moto's server (S3, STS and IAM on one HTTPS port) with request
authentication on, in a test host's namespace, so that every SigV4 signature idgate makes is
checked, and the IAM policy of the role it assumed applied. workloads/aws_moto.py runs moto and
adds in front of it what moto lacks of AWS's checks (unsigned AssumeRoleWithWebIdentity with
its token checked, the date's skew, x-amz-content-sha256, expired credentials); its docstring
says what is checked where. Every request the server gets is logged (Moto.requests), so that a
test can recompute idgate's signatures with botocore's signer (botocore_signature).

Nothing here resolves a name: requests go to the server's address, in the host's namespace."""
import base64
import hashlib
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from netns import WORKLOADS, in_netns

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
STS_HOST = f"sts.{REGION}.amazonaws.com"
S3_HOST = f"s3.{REGION}.amazonaws.com"
AUDIENCE = "sts.amazonaws.com"
BUCKET = "idgate-test"
OBJECT_KEY = "hello.txt"
OBJECT_BODY = b"hello from s3\n"
READER, NOBODY = "alice-reader", "mallory-none"
AMZ_DATE = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def role_arn(name):
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def provider_of(issuer):
    """The IAM OIDC provider's name for an https issuer URL: host and path, as AWS makes it."""
    parts = urlsplit(issuer)
    return parts.netloc + parts.path


class AwsError(Exception):
    def __init__(self, status, code, body):
        super().__init__(f"{status} {code}: {body[:300]!r}")
        self.status, self.code, self.body = status, code, body


@dataclass
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None
    expiration: str | None = None


@dataclass
class Moto:
    host: object  # the netns.Host it runs in
    proc: object
    port: int
    ca: Path  # the CA file that verifies its certificate
    log: Path  # one JSON object a line, a request each
    issuer: str
    provider_arn: str
    roles: dict = field(default_factory=dict)  # name -> ARN
    bucket: str = BUCKET
    region: str = REGION

    @property
    def address(self):
        return self.host.ip

    def requests(self, **match):
        """The requests the server got (oldest first), those whose fields equal `match`: each
        {time, method, path, headers (lowercase names), chunked, body_b64, action (a form's
        Action), status, error (AWS error code), by ("front": refused by aws_moto's own checks,
        "moto"), response (the body, when refused)}."""
        if not self.log.exists():
            return []
        records = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]

    def request(self, method, url, headers=None, body=b"", timeout=10):
        """Sends one HTTPS request to the server (whatever host `url` names: it is the TLS name
        and Host header; the connection goes to the server's address). Returns (status,
        {lowercase name: value}, body)."""
        return https_request(self.host.ns, self.address, self.port, self.ca, method, url, headers, body, timeout)

    def assume_role_with_web_identity(self, role, token, session_name="test-control", duration=900):
        """STS AssumeRoleWithWebIdentity as AWS documents it: an unsigned form POST. Returns
        Credentials, or raises AwsError."""
        form = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": self.roles.get(role, role),
                "RoleSessionName": session_name, "WebIdentityToken": token, "DurationSeconds": str(duration)}
        status, _, body = self.request("POST", f"https://{STS_HOST}/", {"content-type": "application/x-www-form-urlencoded"}, urlencode(form).encode())
        if status != 200:
            raise AwsError(status, error_code(body), body)
        ns = {"s": "https://sts.amazonaws.com/doc/2011-06-15/"}
        c = ET.fromstring(body).find(".//s:Credentials", ns)
        return Credentials(*(c.findtext(f"s:{n}", namespaces=ns) for n in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")))

    def signed_request(self, method, url, creds, body=b"", headers=None, service=None, **sign_kw):
        """A request signed here (see `sign`), sent to the server."""
        service = service or ("s3" if urlsplit(url).hostname.startswith("s3.") else "sts")
        signed = sign(method, url, headers or {}, body, creds, service=service, region=self.region, **sign_kw)
        return self.request(method, url, signed, body)

    def boto3(self, service, creds, operation, **kwargs):
        """One boto3 call (a control, signed by botocore), made from the server's namespace."""
        import boto3
        from botocore.config import Config

        def call():
            client = boto3.client(service, endpoint_url=f"https://{self.address}:{self.port}", region_name=self.region, verify=str(self.ca),
                                  aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key, aws_session_token=creds.token,
                                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
            return getattr(client, operation)(**kwargs)

        return in_netns(self.host.ns, call)


def start_moto(host, workdir, *, cert, key, ca, issuer, port=443, subjects=None, jwks=None, max_session_seconds=None, timeout=30):
    """Starts moto (workloads/aws_moto.py) on `host` (listening on all its addresses, `port`,
    with `cert`/`key`: a certificate for STS_HOST, S3_HOST and host.ip, signed by `ca`), sets
    up, while its authentication is still off:
    - IAM OIDC provider for `issuer` (an https URL), client ID AUDIENCE;
    - roles READER and NOBODY, each trusting sts:AssumeRoleWithWebIdentity from that provider
      with aud = AUDIENCE and, if `subjects` maps the role's name to a SPIFFE ID, sub = it;
      READER may s3:GetObject/PutObject on BUCKET/*, s3:ListBucket on BUCKET and
      sts:GetCallerIdentity; NOBODY has no policy (moto, as AWS, lets anyone call
      GetCallerIdentity);
    - bucket BUCKET with OBJECT_KEY = OBJECT_BODY;
    then turns authentication on (for good) and checks that a request with unknown credentials is
    refused. `jwks` (a JWK set file, read at each call) makes STS check the token's signature
    too; `max_session_seconds` caps the credentials' lifetime. Returns (Popen, Moto)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{host.name}-aws-requests.jsonl"
    log.unlink(missing_ok=True)
    args = [sys.executable, WORKLOADS / "aws_moto.py", "--port", port, "--cert", cert, "--key", key, "--log", log]
    if jwks:
        args += ["--jwks", jwks]
    if max_session_seconds:
        args += ["--max-session-seconds", max_session_seconds]
    out = open(workdir / f"{host.name}-aws-moto.log", "w")
    proc = host.popen(*args, stdout=out, stderr=subprocess.STDOUT)
    provider = provider_of(issuer)
    moto = Moto(host, proc, port, Path(ca), log, issuer, f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}",
                {READER: role_arn(READER), NOBODY: role_arn(NOBODY)})
    wait_answering(moto, workdir / f"{host.name}-aws-moto.log", timeout)
    root = Credentials("AKIABOOTSTRAPEXAMPLE", "bootstrap")  # any key does while authentication is off
    moto.boto3("iam", root, "create_open_id_connect_provider", Url=issuer, ClientIDList=[AUDIENCE], ThumbprintList=["0" * 40])
    reader_policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{BUCKET}/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"},
        {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}
    for name in (READER, NOBODY):
        condition = {f"{provider}:aud": AUDIENCE}
        if (subjects or {}).get(name):
            condition[f"{provider}:sub"] = subjects[name]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Federated": moto.provider_arn},
                                                          "Action": "sts:AssumeRoleWithWebIdentity", "Condition": {"StringEquals": condition}}]}
        moto.boto3("iam", root, "create_role", RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    moto.boto3("iam", root, "put_role_policy", RoleName=READER, PolicyName="idgate-test-s3", PolicyDocument=json.dumps(reader_policy))
    moto.boto3("s3", root, "create_bucket", Bucket=BUCKET)
    moto.boto3("s3", root, "put_object", Bucket=BUCKET, Key=OBJECT_KEY, Body=OBJECT_BODY)
    status, _, body = moto.request("POST", f"https://{host.ip}/moto-api/reset-auth", {}, b"0")
    if status != 200:
        raise RuntimeError(f"moto's authentication not turned on: {status} {body!r}")
    status, _, body = moto.signed_request("GET", f"https://{S3_HOST}/{BUCKET}/{OBJECT_KEY}", Credentials("AKIANOSUCHKEYEXAMPLE", "nope"))
    if status != 403 or error_code(body) != "InvalidAccessKeyId":
        raise RuntimeError(f"moto's authentication is not on: unknown credentials got {status} {body!r}")
    return proc, moto


def wait_answering(moto, logfile, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if moto.proc.poll() is not None:
            raise RuntimeError(f"aws_moto exited {moto.proc.returncode}:\n{logfile.read_text()}")
        try:
            status, _, _ = moto.request("GET", f"https://{moto.address}/moto-api/data.json", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"aws_moto not answering after {timeout} s:\n{logfile.read_text()}")
        time.sleep(0.1)


def https_request(ns, address, port, ca, method, url, headers=None, body=b"", timeout=10):
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    context = ssl.create_default_context(cafile=str(ca))

    def go():
        sock = socket.create_connection((address, port), timeout=timeout)
        tls = context.wrap_socket(sock, server_hostname=parts.hostname)
        conn = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout)
        conn.sock = tls
        try:
            conn.putrequest(method, path or "/", skip_host=True, skip_accept_encoding=True)
            hdrs = {k.lower(): v for k, v in (headers or {}).items()}
            hdrs.setdefault("host", parts.netloc)
            if body or method in ("POST", "PUT"):
                hdrs.setdefault("content-length", str(len(body)))
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.endheaders(body or None)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    return in_netns(ns, go)


def error_code(body):
    """The <Code> of an AWS XML error body (S3's or STS's), or None."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text.partition("<Code>")[2].partition("</Code>")[0] or None


# --- SigV4 with botocore's signer -----------------------------------------------------------------

def _botocore_auth(method, url, headers, body, access_key, secret_key, token, service, region):
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    headers = {k.lower(): v for k, v in dict(headers).items()}
    if "authorization" in headers:  # sign what the request's signer signed, no more, no less
        names = headers.pop("authorization").partition("SignedHeaders=")[2].partition(",")[0].split(";")
        headers = {k: v for k, v in headers.items() if k in names}
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    request.context["timestamp"] = headers["x-amz-date"]
    auth = (S3SigV4Auth if service == "s3" else SigV4Auth)(BotoCredentials(access_key, secret_key, token), service, region)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return (f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}, "
            f"Signature={signature}")


def botocore_signature(method, url, headers, body, access_key, secret_key, token, service, region=REGION):
    """The Authorization header botocore's signer computes for this request (`url`: scheme, the
    Host header's value, the path and query as sent), at its x-amz-date. If `headers` hold an
    Authorization header, the headers it names in SignedHeaders are signed, and only they (as
    moto does); otherwise all but those botocore never signs. As botocore, it takes a present
    x-amz-content-sha256 header's value as the payload hash, else hashes `body`."""
    return _botocore_auth(method, url, headers, body, access_key, secret_key, token, service, region)


def signature_of_record(record, creds, service=None, region=REGION):
    """(sent, recomputed) Authorization headers of a logged request (Moto.requests)."""
    headers = record["headers"]
    service = service or headers["authorization"].partition("Credential=")[2].split("/")[3]
    url = f"https://{headers['host']}{record['path']}"
    body = base64.b64decode(record["body_b64"])
    return headers["authorization"], botocore_signature(record["method"], url, headers, body, creds.access_key, creds.secret_key, creds.token, service, region)


def sign(method, url, headers, body, creds, *, service, region=REGION, amz_date=None, payload_hash=None, sign_content_sha256=None):
    """Headers for a request signed with `creds` by botocore's signer: `headers` plus host,
    x-amz-date (`amz_date`, default now), x-amz-security-token, x-amz-content-sha256 (S3: always,
    `payload_hash` or UNSIGNED-PAYLOAD; others: when `payload_hash` is given) and Authorization,
    all signed. For controls: tamper with the result, or sign with wrong credentials."""
    parts = urlsplit(url)
    out = {k.lower(): v for k, v in headers.items()}
    out.setdefault("host", parts.netloc)
    out["x-amz-date"] = amz_date or time.strftime(AMZ_DATE, time.gmtime())
    if creds.token:
        out["x-amz-security-token"] = creds.token
    if service == "s3" or payload_hash is not None:
        out["x-amz-content-sha256"] = payload_hash or UNSIGNED_PAYLOAD
    if body and "content-length" not in out:
        out["content-length"] = str(len(body))
    out["authorization"] = _botocore_auth(method, url, out, body, creds.access_key, creds.secret_key, creds.token, service, region)
    return out


def sha256_hex(body):
    return hashlib.sha256(body).hexdigest()


# --- web identity tokens ----------------------------------------------------------------------------

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def es256_jwt(private_key, claims, kid=None):
    """A JWT signed with an EC P-256 key (ES256), as a JWT-SVID is."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    header = {"alg": "ES256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def jwt_svid_claims(issuer, spiffe_id, audience=AUDIENCE, lifetime=300):
    now = int(time.time())
    return {"iss": issuer, "sub": spiffe_id, "aud": audience, "iat": now, "exp": now + lifetime}


def write_jwks(path, keys):
    """A JWK set of EC P-256 public keys, `keys` = {kid: public or private key}."""
    entries = []
    for kid, k in keys.items():
        numbers = (k.public_key() if hasattr(k, "public_key") else k).public_numbers()
        entries.append({"kty": "EC", "crv": "P-256", "kid": kid, "use": "jwt-svid",
                        "x": _b64url(numbers.x.to_bytes(32, "big")), "y": _b64url(numbers.y.to_bytes(32, "big"))})
    Path(path).write_text(json.dumps({"keys": entries}))
    return Path(path)
