#!/usr/bin/env python3
"""Summary of bench/run.sh: per-scenario medians over rounds, ratios computed within each round
(side by side) with their median, and the targets of issue #6."""
import statistics
import sys
from collections import defaultdict

slices = defaultdict(lambda: defaultdict(list))  # round -> scenario -> fields of each slice
extra = {}
for line in open(sys.argv[1]):
    parts = line.rstrip("\n").split("\t")
    if len(parts) < 3:
        continue
    rnd, sc, rest = parts[0], parts[1], parts[2]
    fields = {}
    for kv in rest.replace("RESULT ", "").split():
        k, _, v = kv.partition("=")
        try:
            fields[k] = float(v)
        except ValueError:
            pass
    if rnd == "-":
        extra.update(fields)
    else:
        slices[rnd][sc].append(fields)


def combine(parts):
    """One scenario's slices of one round (several with PASSES > 1): rates averaged over the
    equal slices, counts added up, latency percentiles the median of the slices'."""
    out = {}
    for k in set().union(*parts):
        xs = [p[k] for p in parts if k in p]
        if k in ("rps", "verify_per_s", "rss_kib"):
            out[k] = statistics.mean(xs)
        elif k in ("p50", "p99"):
            out[k] = statistics.median(xs)
        else:
            out[k] = sum(xs)
    return out


rows = {r: {sc: combine(ps) for sc, ps in scs.items()} for r, scs in slices.items()}
rounds = list(rows)
names = {
    "s0": "nginx return 200, server core",
    "s1": "public route (baseline)",
    "s2": "jwt, RS256 static key, same token",
    "s3": "jwt, JWKS URL, same token",
    "s4": "s2 compiled in, no plugin ABI",
    "s5": "new RS256 token every request",
    "s5d": "s5 compiled in, no plugin ABI",
    "s6": "workos + local memberships API",
    "s7": "s2 while reloading every 200 ms",
    "s8": "s2 + one no-op middleware plugin",
    "s9": "embedded app route, s2's auth",
    "s9p": "embedded app route, public",
    "c50": "s2 under 50 connections",
    "up": "the upstream alone (200 ok)",
    "p1": "nginx proxy_pass, no auth",
    "p2": "Portcullis route: JWT + proxy",
    "p3": "nginx auth_request + /forward-auth",
    "p4": "Portcullis route, public",
    "fa": "/forward-auth alone (as nginx asks)",
}
med = lambda xs: statistics.median(xs) if xs else float("nan")
print()
print(f"{'scenario':<40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}   (median of {len(rounds)} rounds)")
for sc, name in names.items():
    vals = [rows[r][sc] for r in rounds if sc in rows[r]]
    if not vals:
        continue
    print(f"{sc + ' ' + name:<40} {med([v['rps'] for v in vals]):>9.0f} "
          f"{med([v['p50'] for v in vals]):>8.3f} {med([v['p99'] for v in vals]):>8.3f} "
          f"{int(sum(v['errors'] for v in vals)):>7}")
for r in rounds:
    if "s7-reloads" in rows[r]:
        f = rows[r]["s7-reloads"]
        print(f"  round {r}: s7 config writes {f.get('writes', 0):.0f}, reloads applied {f.get('applied', 0):.0f}")

def ratio(a, b, field="rps"):
    """Per round: a's req/s over b's `field` (both measured in that round); and their median."""
    xs = []
    for r in rounds:
        ra, rb = rows[r].get(a), rows[r].get(b)
        if ra and rb and rb.get(field):
            xs.append(ra["rps"] / rb[field])
    return med(xs), xs

# The raw verify rate, measured right after each s5 slice.
verify = med([rows[r]["openssl"]["verify_per_s"] for r in rounds if "openssl" in rows[r]])
print()
print(f"{'target':<44} {'measured':>10} {'':>6}  per round")
checks = []
for label, a, b, goal in [
    ("s2 >= 0.90 x s1", "s2", "s1", 0.90),
    ("s3 >= 0.90 x s1", "s3", "s1", 0.90),
    ("s2 >= 0.95 x s4 (plugin ABI)", "s2", "s4", 0.95),
    ("s7 >= 0.80 x s2", "s7", "s2", 0.80),
    ("s8 >= 0.95 x s2 (one middleware)", "s8", "s2", 0.95),
    ("s9 >= 0.90 x s9p (embedded: auth vs none)", "s9", "s9p", 0.90),
    ("p2 >= 0.90 x p1 (route vs nginx proxy_pass)", "p2", "p1", 0.90),
    ("p2 >= 2.00 x p3 (route vs nginx+forward-auth)", "p2", "p3", 2.00),
    ("fa >= 0.95 x s2 (forward-auth vs own route)", "fa", "s2", 0.95),
]:
    m, xs = ratio(a, b)
    if not xs:
        continue  # not in SCENARIOS
    ok = m >= goal
    checks.append(ok)
    print(f"{label:<44} {m:>10.3f} {'met' if ok else 'MISSED':>6}  {' '.join(f'{x:.3f}' for x in xs)}")
m, xs = ratio("s5", "openssl", "verify_per_s")
ok = m >= 0.7
if xs:
    print(f"{'s5 >= 0.7 x openssl verify/s (median ' + format(verify, '.0f') + ')':<44} {m:>10.3f} {'met' if ok else 'MISSED':>6}  {' '.join(f'{x:.3f}' for x in xs)}")
# The ceilings of that ratio on this machine: a server that did nothing but answer and verify
# would spend 1/base (its cheapest answer) plus 1/verify on each request. With s0 (nginx's
# `return 200`, the fastest answer here) for any server; with s1 (Portcullis's public route) for
# this one.
for base, label in [("s0", "any server (s0 + verify)"), ("s1", "Portcullis (s1 + verify)")]:
    ceil = []
    for r in rounds:
        b, o = rows[r].get(base), rows[r].get("openssl")
        if b and o and b.get("rps") and o.get("verify_per_s"):
            ceil.append(b["rps"] / (b["rps"] + o["verify_per_s"]))
    if ceil:
        print(f"{'  ceiling, ' + label:<44} {med(ceil):>10.3f} {'':>6}  {' '.join(f'{x:.3f}' for x in ceil)}")
m, xs = ratio("s5", "s5d")
if xs:
    print(f"{'s5 / s5d (plugin ABI, nothing cached; no target)':<44} {m:>10.3f} {'':>6}  {' '.join(f'{x:.3f}' for x in xs)}")
s7err = sum(rows[r].get("s7", {}).get("errors", 0) for r in rounds)
if any("s7" in rows[r] for r in rounds):
    print(f"{'s7 zero errors':<44} {s7err:>10.0f} {'met' if s7err == 0 else 'MISSED':>6}")
c50 = [rows[r]["c50"] for r in rounds if "c50" in rows[r]]
if c50:
    p99 = med([c["p99"] for c in c50])
    print(f"{'s2 p99 at 50 connections <= 2 ms':<44} {p99:>9.3f}ms {'met' if p99 <= 2 else 'MISSED':>6}  "
          f"{' '.join(format(c['p99'], '.3f') for c in c50)} (median {med([c['rps'] for c in c50]):.0f} req/s)")
rss = extra.get("idle_rss_kib")
if rss:
    print(f"{'idle RSS, all plugins <= 30 MB':<44} {rss / 1024:>8.1f}MB {'met' if rss <= 30 * 1024 else 'MISSED':>6}")
print("(1,000 rules <= 2 x 10 rules: see `cargo bench -p portcullis-tests --bench auth -- rules`)")
