"""Turns the reach benchmark's raw results (reach.json) into its markdown tables, and says which
figures are missing."""
import statistics

# key: (title, workload, field, digits)
FIGURES = {
    "first": ("first flow of a new process, median (ms)", "first", "p50", 2),
    "later_p50": ("later flows, a new connection each: p50 (ms)", "later", "p50", 2),
    "later_p90": ("later flows, a new connection each: p90 (ms)", "later", "p90", 2),
    "ka1_p50": ("keep-alive, 1 connection: p50 (µs)", "ka1", "p50", 0),
    "ka1_rps": ("keep-alive, 1 connection: req/s", "ka1", "rps", 0),
    "ka10_p50": ("keep-alive, 10 connections: p50 (µs)", "ka10", "p50", 0),
    "ka10_rps": ("keep-alive, 10 connections: req/s", "ka10", "rps", 0),
    "bulk": ("bulk, iperf3 single stream (Gbit/s)", "bulk", "gbps", 2),
}


def figures_of(scn):
    return [f for f in FIGURES if FIGURES[f][1] in scn["workloads"]]


def values(res, name, path, fig):
    """The figure's value in each repetition (None where it is missing)."""
    _, wl, field, _ = FIGURES[fig]
    return [(rep.get(name, {}).get(path, {}).get(wl) or {}).get(field) for rep in res["reps"]]


def agg(vals):
    vals = [v for v in vals if v is not None]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None


def ratio(res, name, path, base, fig):
    """path ÷ base, paired per repetition."""
    return agg([a / b if a is not None and b else None for a, b in zip(values(res, name, path, fig), values(res, name, base, fig), strict=True)])


def fmt(a, digits):
    if a is None:
        return "—"
    m, lo, hi = a
    f = f"{{:,.{digits}f}}".format
    return f(m) if lo == hi else f"{f(m)} ({f(lo)}–{f(hi)})"


def missing(res):
    """'scenario: path: what' for every figure or step that produced no number."""
    out = []
    for name, scn in res["scenarios"].items():
        for rep in res["reps"]:
            if rep.get(name, {}).get("error"):
                out.append(f"{name}: rep {rep['rep'] + 1}: {rep[name]['error']}")
        for path in scn["paths"]:
            for fig in figures_of(scn):
                if any(v is None for v in values(res, name, path, fig)):
                    errs = {(rep.get(name, {}).get(path, {}).get(FIGURES[fig][1]) or {}).get("error") for rep in res["reps"]} - {None}
                    out.append(f"{name}: {path}: {FIGURES[fig][0]}" + (f" ({'; '.join(sorted(errs))[:300]})" if errs else ""))
    return out


def table(res, name):
    """Each figure on every path; each idgate path with its ratio to the baseline beside it."""
    scn = res["scenarios"][name]
    label, base = scn["paths"], scn["baseline"]
    subjects = [p for p in scn["subjects"] if p in label]
    rest = [p for p in label if p != base and p not in subjects]
    head = ["figure", f"{label[base]} (baseline)"]
    for p in subjects:
        head += [label[p], "ratio"]
    head += [label[p] for p in rest]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for fig in figures_of(scn):
        title, _, _, digits = FIGURES[fig]
        cells = [title, fmt(agg(values(res, name, base, fig)), digits)]
        for p in subjects:
            cells += [fmt(agg(values(res, name, p, fig)), digits), fmt(ratio(res, name, p, base, fig), 2)]
        cells += [fmt(agg(values(res, name, p, fig)), digits) for p in rest]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(res):
    m, s = res["machine"], res["settings"]
    reps = len(res["reps"])
    out = [f"# Reach benchmark ({res['mode']} mode)", "",
           f"{m['date']}; {m['cpu']}; kernel {m['kernel']}; {m['idgate']}. {reps} repetition(s), paths interleaved "
           f"in a rotated order; {'each figure the median of the repetitions with min–max' if reps > 1 else 'one repetition'}; "
           "each ratio is the path's figure over the baseline's, paired per repetition (above 1: larger; for req/s and Gbit/s, better). "
           f"Load average {m['loadavg_start'][0]} at the start, at most {m.get('loadavg_max', '?')} during the run; "
           f"CPU used by anything else on the machine: {m.get('other_cpu_pct', '?')}% of its capacity; {m.get('seconds', '?')} s in all.", "",
           f"Settings: {s['first_processes']} new processes for the first flow, {s['later_flows']} later flows, "
           f"wrk {s['http']} s per load, iperf3 {s['bulk']} s.", ""]
    for name, scn in res["scenarios"].items():
        out += [f"## {scn['title']}", "", scn["what"], "", table(res, name), ""]
    problems = missing(res)
    if problems:
        out += ["## Missing", "", *(f"- {p}" for p in problems), ""]
    return "\n".join(out)
