"""Hosts whose CAs are intermediates of one fleet root, trusting only the root, verify each
other: every SVID is sent with its chain (a leaf alone cannot be verified through the root).
The intermediates are made with openssl, idgate's grant extension (what the host CA may
issue) written by openssl's config."""
import subprocess
from pathlib import Path

from hosts import host_config
from netns import IDGATE
from test_tunnel import client

GRANT_OID = "1.2.840.113556.1.8000.2554.6718.62988.63289.16463.47294.13902294.3550559"

EXT = """[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
"""

# Per host: its CA may issue its host's ID and the test hosts' workload IDs.
INTERMEDIATE = f"""[v3_intermediate_{{h}}]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = URI:spiffe://demo.idgate
{GRANT_OID} = ASN1:SEQUENCE:grant_{{h}}
[grant_{{h}}]
host = IA5STRING:spiffe://demo.idgate/idgate/host/host-{{h}}
patterns = SEQUENCE:patterns_{{h}}
[patterns_{{h}}]
app = IA5STRING:spiffe://demo.idgate/app/*
tools = IA5STRING:spiffe://demo.idgate/tools/*
"""


def make_fleet(d: Path, hosts, ungranted=()):
    """A root (root.pem) and one intermediate per host (<host>/ca.pem, <host>/ca-key.pem); those
    of `ungranted` hosts carry no grant."""
    d.mkdir(parents=True, exist_ok=True)
    sections = "".join(INTERMEDIATE.format(h=h) if h not in ungranted else INTERMEDIATE.format(h=h).split(f"{GRANT_OID} =")[0] for h in hosts)
    (d / "ext.cnf").write_text("[req]\ndistinguished_name = dn\n[dn]\n" + EXT + sections)

    def ossl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, cwd=d)

    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root-key.pem")
    ossl("req", "-x509", "-new", "-key", "root-key.pem", "-subj", "/CN=fleet root", "-days", "30",
         "-config", "ext.cnf", "-extensions", "v3_ca", "-out", "root.pem")
    for h in hosts:
        (d / h).mkdir()
        ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{h}/ca-key.pem")
        ossl("req", "-new", "-key", f"{h}/ca-key.pem", "-subj", f"/CN=fleet intermediate {h}", "-config", "ext.cnf", "-out", f"{h}/ca.csr")
        ossl("x509", "-req", "-in", f"{h}/ca.csr", "-CA", "root.pem", "-CAkey", "root-key.pem", "-CAcreateserial", "-days", "7",
             "-extfile", "ext.cnf", "-extensions", f"v3_intermediate_{h}", "-out", f"{h}/ca.pem")
        (d / h / "ca-key.pem").chmod(0o600)
    return d


def fleet_config(net, fleet, name):
    cfg = host_config(f"host-{name}", net.tmp / f"state-{name}", fleet / name)
    cfg = cfg.replace(f'key = "{fleet / name}/ca-key.pem"\n', f'key = "{fleet / name}/ca-key.pem"\ntrust_bundle = ["{fleet}/root.pem"]\n')
    assert "trust_bundle" in cfg
    return cfg


def test_hosts_with_intermediates_under_one_root_verify_each_other(net):
    fleet = make_fleet(net.tmp / "fleet", ["a", "b", "c"], ungranted=["c"])
    idg = {}
    for host, name in ((net.a, "a"), (net.b, "b")):
        idg[name] = host.start_idgate(fleet_config(net, fleet, name), net.tmp)
    r = client(net, 1001, n=10_000)
    assert isinstance(r, dict) and r["echo_sha"] == r["sent_sha"], r
    assert idg["b"].decisions(direction="inbound", verdict="allowed")

    # An intermediate without the grant may issue nothing: the host's check says what to do.
    (net.tmp / "c.toml").write_text(fleet_config(net, fleet, "c"))
    r = net.c.run(IDGATE, "check", "-c", net.tmp / "c.toml", check=False)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1 and "CN=fleet intermediate c`, an intermediate without an idgate grant" in out and "idgate ca issue --grant" in out, out
