"""Plants authorization codes for benches/load.sh (refresh-token scenario).

Inserts N grant + authorization_code rows, as the browser side of /authorize leaves
them (see authserver/tests/it/code_grant.rs): the code is stored as the lowercase hex
SHA-256 of its value, bound to the client, the redirect URI and a PKCE S256 challenge.
DB is the SQLite file of a `--dev` data dir, or a postgres:// URL (written with psql).
Prints the PKCE verifier on the first line, then one code per line.

    python3 benches/seed_codes.py DB TENANT CLIENT_ID USER_ID REDIRECT_URI SCOPE N
"""

import base64
import hashlib
import secrets
import sqlite3
import subprocess
import sys
import time


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main() -> None:
    db, tenant, client_id, user_id, redirect_uri, scope, n = sys.argv[1:8]
    verifier = b64url(secrets.token_bytes(32))
    challenge = b64url(hashlib.sha256(verifier.encode()).digest())
    now = int(time.time())
    codes = []
    rows = []
    for _ in range(int(n)):
        code = b64url(secrets.token_bytes(32))
        grant_id = secrets.token_hex(16)
        rows.append((code, grant_id))
        codes.append(code)
    grants = [
        (tenant, g, client_id, user_id, scope, now - 5, now, now + 86_400) for _, g in rows
    ]
    auth_codes = [
        (tenant, hashlib.sha256(c.encode()).hexdigest(), g, client_id, redirect_uri, challenge,
         now, now + 600)
        for c, g in rows
    ]
    grant_sql = ("INSERT INTO grants (tenant_id, grant_id, client_id, user_id, sid, scope,"
                 " auth_time, amr, acr, created_at, expires_at)"
                 " VALUES (%s, %s, %s, %s, NULL, %s, %s, '[\"pwd\"]', NULL, %s, %s)")
    code_sql = ("INSERT INTO authorization_codes (tenant_id, code_hash, grant_id, client_id,"
                " redirect_uri, nonce, code_challenge, code_challenge_method, dpop_jkt,"
                " created_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, NULL, %s, 'S256', NULL, %s, %s)")
    if db.startswith(("postgres://", "postgresql://")):
        def lit(v):
            return str(v) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'"
        script = ["BEGIN;"]
        script += [grant_sql % tuple(lit(v) for v in r) + ";" for r in grants]
        script += [code_sql % tuple(lit(v) for v in r) + ";" for r in auth_codes]
        script.append("COMMIT;")
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", db], input="\n".join(script),
                       text=True, check=True, stdout=subprocess.DEVNULL)
    else:
        con = sqlite3.connect(db, timeout=30)
        with con:
            con.executemany(grant_sql.replace("%s", "?"), grants)
            con.executemany(code_sql.replace("%s", "?"), auth_codes)
        con.close()
    print(verifier)
    for c in codes:
        print(c)


if __name__ == "__main__":
    main()
