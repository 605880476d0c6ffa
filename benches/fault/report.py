"""Figures of the fault scenarios, from the records loadgen.py and rp.py wrote.

    report.py outage RECORDS PROXY_LOG LABEL...   one block per cut/restore of tcpproxy.py
    report.py failures RECORDS EVENT_NAME EVENT_T [FROM_T TO_T]
    report.py rotation RECORDS ROTATED_T ACTIVATES_T NOW_ROTATED_T MAX_AGE
"""

import json
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pct(values, p):
    values = sorted(values)
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def ok(r):
    return 200 <= r["status"] < 300


def done(r):
    return r["t"] + r["ms"] / 1000


def what(r):
    return str(r["status"]) if r["status"] else r["err"]


def counts(rs):
    c = {}
    for r in rs:
        c[what(r)] = c.get(what(r), 0) + 1
    return ", ".join(f"{v} × {k}" for k, v in sorted(c.items())) or "none"


KIND = {"token": "client_credentials", "introspect": "introspection", "jwks": "JWKS"}


def outage(records_path, proxy_log, labels):
    records = load(records_path)
    events = []
    with open(proxy_log) as f:
        for line in f:
            t, what_ = line.split()[:2]
            events.append((float(t), what_))
    cuts = [t for t, w in events if w == "cut"]
    restores = [t for t, w in events if w == "restored"]
    end = records[-1]["t"] if records else 0
    for i, (cut, back) in enumerate(zip(cuts, restores)):
        label = labels[i] if i < len(labels) else f"cut {i + 1}"
        until = cuts[i + 1] if i + 1 < len(cuts) else end + 1
        # A request belongs to the cut before its answer: one sent just before a cut
        # and refused after it counts for that cut.
        window = [r for r in records if cut <= done(r) < until]
        during = [r for r in window if cut <= r["t"] < back]
        failed = [r for r in window if not ok(r)]
        slow = [r for r in failed if r["status"] != 503]
        lat503 = [r["ms"] for r in failed if r["status"] == 503]
        print(f"{label}: PostgreSQL unreachable for {back - cut:.1f} s")
        print(f"  {len(window)} requests answered from the cut to the next event: {len(window) - len(failed)} ok, "
              f"{len(lat503)} × 503, {len(slow)} other failures{' (' + counts(slow) + ')' if slow else ''}")
        lat_ok = [r["ms"] for r in window if ok(r)]
        if lat_ok:
            print(f"  answered: p99 {pct(lat_ok, 99):.1f} ms, slowest {max(lat_ok):.1f} ms "
                  "(requests waiting for a connection while PostgreSQL was away)")
        if lat503:
            print(f"  503 latency: p50 {pct(lat503, 50):.1f} ms, p99 {pct(lat503, 99):.1f} ms, "
                  f"max {max(lat503):.1f} ms")
        for kind in ("token", "introspect", "jwks"):
            mine = [r for r in during if r["kind"] == kind]
            if mine:
                print(f"  while unreachable, {KIND[kind]}: {sum(map(ok, mine))}/{len(mine)} ok")
        after = [r for r in failed if r["t"] >= back]
        if failed:
            print(f"  first failure {failed[0]['t'] - cut:+.2f} s after the cut; "
                  + (f"last failure {after[-1]['t'] - back:+.2f} s after PostgreSQL was back"
                     if after else "no failure after PostgreSQL was back"))
        first_ok = next((r for r in window if r["t"] >= back and ok(r) and r["kind"] == "introspect"), None)
        if first_ok:
            print(f"  first introspection answered 200 {first_ok['t'] - back:+.2f} s after PostgreSQL was back")
        recovered = (after[-1]["t"] + after[-1]["ms"] / 1000 - back) if after else 0.0
        print(f"  time to recover: {max(recovered, 0.0):.2f} s")


def failures(records_path, name, t_event, t_from=None, t_to=None):
    records = load(records_path)
    if t_from is not None:
        records = [r for r in records if t_from <= r["t"] < t_to]
    targets = sorted({r["target"] for r in records})
    for target in targets:
        mine = [r for r in records if r["target"] == target]
        bad = [r for r in mine if not ok(r)]
        lat = [r["ms"] for r in mine if ok(r)]
        line = (f"  {target:<9} {len(mine):>6} requests, {len(bad)} failed"
                f"{' (' + counts(bad) + ')' if bad else ''}; p99 {pct(lat, 99):.1f} ms")
        if bad:
            line += (f"; failures from {bad[0]['t'] - t_event:+.2f} s to "
                     f"{bad[-1]['t'] - t_event:+.2f} s after {name}")
        print(line)


def rotation(records_path, rotated, activates, now_rotated, max_age):
    records = load(records_path)
    tokens = [r for r in records if "result" in r]
    fetches = [r for r in records if "jwks" in r]
    phases = [("routine rotation (keys rotate)", rotated, now_rotated),
              ("emergency rotation (keys rotate --now)", now_rotated, float("inf"))]
    for label, start, end in phases:
        mine = [r for r in tokens if start <= r["t"] < end]
        bad = [r for r in mine if r["result"] != "ok"]
        kids = []
        for r in mine:
            if r["kid"] and r["result"] == "ok" and r["kid"] not in [k for k, _, _ in kids]:
                kids.append((r["kid"], r["t"], r["t"]))
        last = {}
        for r in mine:
            if r["kid"] and r["result"] == "ok":
                last[r["kid"]] = r["t"]
        print(f"{label}: {len(mine)} tokens verified, {len(bad)} failures"
              + (f" ({', '.join(sorted({r['result'] for r in bad}))})" if bad else ""))
        if bad:
            print(f"  failures from {bad[0]['t'] - start:+.1f} s to {bad[-1]['t'] - start:+.1f} s "
                  f"after the rotation (JWKS max-age {max_age} s)")
        for kid, first, _ in kids:
            print(f"  signed by {kid[:12]}…: {first - start:+.1f} s to {last[kid] - start:+.1f} s")
        if label.startswith("routine"):
            print(f"  promotion {activates - rotated:.0f} s after the rotation; "
                  f"{sum(1 for f in fetches if start <= f['t'] < end)} JWKS fetches meanwhile")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "outage":
        outage(args[0], args[1], args[2:])
    elif cmd == "failures":
        rest = [float(a) for a in args[2:]]
        failures(args[0], args[1], *rest)
    elif cmd == "rotation":
        rotation(args[0], float(args[1]), float(args[2]), float(args[3]), args[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
