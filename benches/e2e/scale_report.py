"""The scale mode's results file: one table per target of the scale work (destinations,
identities, peers, flows), each line met or missed with its number, from the four scale
benchmarks' JSON files in benches/results, and a chart of how each cost grows. Written by
`run.py --scale`; `python3 benches/e2e/scale_report.py` rewrites it from the JSON files alone."""
import json
import sys
import time
from pathlib import Path

from report import verdict

RESULTS = Path(__file__).resolve().parents[1] / "results"
PARTS = {
    "destinations": ("scale-destinations.json", "scale_destinations.py"),
    "identities": ("scale-identities.json", "scale_identities.py"),
    "peers": ("scale-peers.json", "scale_peers.py"),
    "flows": ("scale-flows.json", "scale_flows.py"),
}


def load(out=RESULTS):
    got = {}
    for key, (name, _script) in PARTS.items():
        f = out / name
        got[key] = json.loads(f.read_text()) if f.exists() else None
    return got


def destinations(d):
    rows = []
    for fam, name in (("v4", "IPv4"), ("v6", "IPv6")):
        f = d["families"][fam]
        added = f["added_p50_large"] / f["added_p50_small"] if f["added_p50_small"] else None
        rows.append((f"{name}: new connections per second, 10,000 against 10 destinations, within 5%",
                     f"{f['rps_large']:,.0f} against {f['rps_small']:,.0f} ({f['rps_ratio']:.2f}×)", verdict(f["rps_ratio"] >= 0.95)))
        rows.append((f"{name}: added p50 of a new connection, within 5%",
                     f"+{f['added_p50_large']:.0f} against +{f['added_p50_small']:.0f} µs ({added:.2f}×)" if added else "—",
                     verdict(added is not None and added <= 1.05)))
    u = d["reload_under_load"]
    rows.append(("reload of the 10,000-destination file under load: no failed flow",
                 f"{u['errors']} failed of {u['requests']:,}; reload {u['reload_s_to_large']:.2f} s (back to 10: "
                 f"{u['reload_s_to_small']:.2f} s)", verdict(u["errors"] == 0)))
    return rows


def identities(r):
    return [
        ("first flow of the last 50 of 1,000 identities within 10% of the first 50's",
         f"{r['first_flow_us_last']:,.0f} against {r['first_flow_us_first']:,.0f} µs "
         f"({r['first_flow_ratio_last_to_first']:.2f}×; rule order alone {r['fresh_ratio_last_to_first']:.2f}×)",
         verdict(r["first_flow_ratio_last_to_first"] <= 1.10)),
        ("SVID renewals spread over time: most mints in any one second (reported)",
         f"{r['max_mints_in_one_second']} (of {r['renewals_in_window']:,} renewals in {r['renewals_watched_s']} s)", "reported"),
        ("memory per identity (reported)", f"{r['rss_kib_per_identity']:.0f} KiB (its SVID and its own pooled connection)",
         "reported"),
    ]


def peers(r):
    return [
        ("memory per peer (reported)", f"{r['rss_kib_per_peer']:.0f} KiB of host A's RSS ({r['peers']} peers)", "reported"),
        ("handshakes per minute at steady state (reported; pooled: 0 is the aim)",
         f"{r['handshakes_per_minute']:.0f} over {r['steady_flows']:,} new flows in {r['steady_seconds']} s",
         verdict(r["handshakes_per_minute"] == 0)),
        ("idle connections retired", f"{r['tunnel_connections'] - r['idle_connections_after_timeout']} of "
         f"{r['tunnel_connections']} after the pool's idle timeout" if "idle_connections_after_timeout" in r else "not waited for",
         verdict(r.get("idle_connections_after_timeout") == 0)),
    ]


def flows(r):
    s, l_ = r["small"], r["large"]
    rows = []
    for side in ("A", "B"):
        ratio = r["ratio_per_flow"][side]
        rows.append((f"host {side}: RSS per flow at {l_['flows']:,} no worse than at {s['flows']:,}",
                     f"{l_['per_flow_bytes'][side]:,.0f} against {s['per_flow_bytes'][side]:,.0f} bytes ({ratio:.2f}×)",
                     verdict(ratio is not None and ratio <= 1.0)))
    rows.append((f"every one of {l_['flows']:,} flows still answers", f"{l_['answered_again']:,}",
                  verdict(l_["answered_again"] == l_["flows"])))
    if r.get("limited"):
        rows.append(("50,000 concurrent flows", f"not run here: {r['limited']}", "**not measured**"))
    return rows


SECTIONS = [
    ("destinations", "Destinations: 10 against 10,000 (CIDR, ports) pairs", destinations),
    ("identities", "Identities: 1,000 workload rules and identities on one host", identities),
    ("peers", "Peers: one host and 100 peer hosts", peers),
    ("flows", "Flows: concurrent open flows through one pair", flows),
]


def markdown(got, wall=None):
    L = ["# Scale: how idgate's costs grow", "",
         f"Written {time.strftime('%Y-%m-%d')} by `python3 benches/e2e/run.py --scale`"
         + (f" (took {wall / 60:.0f} minutes)" if wall else "") + " from the four scale benchmarks' results "
         "(each file beside this one has the details). Chart: [`scale.png`](scale.png).", ""]
    for key, title, rows in SECTIONS:
        name, script = PARTS[key]
        L.append(f"## {title}\n")
        if got[key] is None:
            L.append(f"No results: run `python3 benches/e2e/{script}`.\n")
            continue
        L.append(f"From `benches/e2e/{script}` ([{name.replace('.json', '.md')}]({name.replace('.json', '.md')})).\n")
        L.append("| target | measured | verdict |")
        L.append("|---|---|---|")
        for row in rows(got[key]):
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    return "\n".join(L)


def chart(got, path):
    """Four panels, one per part: each cost at the small and the large size."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    d, i, p, f = (got[k] for k in ("destinations", "identities", "peers", "flows"))
    if d:
        ax = axes[0]
        for n, fam in enumerate(("v4", "v6")):
            x = d["families"][fam]
            ax.bar([n * 3, n * 3 + 1], [x["rps_small"], x["rps_large"]], color=["#8fb3d9", "#2a6bb0"])
        ax.set_xticks([0, 1, 3, 4], ["IPv4\n10", "IPv4\n10,000", "IPv6\n10", "IPv6\n10,000"])
        ax.set_title("destinations: new connections/s")
    if i:
        ax = axes[1]
        ax.bar([0, 1, 3, 4], [i["first_flow_us_first"], i["first_flow_us_last"], i["fresh_first_rules_us"], i["fresh_last_rules_us"]],
               color=["#8fb3d9", "#2a6bb0", "#8fb3d9", "#2a6bb0"])
        ax.set_xticks([0, 1, 3, 4], ["first 50\nidentities", "last 50", "first 50\nrules (fresh)", "last 50"])
        ax.set_title("identities: first flow, µs (of 1,000)")
    if p:
        ax = axes[2]
        ax.bar([0, 1], [p["rss_kib_before"] / 1024, p["rss_kib_after_all_peers"] / 1024], color=["#8fb3d9", "#2a6bb0"])
        ax.set_xticks([0, 1], ["no peer", f"{p['peers']} peers"])
        ax.set_title(f"peers: host A RSS, MiB ({p['rss_kib_per_peer']:.0f} KiB/peer)")
    if f:
        ax = axes[3]
        for side, color in (("A", "#2a6bb0"), ("B", "#d9822b")):
            xs = [f["small"]["flows"], f["large"]["flows"]]
            ys = [f[k]["rss_kib"][side] / 1024 for k in ("small", "large")]
            ax.plot([0] + xs, [f["small"]["rss_kib_before"][side] / 1024] + ys, marker="o", color=color, label=f"host {side}")
        ax.set_xlabel("open flows")
        ax.legend()
        ax.set_title("flows: idgate RSS, MiB")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write(out=RESULTS, wall=None):
    got = load(out)
    (out / "scale.md").write_text(markdown(got, wall) + "\n")
    png = chart(got, out / "scale.png")
    return out / "scale.md", png


if __name__ == "__main__":
    md, png = write()
    print(md.read_text())
    print(f"wrote {md}" + (f" and {png}" if png else " (no chart: matplotlib missing)"), file=sys.stderr)
