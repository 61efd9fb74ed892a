"""Every certificate idgate makes parses with a strict DER parser (Python's `cryptography`, which
py-spiffe and many services use to read a peer's certificate) and follows the SPIFFE X509-SVID
rules: roots from `ca init`, host CAs from `ca issue`, the embedded CA, host SVIDs and workload
SVIDs, each made by the real binary."""
import ipaddress
import select
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

import pki
from hosts import TRUST_DOMAIN, host_config
from netns import IDGATE


def strict(der):
    """Parses `der` as cryptography does, extensions included (they are parsed lazily)."""
    cert = x509.load_der_x509_certificate(der)
    list(cert.extensions)
    return cert


def pem_certs(path):
    return [strict(c.public_bytes(Encoding.DER)) for c in x509.load_pem_x509_certificates(open(path, "rb").read())]


def uris(cert):
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def check_signing(cert, what):
    """X509-SVID 3.2, 4.1, 4.3: a CA; keyCertSign, and digitalSignature only on leaves."""
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca, f"{what}: basicConstraints {bc}"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign, f"{what}: keyUsage {ku}"
    assert not ku.value.digital_signature, f"{what}: a signing certificate sets digitalSignature (leaves only)"
    for uri in uris(cert):
        assert uri == f"spiffe://{TRUST_DOMAIN}", f"{what}: a signing certificate's SPIFFE ID has no path: {uri}"


def check_leaf(cert, spiffe_id, what):
    """X509-SVID 2, 4.1, 4.3, 4.4, 5.2: one URI SAN with a path, not a CA, the key usages."""
    assert uris(cert) == [spiffe_id], f"{what}: URI SANs {uris(cert)}"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert not bc.value.ca and bc.value.path_length is None, f"{what}: basicConstraints {bc}"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature, f"{what}: keyUsage {ku}"
    assert not ku.value.key_cert_sign and not ku.value.crl_sign, f"{what}: a leaf may not sign certificates: {ku}"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku, f"{what}: {eku}"


def test_roots_and_host_cas_parse_strictly_and_are_signing_certificates(tmp_path):
    for command in (["ca", "init"], ["ca-init"]):
        d = tmp_path / "-".join(command)
        subprocess.run([IDGATE, *command, "--dir", d, "--trust-domain", TRUST_DOMAIN], check=True, capture_output=True)
        [root] = pem_certs(d / "ca.pem")
        check_signing(root, " ".join(command))
    out = tmp_path / "host-ca"
    subprocess.run([IDGATE, "ca", "issue", "--dir", tmp_path / "ca-init", "--host", "web-1", "--address", "10.77.0.2",
                    "--out", out], check=True, capture_output=True)
    [host_ca] = pem_certs(out / "ca.pem")
    check_signing(host_ca, "ca issue")
    [root] = pem_certs(tmp_path / "ca-init" / "ca.pem")
    host_ca.verify_directly_issued_by(root)


def test_svids_and_the_embedded_ca_parse_strictly_and_are_spiffe_leaves(net):
    root_dir, host_dir = net.ca_dir, net.tmp / "host-b-ca"
    # Granted what host_config's workload rules name (check refuses rules outside the grant).
    grants = [f"spiffe://{TRUST_DOMAIN}/app/*", f"spiffe://{TRUST_DOMAIN}/tools/*"]
    subprocess.run([IDGATE, "ca", "issue", "--dir", root_dir, "--host", "host-b", "--address", net.b.ip,
                    *[x for g in grants for x in ("--grant", g)], "--out", host_dir], check=True, capture_output=True)
    b_ca = f'[ca]\nsource = "files"\ncert = "{host_dir}/ca.pem"\nkey = "{host_dir}/ca-key.pem"\ntrust_bundle = ["{root_dir}/ca.pem"]\n'
    net.b.start_idgate(host_config("host-b", net.tmp / "state-b").replace('[ca]\nsource = "embedded"\n', b_ca), net.tmp)

    # The host SVID and its chain, as b's tunnel port presents them.
    shown = net.a.run("openssl", "s_client", "-connect", f"{net.b.ip}:15008", "-showcerts", input=b"", check=False, timeout=20)
    chain_pem = net.tmp / "b-chain.pem"
    chain_pem.write_bytes(shown.stdout)
    leaf, host_ca = pem_certs(chain_pem)
    check_leaf(leaf, f"spiffe://{TRUST_DOMAIN}/idgate/host/host-b", "host SVID")
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(net.b.ip)]
    check_signing(host_ca, "host CA in the chain")
    leaf.verify_directly_issued_by(host_ca)

    # A workload SVID, as a's idgate presents it to the peer a flow goes to (a server here that
    # poses as that peer with a certificate of the shared root).
    server_dir = net.tmp / "capture"
    server_dir.mkdir()
    pki.issue(root_dir, server_dir / "cert.pem", server_dir / "key.pem", uris=[f"spiffe://{TRUST_DOMAIN}/idgate/host/capture"],
              ips=[net.b.ip], cn="capture")
    # A TLS server that asks for a client certificate, prints the one it got (DER, hex) and exits.
    capture = net.b.start_workload("tls_capture", server_dir / "cert.pem", server_dir / "key.pem", root_dir / "ca.pem", 16000,
                                   stdout=subprocess.PIPE, text=True)
    assert capture.stdout.readline().strip() == "listening"
    a_cfg = host_config("host-a", net.tmp / "state-a", root_dir).replace(
        'ports = [8080, "9000-9100"]', f'ports = [8080, "9000-9100"]\npeer = "{net.b.ip}:16000"')
    net.a.start_idgate(a_cfg, net.tmp)
    # The connection stays open until idgate has dialled the "peer" for it.
    net.a.workload("exchange", "10.77.0.2", 9000, 5, "x", uid=1001, check=False)
    assert select.select([capture.stdout], [], [], 20)[0], "idgate never presented a workload SVID to the peer"
    workload = strict(bytes.fromhex(capture.stdout.readline().strip()))
    check_leaf(workload, f"spiffe://{TRUST_DOMAIN}/app/alice", "workload SVID")
    [root] = pem_certs(root_dir / "ca.pem")
    workload.verify_directly_issued_by(root)

    # The embedded CA, made at the first start of a host with none configured.
    net.c.start_idgate(host_config("host-c", net.tmp / "state-c"), net.tmp)
    [embedded] = pem_certs(net.tmp / "state-c" / "ca.pem")
    check_signing(embedded, "embedded CA")
