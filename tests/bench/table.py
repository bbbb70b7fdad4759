#!/usr/bin/env python3
"""Helper for compare.sh (run by hand, not in CI).

  table.py annotate --server NAME --run RUN [--wall S] [--client-cpu S]
                    [--server-cpu S] [--error TEXT] < client_stdout
      Reads the benchmark client's stdout (one JSON object per line), adds the
      server name, run name and measured CPU/wall times to every object, and
      prints them as JSON lines. If there is no JSON line, or --error is
      given, an error record is printed too.

  table.py render results.jsonl
      Prints markdown tables: a summary with one row per server and ratios to
      wschat, a big-room table (one row per bigroom-CLIENTSxRATE run, four
      columns per server), then one table per run.
"""

import argparse
import json
import re
import sys

SERVERS = ["wschat", "tungstenite-threads", "tokio-tungstenite", "least-work"]
BASELINE = "wschat"


def annotate(args):
    # Measured by compare.sh over the client's whole lifetime (connecting
    # included). Prefixed "run_" so they never clobber the client's own keys
    # (e.g. its server_cpu_pct, measured over the send window only).
    extra = {"server": args.server, "run": args.run}
    if args.wall is not None:
        extra["run_wall_s"] = args.wall
    if args.client_cpu is not None:
        extra["run_client_cpu_s"] = args.client_cpu
    if args.server_cpu is not None:
        extra["run_server_cpu_s"] = args.server_cpu
        if args.wall:
            extra["run_server_cpu_pct"] = round(100.0 * args.server_cpu / args.wall, 1)
    if args.client_cpu is not None and args.wall:
        extra["run_client_cpu_pct"] = round(100.0 * args.client_cpu / args.wall, 1)
    if args.machine_cpu is not None:
        # CPU used by everything else on the machine during the run (kernel
        # threads, other processes): a noise indicator, ideally near 0.
        other = args.machine_cpu - (args.server_cpu or 0.0) - (args.client_cpu or 0.0)
        extra["run_other_cpu_s"] = round(max(other, 0.0), 2)
    found = 0
    bad = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(obj, dict):
            bad.append(line)
            continue
        obj.update(extra)
        if args.error:
            obj["error"] = args.error
        print(json.dumps(obj))
        found += 1
    if found == 0:
        err = args.error or "client printed no JSON line"
        if bad:
            err += "; unparsed output: " + " | ".join(bad)[:200]
        print(json.dumps(dict(extra, error=err)))


# ---------------------------------------------------------------- rendering

def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def key_of(rec):
    """Distinguish the echo sizes within the echo run."""
    if rec.get("run") == "echo" and "size" in rec:
        return "echo-%s" % rec["size"]
    return rec.get("run")


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return "{:,}".format(v)
    if isinstance(v, float):
        a = abs(v)
        if a >= 1000:
            return "{:,.0f}".format(v)
        if a >= 100:
            return "{:.1f}".format(v)
        if a >= 1:
            return "{:.2f}".format(v)
        return "{:.3f}".format(v)
    return str(v)


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def cell(rec, field, base_rec, ratio=True):
    v = rec.get(field) if rec else None
    if rec and rec.get("error") and v is None:
        return "error"
    s = fmt(v)
    if not ratio or rec is base_rec:
        return s
    # No ratio against a baseline run that failed: its numbers are suspect.
    b = num(base_rec.get(field)) if base_rec and not base_rec.get("error") else None
    if num(v) is not None and b:
        s += " (%.2f×)" % (v / b)
    return s


def size_label(n):
    n = int(n)
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return "%d MiB" % (n >> 20)
    if n >= 1024 and n % 1024 == 0:
        return "%d KiB" % (n >> 10)
    return "%d B" % n


# Summary columns: (run key, field, header). ↑ = higher is better, ↓ = lower.
SUMMARY = [
    ("fanout-100x10", "deliveries_per_sec", "fanout 100×10 max: deliveries/s ↑"),
    ("fanout-100x10", "p99_ms", "fanout 100×10 max: p99 ms ↓"),
    ("fanout-1000x1", "p99_ms", "fanout 1000×1 @100/s: p99 ms ↓"),
    ("fanout-1000x1", "run_server_cpu_s", "fanout 1000×1 @100/s: server CPU s ↓"),
    ("connections-5000", "rss_kb_per_conn", "5000 conns: RSS KiB/conn ↓"),
    ("connections-5000", "all_in_kb_per_conn", "5000 conns: all-in KiB/conn ↓"),
    ("connections-5000", "connect_p99_ms", "5000 conns: connect p99 ms ↓"),
    ("echo-16", "round_trips_per_sec", "echo 16 B: round trips/s ↑"),
    ("echo-1048576", "mb_per_sec", "echo 1 MiB: MB/s ↑"),
]

# Per-run detail columns, by benchmark kind.
DETAIL = {
    "fanout": [
        ("deliveries_per_sec", "deliveries/s ↑", True),
        ("p50_ms", "p50 ms ↓", True),
        ("p99_ms", "p99 ms ↓", True),
        ("max_ms", "max ms", False),
        ("lost", "lost", False),
        ("out_of_order", "out of order", False),
        ("run_server_cpu_s", "server CPU s (run)", True),
        ("run_server_cpu_pct", "server CPU % (run)", False),
        ("run_client_cpu_s", "client CPU s (run)", False),
        ("client_cpu_pct", "client CPU % (send window)", False),
        ("run_other_cpu_s", "other CPU s (noise)", False),
    ],
    "connections": [
        ("rss_kb_per_conn", "RSS KiB/conn ↓", True),
        ("all_in_kb_per_conn", "all-in KiB/conn (RSS + page tables + kernel stacks) ↓", True),
        ("server_threads", "server threads", False),
        ("connect_p50_ms", "connect p50 ms ↓", True),
        ("connect_p99_ms", "connect p99 ms ↓", True),
        ("failed", "failed", False),
        ("run_server_cpu_s", "server CPU s (run)", True),
        ("run_client_cpu_s", "client CPU s (run)", False),
        ("run_other_cpu_s", "other CPU s (noise)", False),
    ],
    "echo": [
        ("round_trips_per_sec", "round trips/s ↑", True),
        ("mb_per_sec", "MB/s ↑", True),
        ("p50_ms", "p50 ms ↓", True),
        ("p99_ms", "p99 ms ↓", True),
        ("mismatches", "mismatches", False),
        ("run_server_cpu_s", "server CPU s (run, all sizes)", False),
        ("run_client_cpu_s", "client CPU s (run, all sizes)", False),
        ("run_other_cpu_s", "other CPU s (noise, all sizes)", False),
    ],
}

# bigroom-CLIENTSxRATE: a fan-out to CLIENTS clients from one sender at RATE
# messages a second (compare.sh's big-room runs).
BIGROOM = re.compile(r"^bigroom-(\d+)x(\d+)$")


def run_title(key):
    m = BIGROOM.match(key or "")
    if m:
        return "big room: {:,} clients, 1 sender, 64 B, {} msg/s, 10 s".format(int(m.group(1)), m.group(2))
    return RUN_TITLES.get(key, key)


def cpu_s_per_million(rec):
    """Server CPU seconds per million deliveries over the whole run (the
    connect phase included), or None if either figure is missing."""
    cpu, delivered = num(rec.get("run_server_cpu_s")), num(rec.get("delivered"))
    if cpu is None or not delivered:
        return None
    return cpu / delivered * 1e6


def bigroom_table(by, servers):
    """One row per big-room run (by client count), four columns per server."""
    keys = sorted((k for k in by if BIGROOM.match(k or "")),
                  key=lambda k: tuple(int(g) for g in BIGROOM.match(k).groups()))
    if not keys:
        return None
    headers = ["clients × msg/s"]
    for s in servers:
        headers += ["%s p50 ms ↓" % s, "%s p99 ms ↓" % s, "%s lost" % s, "%s CPU s/M deliveries ↓" % s]
    rows = []
    notes = []
    for k in keys:
        clients, rate = BIGROOM.match(k).groups()
        row = ["{:,} × {}".format(int(clients), rate)]
        for s in servers:
            rec = by[k].get(s)
            if rec is None:
                row += ["—"] * 4
                continue
            row += [cell(rec, "p50_ms", None, False), cell(rec, "p99_ms", None, False),
                    cell(rec, "lost", None, False),
                    cell(dict(rec, cpu_s_per_million=cpu_s_per_million(rec)), "cpu_s_per_million", None, False)]
            if rec.get("error"):
                notes.append("- %s, %s: %s" % (k, s, rec["error"]))
        rows.append(row)
    text = table(headers, rows)
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text


RUN_TITLES = {
    "fanout-100x10": "fanout: 100 clients, 10 senders, 64 B, max rate (window 64), 10 s",
    "fanout-1000x1": "fanout: 1000 clients, 1 sender, 64 B, 100 msg/s, 10 s",
    "connections-5000": "connections: 5000 idle clients held 5 s",
}


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def render(args):
    recs = load(args.results)
    # by[key][server] = record (last one wins)
    # An error record for the echo run carries no size: show it in every
    # echo-size table.
    echo_keys = []
    for r in recs:
        k = key_of(r)
        if k and k.startswith("echo-") and k not in echo_keys:
            echo_keys.append(k)
    expanded = []
    for r in recs:
        if r.get("run") == "echo" and "size" not in r and echo_keys:
            expanded.extend(dict(r, size=int(k.split("-", 1)[1])) for k in echo_keys)
        else:
            expanded.append(r)
    recs = expanded

    by = {}
    order = []
    servers = []
    for r in recs:
        k = key_of(r)
        if k not in by:
            by[k] = {}
            order.append(k)
        by[k][r.get("server")] = r
        if r.get("server") not in servers:
            servers.append(r.get("server"))
    servers.sort(key=lambda s: SERVERS.index(s) if s in SERVERS else len(SERVERS))

    cols = [c for c in SUMMARY if c[0] in by]
    if cols:
        print("## Summary (ratio = server / %s)\n" % BASELINE)
        rows = []
        for s in servers:
            row = [s]
            for k, field, _ in cols:
                row.append(cell(by[k].get(s), field, by[k].get(BASELINE)))
            rows.append(row)
        print(table(["server"] + [c[2] for c in cols], rows))

    big = bigroom_table(by, servers)
    if big:
        print("\n## Big room: one sender, 64 B messages, 10 s\n")
        print("CPU s/M deliveries: the server's CPU seconds over the whole run "
              "(connecting included) per million messages delivered.\n")
        print(big)

    for k in order:
        any_rec = next(iter(by[k].values()))
        kind = any_rec.get("bench") or k.split("-")[0]
        if kind not in DETAIL:
            kind = {"fanout": "fanout", "connections": "connections", "echo": "echo"}.get(k.split("-")[0])
        fields = DETAIL.get(kind, [])
        if k.startswith("echo-"):
            title = "echo: %s messages, 5 s" % size_label(k.split("-", 1)[1])
        else:
            title = run_title(k)
        print("\n### %s\n" % title)
        rows = []
        notes = []
        base = by[k].get(BASELINE)
        for s in servers:
            rec = by[k].get(s)
            row = [s]
            for field, _, ratio in fields:
                row.append(cell(rec, field, base, ratio) if rec else "—")
            rows.append(row)
            if rec and rec.get("error"):
                notes.append("- %s: %s" % (s, rec["error"]))
        print(table(["server"] + [f[1] for f in fields], rows))
        if notes:
            print("\n" + "\n".join(notes))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("annotate")
    a.add_argument("--server", required=True)
    a.add_argument("--run", required=True)
    a.add_argument("--wall", type=float)
    a.add_argument("--client-cpu", type=float)
    a.add_argument("--server-cpu", type=float)
    a.add_argument("--machine-cpu", type=float)
    a.add_argument("--error")
    a.set_defaults(func=annotate)
    r = sub.add_parser("render")
    r.add_argument("results")
    r.set_defaults(func=render)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
