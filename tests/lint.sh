#!/usr/bin/env bash
# The lint gates: shellcheck on every shell script (tests/, packaging/, .ci/, kmod/, benches/:
# *.sh, and the scripts without the suffix named below), ruff on the tests' and benchmarks'
# Python (rules in ruff.toml), rustfmt, the kernel's checkpatch.pl on kmod/ (kmod/checkpatch.sh)
# and clippy on every Rust target with warnings denied (the workspace's [workspace.lints] deny
# undocumented unsafe blocks). All but clippy take seconds; clippy is a build of its own (about
# 2 minutes cold). Prints what it runs; exits non-zero on any finding. tests/setup.sh installs
# the tools.
set -euo pipefail
cd "$(dirname "$0")/.."

# Shell scripts without the .sh suffix: CI's entry point, the Debian maintainer scripts and
# the test VM's init.
mapfile -t shell < <(git ls-files '*.sh' .ci/run 'packaging/debian/*.postinst' 'packaging/debian/*.postrm' \
    'packaging/debian/*.prerm' tests/vm/guest/init)
command -v shellcheck >/dev/null || { echo "lint: shellcheck not found (bash tests/setup.sh installs it)" >&2; exit 2; }
python3 -m ruff --version >/dev/null 2>&1 || { echo "lint: ruff not found (bash tests/setup.sh installs it)" >&2; exit 2; }
echo "lint: $(shellcheck --version | sed -n 's/^version: /shellcheck /p'), $(python3 -m ruff --version)" >&2
failed=0
run() {
    echo "lint: $*" >&2
    "$@" || failed=1
}
run shellcheck "${shell[@]}"
run python3 -m ruff check --no-cache tests benches
run cargo fmt --all --check
run bash kmod/checkpatch.sh
run cargo clippy --locked --workspace --all-targets --quiet -- -D warnings
if [ "$failed" != 0 ]; then
    echo "lint: findings above" >&2
    exit 1
fi
echo "lint: ${#shell[@]} shell scripts, the Python of tests/ and benches/, the Rust and kmod/ are clean" >&2
