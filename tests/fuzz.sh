#!/usr/bin/env bash
# Runs each cargo-fuzz target of proxy/fuzz for a bounded time (FUZZ_SECONDS, default 45)
# from the committed seeds. Stable Rust is enough: RUSTC_BOOTSTRAP unlocks the sanitizer flags.
# A crash fails the script and leaves the input under proxy/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../proxy/fuzz"
command -v cargo-fuzz >/dev/null || { echo "fuzz: installing cargo-fuzz (cargo install, a few minutes)" >&2; cargo install --locked cargo-fuzz; }
export RUSTC_BOOTSTRAP=1
# The sanitizer build is kept between runs (like the kernel builds under /var/cache/idgate-vm):
# a fresh clone then rebuilds only what changed instead of every dependency.
export CARGO_TARGET_DIR="${IDGATE_FUZZ_TARGET_DIR:-/var/cache/idgate-fuzz/target}"
mkdir -p "$CARGO_TARGET_DIR"
echo "fuzz: build directory $CARGO_TARGET_DIR (kept between runs)"
seconds="${FUZZ_SECONDS:-45}"
for target in rewrite http_path; do
    mkdir -p "corpus/$target"
    cp -n seeds/"$target"/* "corpus/$target/"
    echo "fuzz: $target: building (the first time takes minutes), then ${seconds}s of fuzzing"
    log="target/fuzz-$target.log"
    mkdir -p target
    if ! cargo fuzz run -O "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=4096 >"$log" 2>&1; then
        grep -v "^#" "$log" | tail -40 >&2
        echo "fuzz: $target failed; the input is under proxy/fuzz/artifacts/$target" >&2
        exit 1
    fi
    grep -E "^Done" "$log"
done
