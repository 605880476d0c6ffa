"""A relying party that caches the JWKS exactly as its Cache-Control says, under load.

    rp.py --host HOST --target HOST:PORT [--target ...] --out FILE
          [--workers 8] [--interval-ms 20] [--duration S]

Each worker asks for a client_credentials access token (round robin over the targets)
and verifies it at once: signature (ES256, RS256 or EdDSA) with the key of its `kid`
from the cached JWK Set, `iss`, and `exp`. The JWK Set is fetched when the cached copy
is older than its `Cache-Control: max-age`, and only then: a token whose `kid` is not
in the cache fails (`unknown_kid`) instead of triggering a refetch. That is the
strictest common relying-party behaviour, the one publish-before-sign rotation must
survive with no failure.

FILE gets one JSON line per token: t, kid, result (ok, unknown_kid, bad_signature,
bad_claims, or why no token was issued), and one per JWKS fetch (`"jwks": [kids]`).
Stops after DURATION seconds or at SIGTERM/SIGINT; prints a summary.

Environment: CLIENT_AUTH, the Basic header of a client_credentials client.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from loadgen import TIMEOUT, classify, read_response


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def big(s: str) -> int:
    return int.from_bytes(b64d(s), "big")


def public_key(jwk: dict):
    if jwk["kty"] == "EC":
        return ec.EllipticCurvePublicNumbers(big(jwk["x"]), big(jwk["y"]), ec.SECP256R1()).public_key()
    if jwk["kty"] == "RSA":
        return rsa.RSAPublicNumbers(big(jwk["e"]), big(jwk["n"])).public_key()
    if jwk["kty"] == "OKP":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64d(jwk["x"]))
    raise ValueError(jwk["kty"])


def verify(token: str, keys: dict, issuer: str) -> tuple:
    """(kid, result)."""
    h, p, s = token.split(".")
    header = json.loads(b64d(h))
    kid = header.get("kid")
    key = keys.get(kid)
    if key is None:
        return kid, "unknown_kid"
    msg, sig = f"{h}.{p}".encode(), b64d(s)
    try:
        if header["alg"] == "ES256":
            r, s_ = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            key.verify(utils.encode_dss_signature(r, s_), msg, ec.ECDSA(hashes.SHA256()))
        elif header["alg"] == "RS256":
            key.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
        elif header["alg"] == "EdDSA":
            key.verify(sig, msg)
        else:
            return kid, "bad_alg"
    except InvalidSignature:
        return kid, "bad_signature"
    claims = json.loads(b64d(p))
    if claims.get("iss") != issuer or claims.get("exp", 0) <= time.time():
        return kid, "bad_claims"
    return kid, "ok"


class Http:
    """One keep-alive connection to one address."""

    def __init__(self, addr: str, host: str):
        self.addr, self.host = addr.rsplit(":", 1), host
        self.reader = self.writer = None

    async def send(self, raw: bytes):
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.wait_for(
                    asyncio.open_connection(self.addr[0], int(self.addr[1])), TIMEOUT)
            self.writer.write(raw)
            status, headers, body, close = await asyncio.wait_for(read_response(self.reader), TIMEOUT)
        except Exception:
            self.close()
            raise
        if close:
            self.close()
        return status, headers, body

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.writer = None


class Jwks:
    """The relying party's one JWK Set cache, shared by its workers."""

    def __init__(self, conns, host, records):
        self.conns, self.host, self.records = conns, host, records
        self.keys, self.expires, self.fetches, self.lock = {}, 0.0, 0, asyncio.Lock()

    async def get(self) -> dict:
        async with self.lock:
            if time.monotonic() >= self.expires:
                conn = self.conns[self.fetches % len(self.conns)]
                self.fetches += 1
                status, headers, body = await conn.send(
                    f"GET /jwks HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
                if status != 200:
                    raise RuntimeError(f"jwks {status}")
                m = re.search(r"max-age=(\d+)", headers.get("cache-control", ""))
                self.expires = time.monotonic() + (int(m.group(1)) if m else 0)
                self.keys = {k["kid"]: public_key(k) for k in json.loads(body)["keys"]}
                self.records.append({"t": time.time(), "jwks": sorted(self.keys)})
            return self.keys


async def worker(i, targets, host, jwks, interval, stop, records):
    auth = os.environ["CLIENT_AUTH"]
    body = "grant_type=client_credentials"
    req = (f"POST /token HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\n"
           f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
    conns = [Http(t, host) for t in targets]
    n = i
    while not stop.is_set():
        started = time.monotonic()
        conn = conns[n % len(conns)]
        n += 1
        t = time.time()
        try:
            status, _, resp = await conn.send(req)
            if status != 200:
                records.append({"t": t, "kid": None, "result": f"token_{status}"})
            else:
                kid, result = verify(json.loads(resp)["access_token"], await jwks.get(), f"http://{host}")
                records.append({"t": t, "kid": kid, "result": result})
        except Exception as e:  # noqa: BLE001 - every failure is a record
            records.append({"t": t, "kid": None, "result": f"error_{classify(e)}"})
        wait = interval - (time.monotonic() - started)
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except asyncio.TimeoutError:
                pass
    for c in conns:
        c.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--target", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=3600.0)
    args = ap.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.duration, stop.set)
    records = []
    jwks = Jwks([Http(t, args.host) for t in args.target], args.host, records)
    await asyncio.gather(*(worker(i, args.target, args.host, jwks, args.interval_ms / 1000,
                                  stop, records) for i in range(args.workers)))
    records.sort(key=lambda r: r["t"])
    with open(args.out, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    tokens = [r for r in records if "result" in r]
    failed = [r for r in tokens if r["result"] != "ok"]
    print(f"  {len(tokens)} tokens verified by the relying party, {len(failed)} failures, "
          f"{jwks.fetches} JWKS fetches")


if __name__ == "__main__":
    asyncio.run(main())
