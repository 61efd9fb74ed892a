"""`idgate check` does every check `run` does short of binding sockets, reports every problem
with its file:line:col, and exits 1 for a bad file (2 for a usage error): a file it passes does
not make the service fail at start and restart every second."""
import os
import subprocess

from netns import IDGATE


def check(cfg):
    return subprocess.run([str(IDGATE), "check", "-c", str(cfg)], capture_output=True, text=True, timeout=30)


def line_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def make_ca(d):
    subprocess.run([str(IDGATE), "ca-init", "--dir", str(d), "--trust-domain", "demo.idgate"], check=True, capture_output=True)
    return d


def test_check_reports_every_problem_run_would_hit(tmp_path):
    ca, other = make_ca(tmp_path / "ca"), make_ca(tmp_path / "other")
    secret = tmp_path / "token"
    secret.write_text("t\n")
    secret.chmod(0o644)
    (ca / "ca-key.pem").chmod(0o644)
    text = f"""trust_domain = "demo.idgate"
state_dir = "{tmp_path / 'state'}"

[ca]
source = "files"
cert = "{ca}/ca.pem"
key = "{ca}/ca-key.pem"
trust_bundle = ["{tmp_path}/missing-bundle.pem"]

[[outbound]]
cidrs = ["10.0.0.0/24"]
ports = [80]
protocol = "http"

[[http_rule]]
set = {{ authorization = "Bearer ${{file:{secret}}}", x-env = "${{env:IDGATE_CHECK_TEST_UNSET}}" }}
"""
    cfg = tmp_path / "idgate.toml"
    cfg.write_text(text)
    r = check(cfg)
    assert r.returncode == 1, r
    errors = [line for line in r.stderr.splitlines() if line.startswith(f"{cfg}:")]
    expect = {
        "readable by group or others": line_of(text, "key = "),
        "missing-bundle.pem": line_of(text, "trust_bundle"),
        "environment variable IDGATE_CHECK_TEST_UNSET is not set": line_of(text, "authorization"),
        str(secret): line_of(text, "authorization"),
    }
    for needle, line in expect.items():
        assert any(f"{cfg}:{line}:" in e and needle in e for e in errors), f"{needle} at line {line} missing:\n{r.stderr}"
    assert "4 problem(s)" in r.stderr, r.stderr
    # `run` refuses the same file for the same reasons, before touching the network.
    run = subprocess.run([str(IDGATE), "run", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "readable by group or others" in run.stderr, run

    # A key that is not the certificate's.
    (ca / "ca-key.pem").chmod(0o600)
    secret.chmod(0o600)
    fixed = text.replace(f'trust_bundle = ["{tmp_path}/missing-bundle.pem"]\n', "").replace(', x-env = "${env:IDGATE_CHECK_TEST_UNSET}"', "")
    cfg.write_text(fixed.replace(f'key = "{ca}/ca-key.pem"', f'key = "{other}/ca-key.pem"'))
    r = check(cfg)
    assert r.returncode == 1 and f"{cfg}:{line_of(fixed, 'key = ')}:" in r.stderr and "does not belong to the certificate" in r.stderr, r.stderr
    # A missing key file.
    cfg.write_text(fixed.replace(f'key = "{ca}/ca-key.pem"', f'key = "{tmp_path}/nope.pem"'))
    r = check(cfg)
    assert r.returncode == 1 and "cannot read" in r.stderr and "nope.pem" in r.stderr, r.stderr
    # All fixed: ok.
    cfg.write_text(fixed)
    r = check(cfg)
    assert r.returncode == 0 and r.stdout.strip() == f"{cfg}: ok", r


def test_cross_field_problems_are_all_reported(tmp_path):
    cfg = tmp_path / "idgate.toml"
    cfg.write_text('trust_domain = "demo.idgate"\n[[workload]]\nspiffe_id = "spiffe://other/x"\n[[inbound]]\nports = []\nallow = []\n')
    r = check(cfg)
    assert r.returncode == 1, r
    assert "outside trust domain" in r.stderr and "has no selector" in r.stderr and "inbound[0].ports is empty" in r.stderr, r.stderr


def test_usage_error_exits_2(tmp_path):
    r = subprocess.run([str(IDGATE), "check", "--no-such-flag"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2


def test_check_reports_secret_files_other_users_could_swap(tmp_path):
    # Each secret file is fine itself (root's, 0600); what leads to it is not.
    ca = make_ca(tmp_path / "ca")
    shared = tmp_path / "shared"  # writable by everyone, no sticky bit
    shared.mkdir()
    (shared / "token").write_text("t\n")
    (shared / "token").chmod(0o600)
    shared.chmod(0o777)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "token").write_text("t\n")
    (private / "token").chmod(0o600)
    (private / "link").symlink_to(private / "token")
    theirs = tmp_path / "theirs"  # another user's directory, linked to ours
    theirs.mkdir()
    (theirs / "to-private").symlink_to(private)
    os.chown(theirs, 65534, 65534)
    (ca / "ca-key.pem").rename(shared / "ca-key.pem")
    text = f"""trust_domain = "demo.idgate"
state_dir = "{tmp_path / 'state'}"

[ca]
source = "files"
cert = "{ca}/ca.pem"
key = "{shared}/ca-key.pem"

[[outbound]]
cidrs = ["10.0.0.0/24"]
ports = [80]
protocol = "http"

[[http_rule]]
set = {{ a = "${{file:{shared}/token}}" }}

[[http_rule]]
set = {{ b = "${{file:{private}/link}}" }}

[[http_rule]]
set = {{ c = "${{file:{theirs}/to-private/token}}" }}
"""
    cfg = tmp_path / "idgate.toml"
    cfg.write_text(text)
    r = check(cfg)
    assert r.returncode == 1, r
    errors = [line for line in r.stderr.splitlines() if line.startswith(f"{cfg}:")]
    expect = [
        (line_of(text, "key = "), f"{shared}/ca-key.pem", "writable by others"),
        (line_of(text, "set = { a"), f"{shared}/token", "writable by others"),
        (line_of(text, "set = { b"), f"{private}/link", "symbolic link"),
        (line_of(text, "set = { c"), f"{theirs}/to-private/token", "owned by uid 65534"),
    ]
    for line, path, why in expect:
        assert any(f"{cfg}:{line}:" in e and path in e and why in e for e in errors), f"{path}: {why} at line {line} missing:\n{r.stderr}"
    run = subprocess.run([str(IDGATE), "run", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "writable by others" in run.stderr, run


def test_exe_selectors_must_name_files_idgate_can_see(tmp_path):
    """An `exe` selector matches only the file at its path in idgate's mount namespace: a path
    reached through a symbolic link (a process's exe never is), or not absolute, would match no
    process, and check refuses it at the value (a path that is not there, at least not yet, is
    a warning); so are a malformed sha256 and a root_socket rule without a uid."""
    real = tmp_path / "bin" / "app"
    real.parent.mkdir()
    real.write_text("#!/bin/sh\n")
    (tmp_path / "link").symlink_to(real.parent)
    text = f"""trust_domain = "demo.idgate"
state_dir = "{tmp_path / 'state'}"

[[workload]]
spiffe_id = "spiffe://demo.idgate/ok"
exe = "{real}"

[[workload]]
spiffe_id = "spiffe://demo.idgate/ok-glob"
exe = "{real.parent}/ap*"

[[workload]]
spiffe_id = "spiffe://demo.idgate/anywhere"
exe = "**/app"

[[workload]]
spiffe_id = "spiffe://demo.idgate/missing"
exe = "{tmp_path}/bin/missing"

[[workload]]
spiffe_id = "spiffe://demo.idgate/missing-dir"
exe = "{tmp_path}/nodir/*"

[[workload]]
spiffe_id = "spiffe://demo.idgate/linked"
exe = "{tmp_path}/link/app"

[[workload]]
spiffe_id = "spiffe://demo.idgate/relative"
exe = "app"

[[workload]]
spiffe_id = "spiffe://demo.idgate/dir"
exe = "{real.parent}"
"""
    cfg = tmp_path / "idgate.toml"
    cfg.write_text(text)
    r = check(cfg)
    assert r.returncode == 1, r
    # A path that is not there is warned about, not refused: a workload's package removed must
    # not keep idgate from starting (the rule matches nothing).
    for needle, line in {f"{tmp_path}/bin/missing does not exist": line_of(text, "bin/missing"),
                         f"{tmp_path}/nodir does not exist": line_of(text, "nodir")}.items():
        warned = any("WARN" in entry and f"{cfg}:{line}:" in entry and needle in entry for entry in r.stderr.splitlines())
        assert warned, f"no warning for {needle}:\n{r.stderr}"
    expect = {
        f"is reached through a symbolic link; a process running it shows {real}": line_of(text, "link/app"),
        "`app` is not an absolute path": line_of(text, 'exe = "app"'),
        f"{real.parent} is not a file": line_of(text, f'exe = "{real.parent}"'),
    }
    errors = [line for line in r.stderr.splitlines() if line.startswith(f"{cfg}:")]
    for needle, line in expect.items():
        assert any(f"{cfg}:{line}:7:" in e and needle in e for e in errors), f"{needle} at {line}:7 missing:\n{r.stderr}"
    assert f"{len(expect)} problem(s)" in r.stderr, r.stderr
    # The same rules without the broken ones pass.
    good = text.split("[[workload]]\nspiffe_id = \"spiffe://demo.idgate/missing\"")[0]
    cfg.write_text(good)
    assert check(cfg).returncode == 0, check(cfg)

    cfg.write_text('trust_domain = "demo.idgate"\n[[workload]]\nspiffe_id = "spiffe://demo.idgate/x"\nsha256 = "abc"\n'
                   '[[workload]]\nspiffe_id = "spiffe://demo.idgate/y"\nroot_socket = true\ncomm = "d"\n')
    r = check(cfg)
    assert r.returncode == 1 and f"{cfg}:4:" in r.stderr and "invalid sha256 `abc`" in r.stderr, r.stderr
    cfg.write_text('trust_domain = "demo.idgate"\n[[workload]]\nspiffe_id = "spiffe://demo.idgate/y"\nroot_socket = true\ncomm = "d"\n')
    r = check(cfg)
    assert r.returncode == 1 and f"{cfg}:2:" in r.stderr and "root_socket needs uid" in r.stderr, r.stderr


def test_check_opens_what_run_writes_as_run_does(tmp_path):
    """The trail file and the state directory: a missing directory, and a read-only file system
    (what ProtectSystem=strict makes of every path but the unit's own directories), fail
    `check` at the line that names them, as they would fail `run`; a good path passes and
    `check` leaves no file behind."""
    ro = tmp_path / "ro"
    ro.mkdir()
    cfg = tmp_path / "idgate.toml"
    base = f'trust_domain = "demo.idgate"\nstate_dir = "{tmp_path}/state"\n'
    cfg.write_text(base + f'\n[trail]\nfile = "{tmp_path}/no-such-dir/trail.jsonl"\n')
    r = check(cfg)
    assert r.returncode == 1 and f"{cfg}:5:" in r.stderr and "no-such-dir does not exist" in r.stderr, r.stderr
    # A read-only mount over ro/, in a mount namespace of the check's own.
    cfg.write_text(base + f'\n[trail]\nfile = "{ro}/trail.jsonl"\n')
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro none {ro} && exec {IDGATE} check -c {cfg}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"{cfg}:5:" in r.stderr and "read-only file system" in r.stderr, r.stderr
    cfg.write_text(f'trust_domain = "demo.idgate"\nstate_dir = "{ro}/state"\n')
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro none {ro} && exec {IDGATE} check -c {cfg}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"{cfg}:2:" in r.stderr and "state_dir" in r.stderr, r.stderr
    cfg.write_text(base + f'\n[trail]\nfile = "{tmp_path}/trail.jsonl"\n')
    r = check(cfg)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "trail.jsonl").exists() and not [p for p in (tmp_path / "state").iterdir() if p.name.startswith(".idgate-check")]
