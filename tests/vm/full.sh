#!/usr/bin/env bash
# tests/vm/full.sh - every kernel check (run before finishing kernel work): the
# CI steps plus the KCSAN kernel, the planted faults, the whole support matrix
# and the arm64 boot. Build the proxy first for its tests in the VM:
#   cargo build --release -p idgate && cargo build --release -p idgate-benches --bin pingpong
#   IDGATE_BIN=target/release/idgate IDGATE_EXTRA_BINS=target/release/pingpong tests/vm/full.sh
exec env IDGATE_VM_FULL=1 bash "$(dirname "${BASH_SOURCE[0]}")/ci.sh" "$@"
