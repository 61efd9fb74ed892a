#!/usr/bin/env bash
# Lint gates for the shell and Python of the repository (seconds): shellcheck on every shell
# script (tests/, packaging/, .ci/, kmod/, benches/: *.sh, and the scripts without the suffix
# named below), and ruff on the tests' and benchmarks' Python (rules in ruff.toml). Prints what
# it runs; exits non-zero on any finding. tests/setup.sh installs both tools.
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
if [ "$failed" != 0 ]; then
    echo "lint: findings above" >&2
    exit 1
fi
echo "lint: ${#shell[@]} shell scripts and the Python of tests/ and benches/ are clean" >&2
