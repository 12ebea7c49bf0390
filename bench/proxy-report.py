#!/usr/bin/env python3
"""Prints the table of the data-plane bench (bench/proxy-http.sh) from its raw outputs.

  proxy-report.py DIR

DIR holds, per target NAME (direct, nginx, haproxy, envoy, spar):
  NAME-c32.txt   `wrk -t1 -c32 --latency` output (throughput, p50/p99 at 32 connections),
  NAME-c1.txt    `wrk -t1 -c1 --latency` output (latency at one connection),
  NAME-h2.txt    `h2load` output (HTTP/2, prior knowledge), when that target was run over h2,
and mem-NAME.txt files of `key value` lines (RSS in MB; Envoy's /memory figures in MB).
Every figure is parsed from those files; a missing or failed run prints `-` and its goal MISS.

With ROUNDS > 1 the bench writes each round's files to DIR/r1, DIR/r2, ...: every figure
printed is then the median over the rounds (errors are summed), and each round's
spar/peer ratios are listed too, so the spread between runs on a shared machine shows.
"""
import os
import re
import statistics
import sys

TARGETS = ["direct", "nginx", "haproxy", "envoy", "spar"]
UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def wrk(path):
    """req/s, p50 and p99 (microseconds), and how many responses were errors."""
    text = read(path)
    if text is None:
        return None
    out = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else None
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        out[f"p{pct}"] = float(m.group(1)) * UNITS[m.group(2)] if m else None
    bad = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        bad += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        bad += sum(int(g) for g in m.groups())
    out["errors"] = bad
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else 0
    return out


def h2load(path):
    """req/s and succeeded/total of an h2load run."""
    text = read(path)
    if text is None:
        return None
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    r = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed",
                  text)
    s = re.search(r"status codes: (\d+) 2xx", text)
    return {
        "rps": float(m.group(1)) if m else None,
        "total": int(r.group(1)) if r else 0,
        "ok": int(s.group(1)) if s else 0,
        "failed": int(r.group(3)) if r else 0,
    }


def cpu(path, requests):
    """CPU seconds (user, system) the target used during the c32 run, per request in us."""
    text = read(path)
    if text is None or not requests:
        return None
    user, system, hz = (int(x) for x in text.split())
    return {
        "secs": (user + system) / hz,
        "user_us": user / hz * 1e6 / requests,
        "sys_us": system / hz * 1e6 / requests,
    }


def mem(path):
    text = read(path)
    if text is None:
        return {}
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "us":
        return f"{v / 1000:.3f}ms" if v >= 1000 else f"{v:.0f}us"
    if unit == "x":
        return f"{v:.2f}x"
    if unit == "MB":
        return f"{v:.1f}"
    return f"{v:,.0f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def verdict(ok):
    return "-" if ok is None else ("PASS" if ok else "MISS")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def combine(runs, summed=("errors", "requests", "total", "ok", "failed")):
    """One run's figures from several: medians, except counts, which are summed."""
    runs = [r for r in runs if r]
    if not runs:
        return None
    return {k: (sum(r.get(k) or 0 for r in runs) if k in summed
                else median([r.get(k) for r in runs])) for k in runs[0]}


def round_dirs(d):
    rounds = sorted((n for n in os.listdir(d) if re.fullmatch(r"r\d+", n)),
                    key=lambda n: int(n[1:]))
    return [os.path.join(d, n) for n in rounds] or [d]


def main(d):
    rounds = round_dirs(d)
    per_round = [{t: (wrk(os.path.join(r, f"{t}-c32.txt")),
                      cpu(os.path.join(r, f"{t}-cpu.txt"),
                          (wrk(os.path.join(r, f"{t}-c32.txt")) or {}).get("requests")))
                  for t in TARGETS} for r in rounds]
    c32 = {t: combine([wrk(os.path.join(r, f"{t}-c32.txt")) for r in rounds]) for t in TARGETS}
    c1 = {t: combine([wrk(os.path.join(r, f"{t}-c1.txt")) for r in rounds]) for t in TARGETS}
    h2 = {t: combine([h2load(os.path.join(r, f"{t}-h2.txt")) for r in rounds]) for t in TARGETS}
    if len(rounds) > 1:
        print(f"\n(medians of {len(rounds)} rounds; each round runs every target once, in turn)")
    direct_p50 = (c1["direct"] or {}).get("p50")

    def added(t):
        p = (c1[t] or {}).get("p50")
        return p - direct_p50 if p is not None and direct_p50 is not None else None

    print("\n== HTTP/1.1 keep-alive, 1 KB responses (wrk -t1) ==")
    hdr = ("target", "c32 req/s", "c32 p50", "c32 p99", "c1 req/s", "c1 p50", "c1 p99",
           "added p50", "errors")
    print("%-8s %11s %10s %10s %10s %10s %10s %10s %7s" % hdr)
    for t in TARGETS:
        a, b = c32[t] or {}, c1[t] or {}
        if not a and not b:
            continue
        errs = (a.get("errors") or 0) + (b.get("errors") or 0)
        print("%-8s %11s %10s %10s %10s %10s %10s %10s %7s" % (
            t, fmt(a.get("rps")), fmt(a.get("p50"), "us"), fmt(a.get("p99"), "us"),
            fmt(b.get("rps")), fmt(b.get("p50"), "us"), fmt(b.get("p99"), "us"),
            "-" if t == "direct" else fmt(added(t), "us"), errs))

    def rps(t):
        r = c32[t]
        return r["rps"] if r and r["rps"] and r["errors"] == 0 else None

    secs = re.match(r"(\d+)s$", os.environ.get("DURATION", "10s"))
    duration = float(secs.group(1)) if secs else None
    print("\nCPU of the target during the c32 run (/proc/PID/stat; load-independent cost):")
    print("%-8s %8s %10s %12s %10s %10s" % (
        "target", "CPU s", "CPU share", "CPU us/req", "user us", "system us"))
    per_req = {}
    for t in TARGETS:
        cs = [pr[t][1] for pr in per_round if pr[t][1]]
        if not cs:
            continue
        c = {k: median([x[k] for x in cs]) for k in cs[0]}
        per_req[t] = c["user_us"] + c["sys_us"]
        share = f"{100 * c['secs'] / duration:.0f}%" if duration else "-"
        print("%-8s %8.2f %10s %12.1f %10.1f %10.1f" % (
            t, c["secs"], share, per_req[t], c["user_us"], c["sys_us"]))
    print("  (direct: the origin's worker; nginx: its worker)")

    print("\nratios, spar / peer:   req/s at 32 conns   added p50 at 1 conn   h2 req/s  CPU us/req")
    for peer in ("nginx", "haproxy", "envoy"):
        h2r = ratio((h2["spar"] or {}).get("rps"), (h2[peer] or {}).get("rps"))
        print("  spar/%-8s %22s %21s %10s %14s" % (
            peer, fmt(ratio(rps("spar"), rps(peer)), "x"),
            fmt(ratio(added("spar"), added(peer)), "x"), fmt(h2r, "x"),
            fmt(ratio(per_req.get("spar"), per_req.get(peer)), "x")))

    if len(rounds) > 1:
        print("\nper round, spar / nginx:   req/s at 32 conns   CPU us/req")
        for i, pr in enumerate(per_round, 1):
            (sw, sc), (nw, nc) = pr["spar"], pr["nginx"]
            rr = ratio((sw or {}).get("rps"), (nw or {}).get("rps"))
            cr = ratio(sc and sc["user_us"] + sc["sys_us"], nc and nc["user_us"] + nc["sys_us"])
            print("  round %-3d %28s %12s" % (i, fmt(rr, "x"), fmt(cr, "x")))

    if any(h2.values()):
        print("\n== HTTP/2 cleartext, prior knowledge (h2load -c 32 -m 10), 1 KB responses ==")
        print("%-8s %11s %12s" % ("target", "req/s", "2xx/total"))
        for t in TARGETS:
            r = h2[t]
            if r is None:
                continue
            print("%-8s %11s %12s" % (t, fmt(r["rps"]), f"{r['ok']}/{r['total']}"))

    m = {}
    for t in ("spar", "envoy"):
        files = [mem(os.path.join(r, f"mem-{t}.txt")) for r in dict.fromkeys([d] + rounds)]
        keys = dict.fromkeys(k for f in files for k in f)
        m[t] = {k: median([f.get(k) for f in files]) for k in keys}
    print("\n== Memory (MB) ==")
    print("%-58s %10s %10s" % ("figure", "spar", "envoy"))
    rows = [
        ("RSS idle, gateway after its first (trivial) config", "rss_idle"),
        ("  of which anonymous (RssAnon; the rest is mapped files)", "anon_idle"),
        ("RSS after the HTTP/1.1 and HTTP/2 load", "rss_loaded"),
        ("RSS, sidecar with config for all services", "rss_mesh"),
        ("  of which anonymous (RssAnon)", "anon_mesh"),
        ("Envoy /memory allocated, gateway idle", "allocated_idle"),
        ("Envoy /memory allocated, sidecar with all services", "allocated_mesh"),
        ("Envoy /memory heap_size, sidecar with all services", "heap_mesh"),
    ]
    for label, key in rows:
        s, e = m["spar"].get(key), m["envoy"].get(key)
        if s is None and e is None:
            continue
        print("%-58s %10s %10s" % (label, fmt(s, "MB"), fmt(e, "MB")))
    services = int(m["spar"].get("services", 0) or m["envoy"].get("services", 0))
    clusters = m["envoy"].get("clusters_mesh")
    if clusters:
        print(f"  (sidecar: {services} services; Envoy held {clusters:.0f} clusters)")

    def cap(t):
        us = per_req.get(t)
        return 1e6 / us if us else None

    print("\n== Goals (issue) ==")
    sa, na = added("spar"), added("nginx")
    sr, nr, er = rps("spar"), rps("nginx"), rps("envoy")
    goals = [
        ("spar added p50 (1 conn) <= nginx's",
         f"{fmt(sa, 'us')} vs {fmt(na, 'us')}",
         None if sa is None or na is None else sa <= na),
        ("spar req/s at 32 conns >= nginx's",
         f"{fmt(sr)} vs {fmt(nr)}", None if sr is None or nr is None else sr >= nr),
        ("  same, per CPU second (1e6 / CPU us/req)",
         f"{fmt(cap('spar'))} vs {fmt(cap('nginx'))}",
         None if cap("spar") is None or cap("nginx") is None else cap("spar") >= cap("nginx")),
        ("spar req/s at 32 conns >= 2x Envoy's",
         f"{fmt(sr)} vs 2x{fmt(er)}", None if sr is None or er is None else sr >= 2 * er),
        ("  same, per CPU second, vs 2x Envoy's",
         f"{fmt(cap('spar'))} vs 2x{fmt(cap('envoy'))}",
         None if cap("spar") is None or cap("envoy") is None
         else cap("spar") >= 2 * cap("envoy")),
        ("spar RSS idle <= 15 MB",
         fmt(m["spar"].get("rss_idle"), "MB"),
         None if "rss_idle" not in m["spar"] else m["spar"]["rss_idle"] <= 15),
        (f"spar RSS with {services} services <= 40 MB",
         fmt(m["spar"].get("rss_mesh"), "MB"),
         None if "rss_mesh" not in m["spar"] else m["spar"]["rss_mesh"] <= 40),
    ]
    for label, measured, ok in goals:
        print("%-42s %28s  %s" % (label, measured, verdict(ok)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
