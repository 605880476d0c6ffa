"""Plants authorization codes for benches/load.sh (refresh-token scenario).

Inserts N grant + authorization_code rows into the SQLite database of a `--dev` data
dir, as the browser side of /authorize leaves them (see authserver/tests/it/code_grant.rs):
the code is stored as the lowercase hex SHA-256 of its value, bound to the client, the
redirect URI and a PKCE S256 challenge. Prints the PKCE verifier on the first line,
then one code per line.

    python3 benches/seed_codes.py DB TENANT CLIENT_ID USER_ID REDIRECT_URI SCOPE N
"""

import base64
import hashlib
import secrets
import sqlite3
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
    con = sqlite3.connect(db, timeout=30)
    with con:
        for _ in range(int(n)):
            code = b64url(secrets.token_bytes(32))
            grant_id = secrets.token_hex(16)
            con.execute(
                "INSERT INTO grants (tenant_id, grant_id, client_id, user_id, sid, scope,"
                " auth_time, amr, acr, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, NULL, ?, ?, '[\"pwd\"]', NULL, ?, ?)",
                (tenant, grant_id, client_id, user_id, scope, now - 5, now, now + 86_400),
            )
            con.execute(
                "INSERT INTO authorization_codes (tenant_id, code_hash, grant_id, client_id,"
                " redirect_uri, nonce, code_challenge, code_challenge_method, dpop_jkt,"
                " created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, NULL, ?, 'S256', NULL, ?, ?)",
                (
                    tenant,
                    hashlib.sha256(code.encode()).hexdigest(),
                    grant_id,
                    client_id,
                    redirect_uri,
                    challenge,
                    now,
                    now + 600,
                ),
            )
            codes.append(code)
    con.close()
    print(verifier)
    for c in codes:
        print(c)


if __name__ == "__main__":
    main()
