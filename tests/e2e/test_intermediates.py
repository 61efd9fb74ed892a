"""Hosts whose CAs are intermediates of one fleet root, trusting only the root, verify each
other: every SVID is sent with its chain (a leaf alone cannot be verified through the root)."""
import subprocess
from pathlib import Path

from hosts import host_config
from test_tunnel import client

EXT = """[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[v3_intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = URI:spiffe://demo.idgate
"""


def make_fleet(d: Path, hosts):
    """A root (root.pem) and one intermediate per host (<host>/ca.pem, <host>/ca-key.pem)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "ext.cnf").write_text("[req]\ndistinguished_name = dn\n[dn]\n" + EXT)

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
             "-extfile", "ext.cnf", "-extensions", "v3_intermediate", "-out", f"{h}/ca.pem")
        (d / h / "ca-key.pem").chmod(0o600)
    return d


def test_hosts_with_intermediates_under_one_root_verify_each_other(net):
    fleet = make_fleet(net.tmp / "fleet", ["a", "b"])
    idg = {}
    for host, name in ((net.a, "a"), (net.b, "b")):
        cfg = host_config(f"host-{name}", net.tmp / f"state-{name}", fleet / name)
        cfg = cfg.replace(f'key = "{fleet / name}/ca-key.pem"\n', f'key = "{fleet / name}/ca-key.pem"\ntrust_bundle = ["{fleet}/root.pem"]\n')
        assert "trust_bundle" in cfg
        idg[name] = host.start_idgate(cfg, net.tmp)
    r = client(net, 1001, n=10_000)
    assert isinstance(r, dict) and r["echo_sha"] == r["sent_sha"], r
    assert idg["b"].decisions(direction="inbound", verdict="allowed")
