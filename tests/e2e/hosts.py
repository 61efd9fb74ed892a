"""Config text for the test and demo hosts, and what digest_server.py answers."""
import hashlib

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


def pattern_sha(n):
    """The sha256 of the `n` bytes of pattern digest_server.py answers with."""
    block = bytes(range(256)) * 256
    out = bytearray()
    while len(out) < n:
        out += block
    return hashlib.sha256(bytes(out[:n])).hexdigest()
