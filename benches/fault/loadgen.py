"""Paced HTTP/1.1 load that records every request, for the fault scenarios.

    loadgen.py --out FILE --host HOST [--duration S] [--interval-ms MS]
               --target NAME,CONNECTIONS,HOST:PORT [--target ...]
               [--mix token,introspect,jwks]

Each connection sends a request, waits for its answer, then waits until INTERVAL has
passed since the previous send (a closed loop with a pace, like wrk's delay()), cycling
through the mix. A connection that fails is opened again for the next request; no
request is ever retried, so every failure a client would see is counted. The run stops
after DURATION seconds or at SIGTERM/SIGINT.

FILE gets one JSON line per request: t (Unix time at send), ms (latency), target, kind,
status (the HTTP status, 0 when there was no answer) and err (why not: refused, reset,
eof, timeout, or the exception's name). A summary per target goes to stdout.

Environment: CLIENT_AUTH (the Basic header of a client_credentials client) and, for
introspect, ACCESS_TOKEN (the token introspected; introspection reads the database).
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time

TIMEOUT = 10.0


def requests(host: str) -> dict:
    auth = os.environ.get("CLIENT_AUTH", "")
    token = os.environ.get("ACCESS_TOKEN", "")

    def post(path: str, body: str) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    return {
        "token": post("/token", "grant_type=client_credentials"),
        "introspect": post("/introspect", f"token={token}"),
        "jwks": f"GET /jwks HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
    }


async def read_response(reader: asyncio.StreamReader):
    """Status, headers (lower-case names), body and whether the server closes."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        body = await reader.read()
        headers["connection"] = "close"
    return status, headers, body, headers.get("connection", "").lower() == "close"


def classify(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(e, asyncio.IncompleteReadError):
        return "eof"
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    return type(e).__name__


async def connection(name, addr, reqs, kinds, offset, interval, stop, records):
    host, port = addr.rsplit(":", 1)
    reader = writer = None
    i = offset
    next_send = time.monotonic()
    while not stop.is_set():
        kind = kinds[i % len(kinds)]
        i += 1
        t, t0 = time.time(), time.perf_counter()
        status, err = 0, None
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port)), TIMEOUT
                )
            writer.write(reqs[kind])
            status, _, _, close = await asyncio.wait_for(read_response(reader), TIMEOUT)
            if close:
                writer.close()
                writer = None
        except Exception as e:  # noqa: BLE001 - every failure is a record
            err = classify(e)
            if writer is not None:
                writer.close()
            writer = None
        records.append((t, (time.perf_counter() - t0) * 1000, name, kind, status, err))
        next_send += interval
        delay = next_send - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
        else:
            next_send = time.monotonic()
    if writer is not None:
        writer.close()


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summary(records, targets):
    lines = []
    for name in targets:
        mine = [r for r in records if r[2] == name]
        ok = [r for r in mine if 200 <= r[4] < 300]
        lat = sorted(r[1] for r in ok)
        other = {}
        for r in mine:
            if not 200 <= r[4] < 300:
                key = r[5] if r[4] == 0 else str(r[4])
                other[key] = other.get(key, 0) + 1
        failed = ", ".join(f"{k}: {v}" for k, v in sorted(other.items())) or "none"
        lines.append(
            f"  {name:<10} {len(mine):>7} requests  {len(ok):>7} ok  "
            f"p50 {percentile(lat, 50):6.1f} ms  p99 {percentile(lat, 99):6.1f} ms  failed: {failed}"
        )
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--host", required=True, help="Host header (the issuer's authority)")
    ap.add_argument("--target", action="append", required=True)
    ap.add_argument("--mix", default="token,introspect")
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=3600.0)
    args = ap.parse_args()
    reqs = requests(args.host)
    kinds = args.mix.split(",")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.duration, stop.set)
    records = []
    tasks = []
    names = []
    for spec in args.target:
        name, conns, addr = spec.split(",")
        names.append(name)
        for c in range(int(conns)):
            tasks.append(
                connection(name, addr, reqs, kinds, c, args.interval_ms / 1000, stop, records)
            )
    await asyncio.gather(*tasks)
    records.sort()
    with open(args.out, "w") as f:
        for t, ms, name, kind, status, err in records:
            f.write(json.dumps({"t": t, "ms": round(ms, 3), "target": name, "kind": kind,
                                "status": status, "err": err}) + "\n")
    print(summary(records, names))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
