"""An OpenID provider (panva's oidc-provider) and a resource server that checks its JWT access
tokens, both Node.js programs in tests/idp, started in a test host's namespace.

The provider (tests/idp/provider.mjs) issues JWT access tokens by client credentials (clients
authenticated with private_key_jwt, ES256) and by RFC 8693 token exchange of a JWT-SVID; the
resource server (tests/idp/resource.mjs) answers GET /whoami with the token's sub, client_id,
scope, aud and exp. Each writes its JSON configuration, stdout (`ready`) and stderr (one line per
request) beside each other in `workdir`: <host>-<name>.json, .out, .log."""
import json
import os
import subprocess
from pathlib import Path

from eventually import eventually
from netns import REPO, Host

IDP = REPO / "tests" / "idp"
NODE = os.environ.get("NODE", "node")


def npm_ready() -> bool:
    """True when tests/idp's packages are installed (`npm ci --prefix tests/idp`)."""
    return (IDP / "node_modules" / "oidc-provider" / "package.json").is_file() and (IDP / "node_modules" / "jose" / "package.json").is_file()


def _start(host: Host, workdir: Path, program: str, name: str, config: dict, timeout: float) -> subprocess.Popen:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    base = workdir / f"{host.name}-{name}"
    cfg, out_path, log_path = base.with_suffix(".json"), base.with_suffix(".out"), base.with_suffix(".log")
    cfg.write_text(json.dumps(config, indent=2, default=str))
    with open(out_path, "w") as out, open(log_path, "w") as log:
        proc = host.popen(NODE, IDP / program, cfg, stdout=out, stderr=log, stdin=subprocess.DEVNULL)

    def ready() -> bool:
        if "ready" in out_path.read_text().split():
            return True
        if proc.poll() is not None:
            raise RuntimeError(f"{program} on {host.name} exited {proc.returncode}:\n{log_path.read_text()}")
        return False

    eventually(ready, lambda: f"{program} on {host.name} ready:\n{log_path.read_text()}", timeout=timeout)
    return proc


def start_provider(host: Host, workdir: Path, name: str = "idp", timeout: float = 20, **config) -> subprocess.Popen:
    """Starts the provider with `config`: listen, port, issuer, tls_cert, tls_key,
    access_token_ttl, resource, clients, token_exchange (see tests/idp/README.md); returns once
    it listens. Its log (one line per token request) is <workdir>/<host>-<name>.log."""
    return _start(host, workdir, "provider.mjs", name, config, timeout)


def start_resource(host: Host, workdir: Path, name: str = "resource", timeout: float = 20, **config) -> subprocess.Popen:
    """Starts the resource server with `config`: listen, port, tls_cert and tls_key (HTTPS; plain
    HTTP without), issuer, audience, jwks_uri, ca_file, resolve; returns once it listens."""
    return _start(host, workdir, "resource.mjs", name, config, timeout)
