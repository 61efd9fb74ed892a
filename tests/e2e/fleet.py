"""A fleet under one root (`idgate ca init`), each host with a CA of its own (`idgate ca issue`)
granted the workload IDs the test hosts' configs use."""
import subprocess

from hosts import TRUST_DOMAIN, host_config
from netns import IDGATE

ADDRESSES = {"a": "10.77.0.1", "b": "10.77.0.2", "c": "10.77.0.3"}
# What `hosts.host_config` maps processes to.
GRANTS = (f"spiffe://{TRUST_DOMAIN}/app/*", f"spiffe://{TRUST_DOMAIN}/tools/*")


def host_id(name):
    return f"spiffe://{TRUST_DOMAIN}/idgate/host/host-{name}"


def ca(*args, check=True):
    return subprocess.run([str(IDGATE), "ca", *map(str, args)], check=check, capture_output=True, text=True)


def init_root(path):
    ca("init", "--dir", path, "--trust-domain", TRUST_DOMAIN)
    return path


def issue(net, root, name, generation=1, grants=GRANTS):
    out = net.tmp / f"{name}-ca{generation}"
    flags = [x for g in grants for x in ("--grant", g)]
    ca("issue", "--dir", root, "--host", f"host-{name}", "--address", ADDRESSES[name], "--days", "30", *flags, "--out", out)
    return out


def config(net, name, ca_dir, bundle, extra=""):
    text = host_config(f"host-{name}", net.tmp / f"state-{name}", ca_dir, extra=extra)
    return text.replace(f'key = "{ca_dir}/ca-key.pem"\n', f'key = "{ca_dir}/ca-key.pem"\ntrust_bundle = ["{bundle}"]\n', 1)


def serial_of(pem_path):
    """A certificate's serial as idgate prints it: lowercase hex, whole bytes, no leading zero byte."""
    from cryptography import x509

    digits = format(x509.load_pem_x509_certificate(pem_path.read_bytes()).serial_number, "x")
    return "0" * (len(digits) % 2) + digits
