"""Turns the benchmark's raw results (latest.json) into the markdown table and the PNG chart."""
import statistics
from pathlib import Path

PEERS = ["haproxy", "stunnel", "nginx", "envoy", "ztunnel"]
HTTP = ["ka1", "ka10", "ka64", "close10", "rate1", "rate10"]


def agg(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def values(res, key, wl, field):
    out = []
    for r in res["scenarios"].get(key, {}).get("reps", []):
        v = r.get(wl)
        if isinstance(v, dict) and v.get(field) is not None:
            out.append(v[field])
    return out


def stat(res, key, wl, field):
    return agg(values(res, key, wl, field))


def med(res, key, wl, field):
    a = stat(res, key, wl, field)
    return a[0] if a else None


def paired(res, key, wl, field, fn, base="direct"):
    """Per repetition fn(scenario value, base scenario's value) for reps where both exist."""
    d = {r["rep"]: r.get(wl, {}) for r in res["scenarios"].get(base, {}).get("reps", [])}
    out = []
    for r in res["scenarios"].get(key, {}).get("reps", []):
        mine, base = r.get(wl, {}), d.get(r["rep"], {})
        if isinstance(mine, dict) and isinstance(base, dict) and mine.get(field) is not None and base.get(field) is not None:
            out.append(fn(mine[field], base[field]))
    return agg(out)


def first_added(res, key, field="first_ms"):
    """A first request (`field` of the rep's "first": right after the pair started, a second
    client process, or a new process after the client side's proxy restarted), minus a direct
    new-connection request of the same rep."""
    d = {r["rep"]: r.get("first", {}).get("warm_ms") for r in res["scenarios"].get("direct", {}).get("reps", [])}
    out = [r["first"][field] - d[r["rep"]] for r in res["scenarios"].get(key, {}).get("reps", [])
           if r.get("first", {}).get(field) is not None and d.get(r["rep"]) is not None]
    return agg(out)


def side_mem(res, key, what, side):
    out = []
    for r in res["scenarios"].get(key, {}).get("reps", []):
        if what == "hwm":
            v = r.get("hwm_kib", {}).get(side)
        elif what == "idle_before":
            v = r.get("idle", {}).get("rss_before_kib", {}).get(side)
        else:
            v = r.get("idle", {}).get("rss_kib", {}).get(side)
        if v is not None:
            out.append(v / 1024)
    return agg(out)


def fmt(a, digits=0, unit=""):
    if a is None:
        return "—"
    m, lo, hi = a

    def f(x):
        return f"{x:,.{digits}f}"
    if lo == hi:
        return f"{f(m)}{unit}"
    return f"{f(m)}{unit} ({f(lo)}–{f(hi)})"


def fmt1(x, digits=0, unit=""):
    return "—" if x is None else f"{x:,.{digits}f}{unit}"


def one_line(text, n):
    """An error message fit for one table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")[:n]


def row_status(res, key):
    s = res["scenarios"][key]
    if s.get("missing"):
        return f"**{s['missing']}**"
    errs = [r["error"] for r in s["reps"] if r.get("error")]
    if errs and len(errs) == len(s["reps"]):
        return f"**FAILED: {one_line(errs[0], 200)}**"
    return None


def wl_error(res, key, wl):
    errs = [r.get(wl, {}).get("error") for r in res["scenarios"][key]["reps"] if isinstance(r.get(wl), dict)]
    errs = [e for e in errs if e]
    return one_line(errs[0], 160) if errs else None


def fail_note(res, key, wl):
    """' (k of n repetitions failed: why)' when some, not all, repetitions of a workload failed."""
    reps = res["scenarios"][key]["reps"]
    errs = [r.get(wl, {}).get("error") for r in reps if isinstance(r.get(wl), dict) and r[wl].get("error")]
    errs += [r["error"] for r in reps if r.get("error")]
    return f" ({len(errs)} of {len(reps)} repetitions failed: {one_line(errs[0], 120)})" if errs else ""


def missing_numbers(res):
    """Problems that make quick mode fail: a scenario that could run but produced no numbers."""
    out = []
    wls = [w for w, _ in res["workloads"]]
    for key, s in res["scenarios"].items():
        if s.get("missing"):
            if key in ("direct", "idgate", "idgate_http"):
                out.append(f"{key}: {s['missing']}")
            continue
        if not s["reps"]:
            out.append(f"{key}: did not run")
        for r in s["reps"]:
            if r.get("error"):
                out.append(f"{key} rep {r['rep'] + 1}: {r['error'][:300]}")
                continue
            for wl in wls:
                v = r.get(wl, {})
                if v.get("error", "").startswith("h2load not installed"):
                    continue
                if v.get("rps") is None and v.get("gbps") is None:
                    out.append(f"{key} rep {r['rep'] + 1} {wl}: {v.get('error', 'no numbers')[:300]}")
            if key != "direct":
                if r.get("idle", {}).get("error"):
                    out.append(f"{key} rep {r['rep'] + 1} 1000 idle flows: {r['idle']['error'][:300]}")
    return out


def verdict(ok):
    return "**met**" if ok else "**missed**"


def added_p50(res, key):
    """A scenario's keep-alive 1-connection p50 over direct's, paired per repetition (median)."""
    a = paired(res, key, "ka1", "p50", lambda x, y: x - y)
    return a[0] if a else None


def best_peer(res, wl, field, lower_better, derived=None):
    best = None
    for p in PEERS:
        if p not in res["scenarios"] or res["scenarios"][p].get("missing"):
            continue
        v = derived(p) if derived else med(res, p, wl, field)
        if v is None:
            continue
        if best is None or (v < best[1] if lower_better else v > best[1]):
            best = (p, v)
    return best


def targets(res):
    rows = []
    lab = {k: s["label"] for k, s in res["scenarios"].items()}

    # 1. keep-alive, 1 connection
    ig = added_p50(res, "idgate")
    bp = best_peer(res, "ka1", None, True, derived=lambda k: added_p50(res, k))
    if ig is None:
        rows.append(("1 conn keep-alive: added p50 ≤ 55 µs and ≤ ½ best peer's", "—", "—", "n/a (no idgate numbers)"))
    else:
        ok = ig <= 55 and (bp is None or ig <= bp[1] / 2)
        rows.append(("1 conn keep-alive: added p50 ≤ 55 µs and ≤ ½ best peer's", f"+{ig:.0f} µs",
                     f"{lab[bp[0]]}: +{bp[1]:.0f} µs (½ = {bp[1] / 2:.0f})" if bp else "no peer numbers", verdict(ok)))
    # 2. keep-alive, 10 connections
    ig, d = med(res, "idgate", "ka10", "rps"), med(res, "direct", "ka10", "rps")
    bp = best_peer(res, "ka10", "rps", False)
    if ig is None or d is None:
        rows.append(("10 conn keep-alive: ≥ 1.5× best peer req/s and ≥ 60% of direct", "—", "—", "n/a"))
    else:
        ok = ig >= 0.6 * d and (bp is None or ig >= 1.5 * bp[1])
        rows.append(("10 conn keep-alive: ≥ 1.5× best peer req/s and ≥ 60% of direct",
                     f"{ig:,.0f} req/s = {ig / d:.0%} of direct" + (f", {ig / bp[1]:.2f}× peer" if bp else ""),
                     f"{lab[bp[0]]}: {bp[1]:,.0f} req/s" if bp else "no peer numbers", verdict(ok)))
    # 3. new connection per request + first flow
    ig = med(res, "idgate", "close10", "rps")
    bp = best_peer(res, "close10", "rps", False)
    if ig is None:
        rows.append(("new connection per request: ≥ 6× best peer req/s", "—", "—", "n/a"))
    else:
        ok = bp is None or ig >= 6 * bp[1]
        rows.append(("new connection per request: ≥ 6× best peer req/s",
                     f"{ig:,.0f} req/s" + (f" = {ig / bp[1]:.1f}× peer" if bp else ""),
                     f"{lab[bp[0]]}: {bp[1]:,.0f} req/s" if bp else "no peer numbers", verdict(ok)))
    ff = first_added(res, "idgate")
    rows.append(("first flow of a new identity (JIT SVID + handshake): ≤ 2 ms added",
                 f"+{ff[0]:.2f} ms over a direct new connection" if ff else "—", "—",
                 verdict(ff[0] <= 2) if ff else "n/a"))
    # 4. bulk
    ig, d = med(res, "idgate", "bulk", "gbps"), med(res, "direct", "bulk", "gbps")
    bp = best_peer(res, "bulk", "gbps", False)
    if ig is None or d is None:
        rows.append(("bulk: ≥ 50% of direct and ≥ 1.5× best peer", "—", "—", "n/a"))
    else:
        ok = ig >= 0.5 * d and (bp is None or ig >= 1.5 * bp[1])
        rows.append(("bulk: ≥ 50% of direct and ≥ 1.5× best peer",
                     f"{ig:.2f} Gbit/s = {ig / d:.0%} of direct" + (f", {ig / bp[1]:.2f}× peer" if bp else ""),
                     f"{lab[bp[0]]}: {bp[1]:.2f} Gbit/s" if bp else "no peer numbers", verdict(ok)))
    # 5. RSS with 1000 open flows (each idgate process)
    a, b = side_mem(res, "idgate", "idle", "A"), side_mem(res, "idgate", "idle", "B")
    if a is None or b is None:
        rows.append(("RSS ≤ 20 MB with 1,000 open flows (each idgate process)", "—", "—", "n/a"))
    else:
        rows.append(("RSS ≤ 20 MB with 1,000 open flows (each idgate process)",
                     f"A {a[0]:.1f} MB, B {b[0]:.1f} MB", "—", verdict(max(a[0], b[0]) <= 20)))
    # The overall bar: better than every peer on every line.
    lost = []
    for wl, field, lower in [("ka1", "p50", True), ("ka10", "rps", False), ("ka64", "rps", False),
                             ("close10", "rps", False), ("rate1", "p99", True), ("rate10", "p99", True),
                             ("bulk", "gbps", False)]:
        ig = med(res, "idgate", wl, field)
        bp = best_peer(res, wl, field, lower)
        if ig is not None and bp is not None and (ig > bp[1] if lower else ig < bp[1]):
            lost.append(f"{wl} {field} ({lab[bp[0]]})")
    rows.append(("idgate beats every peer on every line (median)", "lines lost: " + (", ".join(lost) or "none"),
                 "—", verdict(not lost)))
    return rows


def targets_peers(res):
    """Issue 28's lines against the peers, ztunnel included: (target, idgate, best peer, verdict)."""
    rows = []
    lab = {k: s["label"] for k, s in res["scenarios"].items()}

    ig, bp = added_p50(res, "idgate"), best_peer(res, "ka1", None, True, derived=lambda k: added_p50(res, k))
    rows.append(("keep-alive, 1 conn: added p50 ≤ the best peer's", f"+{ig:.0f} µs" if ig is not None else "—",
                 f"{lab[bp[0]]}: +{bp[1]:.0f} µs" if bp else "—",
                 verdict(ig <= bp[1]) if ig is not None and bp else "n/a"))
    zt = "ztunnel" in res["scenarios"] and not res["scenarios"]["ztunnel"].get("missing")
    for wl, what in (("ka10", "keep-alive, 10 conns"), ("close10", "new connection per request")):
        ig, z = med(res, "idgate", wl, "rps"), med(res, "ztunnel", wl, "rps") if zt else None
        rows.append((f"{what}: req/s ≥ 1.2× ztunnel's", f"{ig:,.0f} req/s" if ig else "—",
                     (f"ztunnel pair: {z:,.0f} req/s" + (f" ({ig / z:.2f}×)" if ig else "")) if z else "ztunnel not measured",
                     verdict(ig >= 1.2 * z) if ig and z else "n/a"))
    ig, bp = med(res, "idgate", "bulk", "gbps"), best_peer(res, "bulk", "gbps", False)
    rows.append(("bulk: single stream ≥ 1.2× the best peer's", f"{ig:.2f} Gbit/s" if ig else "—",
                 f"{lab[bp[0]]}: {bp[1]:.2f} Gbit/s ({ig / bp[1]:.2f}×)" if ig and bp else "—",
                 verdict(ig >= 1.2 * bp[1]) if ig and bp else "n/a"))
    if bp:
        ic, pc = med(res, "idgate", "bulk", "cpu_gib"), med(res, bp[0], "bulk", "cpu_gib")
        rows.append(("bulk: proxy CPU per GiB ≤ 0.8× that peer's", f"{ic:.2f} s/GiB" if ic else "—",
                     f"{lab[bp[0]]}: {pc:.2f} s/GiB ({ic / pc:.2f}×)" if ic and pc else "—",
                     verdict(ic <= 0.8 * pc) if ic and pc else "n/a"))
    return rows


def targets_http(res, tcp="idgate", http="idgate_http"):
    """Issue 14's targets: the HTTP-aware path against the TCP path, and first flows."""
    rows = []
    lab = {k: s["label"] for k, s in res["scenarios"].items()}

    def ratio(wl, field):
        a = paired(res, http, wl, field, lambda x, y: x / y if y else None, base=tcp)
        return a[0] if a else None

    d = paired(res, http, "ka1", "p50", lambda x, y: x - y, base=tcp)
    rows.append(("HTTP-aware, 1 conn keep-alive: p50 ≤ TCP path + 20 µs",
                 f"{d[0]:+.0f} µs" if d else "—", verdict(d[0] <= 20) if d else "n/a"))
    for wl, n in (("ka10", 10), ("ka64", 64)):
        r = ratio(wl, "rps")
        rows.append((f"HTTP-aware, {n} conn keep-alive: req/s ≥ 0.85× TCP path",
                     f"{r:.2f}× ({med(res, http, wl, 'rps'):,.0f} vs {med(res, tcp, wl, 'rps'):,.0f} req/s)" if r else "—",
                     verdict(r >= 0.85) if r else "n/a"))
    r = ratio("ka10", "cpu10k")
    rows.append(("HTTP-aware: proxy CPU per request ≤ 1.2× TCP path (10 conn keep-alive)",
                 f"{r:.2f}×" if r else "—", verdict(r <= 1.2) if r else "n/a"))
    a, b = side_mem(res, http, "idle", "A"), side_mem(res, http, "idle", "B")
    rows.append(("HTTP-aware: RSS ≤ 20 MB with 1,000 open keep-alive flows (each idgate process)",
                 f"A {a[0]:.1f} MB, B {b[0]:.1f} MB" if a and b else "—",
                 verdict(max(a[0], b[0]) <= 20) if a and b else "n/a"))
    lost = []
    for wl in ("ka10", "ka64"):
        h, bp = med(res, http, wl, "rps"), best_peer(res, wl, "rps", False)
        if h is not None and bp is not None and h < bp[1]:
            lost.append(f"{wl} ({lab[bp[0]]} {bp[1]:,.0f} req/s)")
    if any(p in res["scenarios"] and not res["scenarios"][p].get("missing") for p in PEERS):
        rows.append(("HTTP-aware beats every peer pair at 10 and 64 conns", "lost: " + (", ".join(lost) or "none"), verdict(not lost)))
    nf = first_added(res, tcp, "next_process_ms")
    rows.append(("first flow of a new process whose identity is known: ≤ 0.3 ms added (median of 5 processes per rep)",
                 f"+{nf[0]:.2f} ms over a direct new connection" if nf else "—", verdict(nf[0] <= 0.3) if nf else "n/a"))
    fn = first_added(res, tcp, "new_identity_ms")
    rows.append(("first flow of an identity never seen, on a running host: ≤ 1 ms added",
                 f"+{fn[0]:.2f} ms over a direct new connection" if fn else "—", verdict(fn[0] <= 1) if fn else "n/a"))
    ff = first_added(res, tcp)
    rows.append(("(stricter: the same right after idgate's first start, no peer known yet: ≤ 1 ms added)",
                 f"+{ff[0]:.2f} ms over a direct new connection" if ff else "—", verdict(ff[0] <= 1) if ff else "n/a"))
    fr = first_added(res, tcp, "after_restart_ms")
    rows.append(("(a new process right after host A's idgate restarted, its target history kept: ≤ 1 ms added)",
                 f"+{fr[0]:.2f} ms over a direct new connection" if fr else "—", verdict(fr[0] <= 1) if fr else "n/a"))
    ig, bp = med(res, tcp, "close10", "rps"), best_peer(res, "close10", "rps", False)
    if ig is not None and bp is not None:
        rows.append(("new connection per request: ≥ 6× best peer req/s", f"{ig / bp[1]:.1f}× ({lab[bp[0]]})", verdict(ig >= 6 * bp[1])))
    return rows


# (workload, field, what, digits) compared between the HTTP-aware and the TCP idgate pair.
HTTP_VS_TCP = [
    ("ka1", "p50", "keep-alive, 1 conn: p50 µs", 0),
    ("ka1", "rps", "keep-alive, 1 conn: req/s", 0),
    ("ka10", "rps", "keep-alive, 10 conns: req/s", 0),
    ("ka10", "p50", "keep-alive, 10 conns: p50 µs", 0),
    ("ka10", "cpu10k", "keep-alive, 10 conns: proxy CPU s / 10k req", 2),
    ("ka64", "rps", "keep-alive, 64 conns: req/s", 0),
    ("close10", "rps", "new connection per request, 10 conns: req/s", 0),
    ("close10", "cpu10k", "new connection per request: proxy CPU s / 10k req", 2),
    ("rate10", "p50", "constant 5k req/s: p50 µs", 0),
    ("rate10", "p99", "constant 5k req/s: p99 µs", 0),
]


def http_vs_tcp(res, tcp="idgate", http="idgate_http"):
    """Rows (what, direct, tcp, http, http − tcp, http / tcp); differences and ratios are paired per
    repetition (median, min–max). Empty unless both pairs have numbers."""
    sc = res["scenarios"]
    if any(k not in sc or sc[k].get("missing") or row_status(res, k) for k in (tcp, http)):
        return []
    rows = []
    for wl, field, what, digits in HTTP_VS_TCP:
        if not values(res, tcp, wl, field) or not values(res, http, wl, field):
            continue
        diff = paired(res, http, wl, field, lambda x, y: x - y, base=tcp)
        ratio = paired(res, http, wl, field, lambda x, y: x / y if y else None, base=tcp)
        sign = "+" if diff and diff[0] >= 0 else ""
        rows.append((what, "—" if field == "cpu10k" else fmt(stat(res, "direct", wl, field), digits),
                     fmt(stat(res, tcp, wl, field), digits), fmt(stat(res, http, wl, field), digits),
                     sign + fmt(diff, digits) if diff else "—", fmt(ratio, 2, "×") if ratio else "—"))
    return rows


def markdown(res):
    m = res["machine"]
    d = res["durations"]
    keys = list(res["scenarios"])
    lab = {k: res["scenarios"][k]["label"] for k in keys}
    wl_title = dict(res["workloads"])
    n = d["reps"]
    L = []
    L.append("# idgate end-to-end benchmark: latest run\n")
    L.append(f"{m['date']} · mode **{res['mode']}** · {n} interleaved repetition{'s' if n > 1 else ''} "
             f"(median, with min–max in parentheses) · HTTP workloads {d['http']} s each, bulk {d['bulk']} s · "
             f"run took {m.get('seconds', '?')} s\n")
    L.append(f"Machine: {m['cpu']}, Linux {m['kernel']}; load average at start {' '.join(m['loadavg_start'])}, "
             f"highest 1-minute value at a scenario start {m.get('loadavg_max', 0):.2f}. Produced by `benches/e2e/run.py`; "
             "raw numbers in `latest.json`.\n")
    # Summary
    L.append("## Summary (medians)\n")
    L.append("| scenario | 1 conn keep-alive p50 | added p50 | 10 conn req/s | 64 conn req/s | new conn/request req/s "
             "| constant 5k req/s p99 | bulk Gbit/s | peak RSS A + B | RSS with 1,000 flows A / B |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        st = row_status(res, k)
        if st:
            L.append(f"| {lab[k]} | {st} | | | | | | | | |")
            continue
        add = paired(res, k, "ka1", "p50", lambda x, y: x - y)
        hwm = [side_mem(res, k, "hwm", s) for s in ("A", "B")]
        idle = [side_mem(res, k, "idle", s) for s in ("A", "B")]
        L.append(f"| {lab[k]} | {fmt1(med(res, k, 'ka1', 'p50'), 0, ' µs')} | "
                 f"{'—' if k == 'direct' or not add else f'+{add[0]:.0f} µs'} | "
                 f"{fmt1(med(res, k, 'ka10', 'rps'))} | {fmt1(med(res, k, 'ka64', 'rps'))} | "
                 f"{fmt1(med(res, k, 'close10', 'rps'))} | {fmt1(med(res, k, 'rate10', 'p99'), 0, ' µs')} | "
                 f"{fmt1(med(res, k, 'bulk', 'gbps'), 2)} | "
                 f"{'—' if k == 'direct' or None in hwm else f'{hwm[0][0] + hwm[1][0]:.1f} MB'} | "
                 f"{'—' if k == 'direct' or None in idle else f'{idle[0][0]:.1f} / {idle[1][0]:.1f} MB'} |")
    L.append("")
    rows = http_vs_tcp(res)
    if rows:
        L.append("## idgate: HTTP-aware path against the TCP path\n")
        L.append(f"*{lab['idgate_http']}* against *{lab['idgate']}*: differences and ratios are paired per "
                 "repetition (median, min–max).\n")
        L.append("| workload | direct | idgate (TCP) | idgate HTTP-aware | HTTP − TCP | HTTP / TCP |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for row in rows:
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    # Targets
    sc = res["scenarios"]
    if all(k in sc and not sc[k].get("missing") and not row_status(res, k) for k in ("idgate", "idgate_http")):
        L.append("## Targets from issue 14: the HTTP-aware path and first flows (reported, not asserted)\n")
        L.append("| target | measured (median) | verdict |")
        L.append("|---|---|---|")
        for row in targets_http(res):
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    if any(p in sc and not sc[p].get("missing") for p in PEERS):
        L.append("## Targets from issue 28: against the best peer, ztunnel included (reported, not asserted)\n")
        L.append("| target | idgate | best peer | verdict |")
        L.append("|---|---|---|---|")
        for row in targets_peers(res):
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        L.append("What the profile says of the misses (`benches/e2e/profile.py`; details in "
                 "[docs/benchmarks.md](../../docs/benchmarks.md#against-ztunnel)): per new connection both pairs "
                 "spend about the same proxy CPU, most of it in the kernel's TCP set-up and "
                 "teardown, netfilter and the tunnel's writes; idgate's own part adds the identity lookup (sock_diag "
                 "and procfs syscalls) that ztunnel, which trusts the source address, does not make. In bulk both spend most of their CPU in "
                 "the kernel's copies, with the same HTTP/2 windows and frames and the same TLS library; idgate's "
                 "extra is spread (more memmove and page faults on the receiving host), with no one hot spot.\n")
    L.append("## Targets from issue 5 (reported, not asserted)\n")
    L.append("| target | idgate | best peer | verdict |")
    L.append("|---|---|---|---|")
    for row in targets(res):
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    # Per workload
    L.append("## Per workload\n")
    for wl in [w for w, _ in res["workloads"] if w in HTTP]:
        L.append(f"### {wl_title[wl]}\n")
        L.append("| scenario | req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 µs | proxy CPU s / 10k req | errors |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k in keys:
            st = row_status(res, k)
            err = None if st else wl_error(res, k, wl)
            if st or (err and not values(res, k, wl, "rps")):
                L.append(f"| {lab[k]} | {st or '**' + err + '**'} | | | | | | | |")
                continue
            add = paired(res, k, wl, "p50", lambda x, y: x - y)
            errs = int(sum(values(res, k, wl, "errors")))
            L.append(f"| {lab[k]} | {fmt(stat(res, k, wl, 'rps'))} | {fmt(stat(res, k, wl, 'p50'))} | "
                     f"{fmt(stat(res, k, wl, 'p90'))} | {fmt(stat(res, k, wl, 'p99'))} | {fmt(stat(res, k, wl, 'p999'))} | "
                     f"{'—' if k == 'direct' else fmt((add[0], add[1], add[2]) if add else None)} | "
                     f"{'—' if k == 'direct' else fmt(stat(res, k, wl, 'cpu10k'), 2)} | {errs}"
                     f"{fail_note(res, k, wl)} |")
        L.append("")
    L.append(f"### {wl_title['bulk']}\n")
    L.append("| scenario | Gbit/s | % of direct | proxy CPU s / GiB |")
    L.append("|---|---:|---:|---:|")
    dg = med(res, "direct", "bulk", "gbps")
    for k in keys:
        st = row_status(res, k) or (wl_error(res, k, "bulk") if not values(res, k, "bulk", "gbps") else None)
        if st:
            L.append(f"| {lab[k]} | {st} | | |")
            continue
        g = med(res, k, "bulk", "gbps")
        L.append(f"| {lab[k]} | {fmt(stat(res, k, 'bulk', 'gbps'), 2)} | {f'{g / dg:.0%}' if dg and g else '—'} | "
                 f"{'—' if k == 'direct' else fmt(stat(res, k, 'bulk', 'cpu_gib'), 2)}{fail_note(res, k, 'bulk')} |")
    L.append("")
    L.append("### Connection set-up and memory\n")
    L.append("| scenario | first request after start, ms | added over a direct new connection, ms | later new-connection request, ms "
             "| peak RSS (VmHWM) A / B, MB | RSS idle A / B, MB | RSS with 1,000 open flows A / B, MB |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        st = row_status(res, k)
        if st:
            L.append(f"| {lab[k]} | {st} | | | | | |")
            continue
        ff = first_added(res, k)
        idle_err = next((r["idle"]["error"] for r in res["scenarios"][k]["reps"] if r.get("idle", {}).get("error")), None)

        def ab(what, k=k):
            a, b = side_mem(res, k, what, "A"), side_mem(res, k, what, "B")
            return "—" if a is None or b is None else f"{fmt(a, 1)} / {fmt(b, 1)}"
        L.append(f"| {lab[k]} | {fmt(stat(res, k, 'first', 'first_ms'), 2)} | "
                 f"{'—' if k == 'direct' else fmt(ff, 2)} | {fmt(stat(res, k, 'first', 'warm_ms'), 2)} | "
                 f"{'—' if k == 'direct' else ab('hwm')} | {'—' if k == 'direct' else ab('idle_before')} | "
                 f"{'—' if k == 'direct' else (ab('idle') if not idle_err else '**' + one_line(idle_err, 120) + '**')} |")
    L.append("")
    # Notes
    L.append("## Notes\n")
    L.append("- **Setup.** Two network namespaces (host A 10.77.0.1, host B 10.77.0.2) on a veth bridge. Host B runs one "
             "nginx (1 worker, `return 200` of 18 bytes, keep-alive on, access log off) and iperf3 servers; host A runs "
             "the clients as uid 1001 (idgate maps it to `spiffe://demo.idgate/app/alice`). Only one proxy pair runs at "
             "a time; each repetition starts every pair afresh, in a rotated order, so scenarios are interleaved. Within a "
             "pair's block: first requests (right after the pair started, with nothing remembered from an earlier "
             "repetition; five new client processes of the same workload, the rep's value their median; for idgate, the first "
             "process of a workload identity idgate has not seen yet (uid 1002, `app/bob`), and a new process after host A's "
             "idgate restarted with its "
             "state directory kept), a 1 s warm-up, bulk, keep-alive 1/10/64, new connection per request, "
             "constant rate, then the 1,000 idle flows.")
    L.append("- **Scenarios.** " + " ".join(f"*{lab[k]}*: {res['scenarios'][k]['what']}." for k in keys))
    L.append("- **Certificates.** Every peer pair uses ECDSA P-256 certificates from one openssl CA, TLS 1.3 only, client "
             "certificate required by host B. idgate mints its own P-256 SVIDs from a shared `idgate ca-init` CA.")
    L.append("- **Load generators.** Keep-alive and new-connection workloads use wrk (`-t1`, closed loop: a slow response "
             "delays the next request, so wrk's percentiles understate tail latency: coordinated omission). Debian 12 "
             "has no wrk2; the constant-rate rows use h2load (`--h1 --rps`, per-request log). h2load sends at a fixed "
             "rate but times each request from when it is written, so a request queued behind a slow response does "
             "not count its wait: at these rates, far below every pair's capacity, that effect is small but not zero.")
    L.append("- **Added p50** is the per-repetition difference to direct's p50 of the same repetition (median, min–max).")
    L.append("- **Proxy CPU** is utime+stime from /proc/<pid>/stat of every process of the pair (both hosts, all "
             "threads and child processes), over the workload, divided by requests (or GiB).")
    L.append("- **Memory** sums VmHWM / VmRSS over each host's proxy processes (nginx: master and workers, so shared "
             "pages count more than once). *RSS with 1,000 open flows*: 1,000 keep-alive connections from host A, one "
             "request each, then held open idle.")
    L.append("- **First request**: a Python client's connect → response time for the first connection after the pair "
             "started (idgate: identity lookup, JIT SVID minting and the tunnel handshake), then for later new "
             "connections (idgate: pooled tunnel).")
    missing = [f"{lab[k]}: {s['missing']}" for k, s in res["scenarios"].items() if s.get("missing")]
    if missing:
        L.append("- **Not measured**: " + "; ".join(missing) + ".")
    load = float(m["loadavg_start"][0])
    if "other_cpu_pct" in m:
        L.append(f"- **Other load**: during the run the machine spent {m['other_cpu_pct']}% of its CPU on anything but "
                 f"this benchmark's processes (this includes softirq network work not charged to any process, so a few "
                 f"percent is normal), and {m.get('steal_pct', 0)}% was stolen by the hypervisor.")
    if load > 0.5 or m.get("loadavg_max", 0) > 2.5 or m.get("other_cpu_pct", 0) > 15:
        L.append(f"- **Noise warning**: the machine was not idle (1-minute load average {load:.2f} at the start, "
                 f"up to {m.get('loadavg_max', 0):.2f} during the run, where the benchmark itself accounts for about 2 "
                 "on 2 cores), so numbers may be noisy; compare scenarios within this run rather than across runs.")
    L.append("- Versions: " + "; ".join(f"{k} `{v}`" for k, v in m["versions"].items()) + ".")
    L.append("")
    return "\n".join(L)


def chart(res, path: Path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    keys = [k for k, s in res["scenarios"].items() if not s.get("missing")]
    labels = [res["scenarios"][k].get("short") or
              res["scenarios"][k]["label"].replace(" pair", "").replace("nginx stream", "nginx\nstream") for k in keys]
    colors = [{"direct": "#888888", "idgate": "#d62728", "idgate_http": "#ff7f0e"}.get(k, "#1f77b4") for k in keys]
    panels = [
        ("keep-alive, 1 conn: p50 latency (µs, lower is better)", "ka1", "p50"),
        ("keep-alive, 10 conns: requests/s", "ka10", "rps"),
        ("keep-alive, 64 conns: requests/s", "ka64", "rps"),
        ("new connection per request, 10 conns: requests/s", "close10", "rps"),
        ("constant 5k req/s, 10 conns: p99 latency (µs, lower is better)", "rate10", "p99"),
        ("bulk, iperf3 single stream: Gbit/s", "bulk", "gbps"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (title, wl, field) in zip(axes.flat, panels, strict=True):
        meds, lo, hi = [], [], []
        for k in keys:
            a = stat(res, k, wl, field)
            m, mn, mx = a if a else (0, 0, 0)
            meds.append(m)
            lo.append(m - mn)
            hi.append(mx - m)
        x = range(len(keys))
        ax.bar(x, meds, color=colors, yerr=[lo, hi], capsize=3)
        ax.set_xticks(list(x), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        for i, m in enumerate(meds):
            if m:
                ax.text(i, m, f"{m:.2f}" if field == "gbps" else f"{m:,.0f}", ha="center", va="bottom", fontsize=7)
    n = res["durations"]["reps"]
    fig.suptitle(f"idgate end-to-end benchmark ({res['machine']['date']}, {res['mode']}, median of {n}, "
                 f"bars = min–max; 2 namespaces on one {res['machine']['cpu']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
