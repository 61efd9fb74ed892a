#!/usr/bin/env python3
"""What it costs to divert one new connection to a local listener: nftables REDIRECT plus a
conntrack lookup of the original tuple (what idgate does) against TPROXY (what it could do), and
no diversion at all as the floor. Run as root, after
`cargo build --release -p idgate-benches --bin intercept_cost`:

    python3 benches/e2e/intercept_cost.py            # 7 interleaved repetitions of 5,000
    python3 benches/e2e/intercept_cost.py --reps 3 --connections 2000

Each repetition and mode gets a fresh network namespace (`icost-<mode>`, removed after) with
only the rules that mode needs; the measuring process runs on one CPU and does client and
listener itself, so its CPU time per connection is the path's, kernel included. Prints each
mode's median and its ratio to REDIRECT."""
import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = Path(os.environ.get("INTERCEPT_COST_BIN", ROOT / "target/release/intercept_cost"))
ORIGINAL = "10.99.0.1:80"  # a remote address: the route points out of the veth, never used

RULES = {
    "plain": "",
    "redirect": """table inet icost {
  chain out { type nat hook output priority -100; ip daddr 10.99.0.1 tcp dport 80 redirect to :15001; }
}""",
    # Locally generated flows reach TPROXY only through policy routing: the mark set in output
    # re-routes the packet to the local table, and prerouting on lo hands it to the listener.
    "tproxy": """table inet icost {
  chain out { type route hook output priority -150; ip daddr 10.99.0.1 tcp dport 80 meta mark set 0x100; }
  chain pre { type filter hook prerouting priority -150; meta mark 0x100 ip daddr 10.99.0.1 tcp dport 80 tproxy ip to :15001 accept; }
}""",
}


def sh(ns, *cmd, stdin=None):
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    r = subprocess.run(full, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"intercept_cost: {' '.join(full)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def measure(mode, n):
    ns = f"icost-{mode}"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    sh(None, "ip", "netns", "add", ns)
    try:
        sh(ns, "ip", "link", "set", "lo", "up")
        sh(ns, "ip", "link", "add", "ic0", "type", "veth", "peer", "name", "ic1")
        sh(ns, "ip", "link", "set", "ic0", "up")
        sh(ns, "ip", "link", "set", "ic1", "up")
        sh(ns, "ip", "addr", "add", "10.99.0.2/24", "dev", "ic0")
        sh(ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 60999")
        # Conntrack runs in every mode, as it does beside idgate's table.
        sh(ns, "nft", "-f", "-", stdin="table inet icost_ct { chain in { type filter hook input priority 0; ct state new counter; }; }")
        if RULES[mode]:
            sh(ns, "nft", "-f", "-", stdin=RULES[mode])
        if mode == "tproxy":
            sh(ns, "ip", "rule", "add", "fwmark", "0x100", "lookup", "100")
            sh(ns, "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
        addr = "127.0.0.1:15001" if mode == "plain" else ORIGINAL
        out = sh(ns, "taskset", "-c", "0", str(TOOL), mode, addr, str(n))
        return float(out.split("µs wall, ")[1].split(" µs CPU")[0])
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions (default 7)")
    ap.add_argument("--connections", type=int, default=5000, help="connections per repetition and mode (default 5000)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("intercept_cost.py creates network namespaces: run it as root")
    if not TOOL.exists():
        sys.exit(f"{TOOL} is missing: cargo build --release -p idgate-benches --bin intercept_cost")
    cpu = {m: [] for m in RULES}
    for rep in range(args.reps):
        for mode in RULES:
            cpu[mode].append(measure(mode, args.connections))
        print(f"repetition {rep + 1}/{args.reps}: " + ", ".join(f"{m} {v[-1]:.1f}" for m, v in cpu.items()) + " µs CPU per connection",
              flush=True)
    med = {m: statistics.median(v) for m, v in cpu.items()}
    for mode, v in cpu.items():
        print(f"{mode:9} {med[mode]:6.1f} µs CPU per connection (median; {min(v):.1f}–{max(v):.1f}), "
              f"{med[mode] / med['redirect']:.2f}× REDIRECT + conntrack")


if __name__ == "__main__":
    main()
