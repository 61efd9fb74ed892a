"""Certificates the tests make themselves, with `cryptography`: a CA of their own (an external
API's), and leaf certificates signed by a CA directory (`ca.pem`, `ca-key.pem`, as `idgate ca`
writes one): a TLS server's, a rogue or hand-written peer's. All keys are P-256."""
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_AND_CLIENT = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def load_ca(ca_dir: Path):
    """(certificate, key) of a CA directory."""
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), None)
    return cert, key


def write_key(path: Path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.chmod(0o600)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])


def validity(builder, days):
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))


def make_ca(ca_dir: Path, cn, days=2):
    """A self-signed CA in `ca_dir` (ca.pem, ca-key.pem); returns the directory."""
    ca_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    (ca_dir / "ca.pem").write_bytes(pem(validity(builder, days).sign(key, hashes.SHA256())))
    write_key(ca_dir / "ca-key.pem", key)
    return ca_dir


def issue(ca_dir: Path, cert_path: Path, key_path: Path, *, uris=(), dns=(), ips=(), cn=None, usages=SERVER_AND_CLIENT, days=1,
          with_issuer=False):
    """A leaf certificate signed by the CA in `ca_dir`, naming `uris`, `dns` and `ips` in its
    subjectAltName: written to `cert_path` (followed by the CA's certificate `with_issuer`) and
    its key to `key_path`. Returns `cert_path`."""
    issuer, issuer_key = load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    names = ([x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
             + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Critical when the subject is empty, as RFC 5280 asks.
        .add_extension(x509.SubjectAlternativeName(names), critical=cn is None)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), critical=False)
    )
    cert = validity(builder, days).sign(issuer_key, hashes.SHA256())
    cert_path.write_bytes(pem(cert) + (pem(issuer) if with_issuer else b""))
    write_key(key_path, key)
    return cert_path
