"""Prints the markdown table of a benchmark run (scripts/bench/run.sh).

Usage: table.py RESULTS.jsonl PARAMETERS

RESULTS.jsonl holds one JSON object per line as printed by scripts/load
({"server", "mode", "n", "value", "unit", "incomplete", "details"}), or
{"server", "mode", "error"} for a run that printed none. Columns: figure,
Hearth, Prosody, ejabberd, Hearth/Prosody, Hearth/ejabberd.
"""

import json
import sys

SERVERS = ["hearth", "prosody", "ejabberd"]
# mode -> (figure, better); "n" in the figure is the run's n.
FIGURES = [
    ("register", "In-band registrations/s ({n} accounts, XEP-0077)", "higher"),
    ("idle", "KiB per idle TLS session (RSS slope from {h} to {n} sessions)", "lower"),
    ("login", "Logins/s ({n} accounts, C={c})", "higher"),
    ("message", "1:1 messages delivered/s ({n} pairs)", "higher"),
    ("muc", "MUC stanzas delivered/s ({n} occupants)", "higher"),
    ("peak_rss", "Peak server RSS after registration, MiB", "lower"),
]


def fmt(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main():
    path, params = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
    runs = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            runs[(r.get("server"), r.get("mode"))] = r
    notes = []
    print("| Figure | Hearth | Prosody | ejabberd | Hearth/Prosody | Hearth/ejabberd |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, figure, better in FIGURES:
        cells, values, n, conc = [], {}, None, None
        for s in SERVERS:
            r = runs.get((s, mode))
            if r is None:
                cells.append("–")
                continue
            if "error" in r:
                cells.append("error")
                notes.append(f"{s} {mode}: {r['error']}")
                continue
            v = float(r.get("value") or 0)
            if mode == "peak_rss":
                v /= 1024
            n = n or r.get("n")
            conc = conc or (r.get("details") or {}).get("concurrency")
            cell = fmt(v)
            if r.get("incomplete"):
                cell += "*"
                d = r.get("details") or {}
                what = ", ".join(f"{k} {d[k]}" for k in ("delivered", "expected", "sessions", "logins", "attempted", "created", "error") if k in d)
                notes.append(f"{s} {mode} incomplete (bounded by --max-time or errors){': ' + what if what else ''}")
            cells.append(cell)
            if v > 0:
                values[s] = v
        ratios = []
        for other in ("prosody", "ejabberd"):
            if "hearth" in values and other in values:
                ratios.append(f"{values['hearth'] / values[other]:.2f}×")
            else:
                ratios.append("–")
        name = figure.format(n=n if n is not None else "?", h=n // 2 if isinstance(n, int) else "?",
                             c=conc if conc is not None else "?")
        name += " (lower is better)" if better == "lower" else ""
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")
    known = {m for m, _, _ in FIGURES}
    for (s, mode), r in sorted(runs.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        if mode not in known and "error" in r:
            notes.append(f"{s} {mode}: {r['error']}")
    print()
    print(f"Parameters: {params}.")
    for note in notes:
        print(f"* {note}")


if __name__ == "__main__":
    main()
