"""A host CA from `idgate ca issue` may issue only the SPIFFE IDs it was granted (`--grant`,
exact or `prefix/*`) and its own host's ID, written in the certificate: every peer refuses a
certificate outside its issuer's grant, whoever made it (the test mints them with the host CA's
key, as a compromised host would), and `check` refuses a local workload rule the CA may not
issue, at its line."""
import json
import re
import subprocess

from cryptography import x509

import pki
from fleet import ADDRESSES, ca, config, host_id, init_root, issue
from hosts import TRUST_DOMAIN
from netns import IDGATE
from test_tunnel import client

GRANT_OID = "1.2.840.113556.1.8000.2554.6718.62988.63289.16463.47294.13902294.3550559"
ALICE = f"spiffe://{TRUST_DOMAIN}/app/alice"
A_GRANTS = (ALICE, f"spiffe://{TRUST_DOMAIN}/tools/*")


def mint(net, ca_dir, spiffe_id, name, address=None):
    """An SVID for `spiffe_id` signed with the host CA's key: what a compromised host can make.
    Writes <name>.pem (the leaf, then the CA) and <name>-key.pem; returns the chain's path."""
    return pki.issue(ca_dir, net.tmp / f"{name}.pem", net.tmp / f"{name}-key.pem", uris=[spiffe_id], ips=[address] if address else [],
                     with_issuer=True)


def call(net, peer_ip, chain):
    """What the peer idgate at `peer_ip` does with a client presenting `chain` (tls_caller.py):
    "accepted" if it speaks HTTP/2 to it, "refused" if it ends the connection."""
    out = net.a.workload("tls_caller", peer_ip, 15008, chain, str(chain).replace(".pem", "-key.pem"))
    return out.stdout.decode().strip()


def test_a_host_ca_issues_only_what_it_was_granted(net):
    root = init_root(net.tmp / "root")
    bundle = root / "ca.pem"
    a_ca = issue(net, root, "a", grants=A_GRANTS)
    b_ca = issue(net, root, "b")
    issue(net, root, "c")

    # The grant is a non-critical extension that other X.509 software reads.
    cert = x509.load_pem_x509_certificate((a_ca / "ca.pem").read_bytes())
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(GRANT_OID))
    assert not ext.critical
    der = ext.value.value
    assert host_id("a").encode() in der and ALICE.encode() in der and f"spiffe://{TRUST_DOMAIN}/tools/".encode() in der, der
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", a_ca / "ca.pem"], capture_output=True, text=True, check=True).stdout
    assert GRANT_OID in text, text

    # ca issue refuses a grant outside the root's trust domain or of another host's ID.
    bad = ca("issue", "--dir", root, "--host", "host-x", "--address", "10.77.0.9", "--grant", "spiffe://other.td/app/x", "--out", net.tmp / "x", check=False)
    assert bad.returncode != 0 and "trust domain" in bad.stderr, bad
    bad = ca("issue", "--dir", root, "--host", "host-x", "--address", "10.77.0.9", "--grant", f"spiffe://{TRUST_DOMAIN}/idgate/*",
             "--out", net.tmp / "x", check=False)
    assert bad.returncode != 0 and "idgate" in bad.stderr, bad

    # Host a's config maps uids to bob and mallory, which its CA may not issue: check names each rule.
    a_text = config(net, "a", a_ca, bundle)
    (net.tmp / "a-full.toml").write_text(a_text)
    r = net.a.run(IDGATE, "check", "-c", net.tmp / "a-full.toml", check=False)
    out = (r.stdout + r.stderr).decode()
    bob_line = a_text.splitlines().index(f'spiffe_id = "spiffe://{TRUST_DOMAIN}/app/bob"') + 1
    assert r.returncode == 1 and re.search(rf"a-full\.toml:{bob_line}:\d+: .*may not issue spiffe://{TRUST_DOMAIN}/app/bob", out), out
    assert f"may not issue spiffe://{TRUST_DOMAIN}/app/mallory" in out and f"may not issue {ALICE}" not in out, out
    # A server ID that is not the CA's host fails the self-test.
    (net.tmp / "a-other.toml").write_text(a_text.replace('hostname = "host-a"', 'hostname = "host-z"'))
    r = net.a.run(IDGATE, "check", "-c", net.tmp / "a-other.toml", check=False)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1 and host_id("z") in out and host_id("a") in out, out

    # With the granted rules only, the hosts run and talk.
    for other in ("bob", "mallory"):
        a_text = a_text.replace(f'[[workload]]\nspiffe_id = "spiffe://{TRUST_DOMAIN}/app/{other}"\nuid = 100{2 if other == "bob" else 3}\n', "")
    a = net.a.start_idgate(a_text, net.tmp)
    b = net.b.start_idgate(config(net, "b", b_ca, bundle), net.tmp)
    r = client(net, 1001, n=1000)
    assert r["echo_sha"] == r["sent_sha"], r

    # Host a compromised: its CA key mints an ID it was not granted. b refuses it at the
    # handshake and says why; a granted one made the same way is accepted.
    assert call(net, net.b.ip, mint(net, a_ca, ALICE, "honest")) == "accepted"
    assert call(net, net.b.ip, mint(net, a_ca, f"spiffe://{TRUST_DOMAIN}/app/payments", "forged")) == "refused"
    refused = [r["detail"] for r in b.status()["refused_connections"]]
    assert any(f"spiffe://{TRUST_DOMAIN}/app/payments" in r and "grant" in r for r in refused), refused

    # Host c compromised: its CA mints a server certificate under b's host ID (for c's own
    # address, which its name constraints allow). a refuses to take it for a peer idgate.
    rogue = mint(net, net.tmp / "c-ca1", host_id("b"), "rogue", address=ADDRESSES["c"])
    net.c.start_workload("tls_holder", rogue, net.tmp / "rogue-key.pem")  # a rogue peer idgate on c's tunnel port
    net.c.wait_listening(15008)
    r = net.a.workload("exchange", "10.77.0.3", 9000, 5, "", uid=1001, check=False)
    assert r.returncode != 0 and "error" in json.loads(r.stdout), r
    unverified = a.decisions(direction="outbound", verdict="peer_unverified")
    assert unverified and host_id("b") in unverified[-1]["detail"] and host_id("c") in unverified[-1]["detail"], a.status()["decisions"]
