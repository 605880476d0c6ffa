-- End-user OpenID Connect: browser sessions, authorization requests and codes, grants
-- with their refresh tokens, consent, TOTP, login throttling and per-tenant secrets.
-- Forward-only: never edit a merged migration.
--
-- Every random handle that reaches a browser or client (session cookie, request handle,
-- code, refresh token) is stored as its SHA-256 (hex), never as issued: a database
-- reader cannot replay them.

-- MFA demanded for this user even when the tenant policy does not require it.
ALTER TABLE users ADD COLUMN mfa_required BOOLEAN NOT NULL DEFAULT FALSE;

-- A browser (one cookie). Holds the CSRF token and the state of an unfinished sign-in;
-- `data` is JSON, or an AES-256-GCM envelope when session encryption is on.
CREATE TABLE browser_sessions (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id_hash      TEXT NOT NULL,
    data         TEXT NOT NULL DEFAULT '{}',
    ip           TEXT,
    user_agent   TEXT,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    -- Idle expiry, moved forward on use; never beyond created_at + absolute timeout.
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id_hash)
);
CREATE INDEX browser_sessions_expiry ON browser_sessions (expires_at);

-- One signed-in account in a browser: the OpenID Connect session (`sid`). A browser
-- holds up to a few of them (account chooser).
CREATE TABLE sessions (
    tenant_id       TEXT NOT NULL,
    sid             TEXT NOT NULL,
    browser_id_hash TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    auth_time       BIGINT NOT NULL,
    -- JSON array of RFC 8176 method references, e.g. ["pwd","otp","mfa"].
    amr             TEXT NOT NULL DEFAULT '[]',
    acr             TEXT,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sid),
    FOREIGN KEY (tenant_id, browser_id_hash)
        REFERENCES browser_sessions (tenant_id, id_hash) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX sessions_browser ON sessions (tenant_id, browser_id_hash);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id, created_at);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- An authorization request between /authorize (or /par) and the code: validated
-- parameters as JSON. A pushed request (RFC 9126) is its `request_uri`; an interactive
-- one is bound to the browser that carries it through login and consent.
CREATE TABLE authorization_requests (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id_hash         TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    params          TEXT NOT NULL,
    pushed          BOOLEAN NOT NULL DEFAULT FALSE,
    browser_id_hash TEXT,
    -- The account that signed in (or was chosen) for this request.
    login_sid       TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    consumed_at     BIGINT,
    PRIMARY KEY (tenant_id, id_hash)
);
CREATE INDEX authorization_requests_expiry ON authorization_requests (expires_at);

-- Everything issued under one authorization: the code, the access tokens and the
-- refresh-token family. Revoking the grant revokes all of it.
CREATE TABLE grants (
    tenant_id   TEXT NOT NULL,
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    sid         TEXT,
    scope       TEXT NOT NULL,
    auth_time   BIGINT NOT NULL,
    amr         TEXT NOT NULL DEFAULT '[]',
    acr         TEXT,
    created_at  BIGINT NOT NULL,
    -- Absolute end of the refresh-token family.
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    PRIMARY KEY (tenant_id, grant_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX grants_user ON grants (tenant_id, user_id, client_id);
CREATE INDEX grants_expiry ON grants (expires_at);

-- Authorization codes: single use, bound to client, redirect_uri and PKCE challenge.
CREATE TABLE authorization_codes (
    tenant_id             TEXT NOT NULL,
    code_hash             TEXT NOT NULL,
    grant_id              TEXT NOT NULL,
    client_id             TEXT NOT NULL,
    redirect_uri          TEXT NOT NULL,
    nonce                 TEXT,
    code_challenge        TEXT,
    code_challenge_method TEXT,
    -- RFC 9449 §10: a `dpop_jkt` sent to /authorize binds the code to that key.
    dpop_jkt              TEXT,
    created_at            BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL,
    used_at               BIGINT,
    PRIMARY KEY (tenant_id, code_hash),
    FOREIGN KEY (tenant_id, grant_id) REFERENCES grants (tenant_id, grant_id) ON DELETE CASCADE
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

-- Refresh tokens: one row per issued token; rotation marks the old one `rotated_at`.
-- Presenting a rotated token again is reuse: the whole grant is revoked.
CREATE TABLE refresh_tokens (
    tenant_id   TEXT NOT NULL,
    token_hash  TEXT NOT NULL,
    grant_id    TEXT NOT NULL,
    dpop_jkt    TEXT,
    created_at  BIGINT NOT NULL,
    -- Sliding expiry of this token (never beyond the grant's expires_at).
    expires_at  BIGINT NOT NULL,
    rotated_at  BIGINT,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, grant_id) REFERENCES grants (tenant_id, grant_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (tenant_id, grant_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- Access tokens issued under a grant, so revoking the grant can deny-list them.
CREATE TABLE grant_access_tokens (
    tenant_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    grant_id   TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, jti),
    FOREIGN KEY (tenant_id, grant_id) REFERENCES grants (tenant_id, grant_id) ON DELETE CASCADE
);
CREATE INDEX grant_access_tokens_grant ON grant_access_tokens (tenant_id, grant_id);

-- Consent: the scopes a user granted a client (space-separated, sorted).
CREATE TABLE consents (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, client_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);

-- TOTP (RFC 6238) secrets, sealed under ENCRYPTION_KEY. Unconfirmed until the user
-- has entered one valid code; `last_step` stops a code being used twice.
CREATE TABLE user_totp (
    tenant_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    kek_id        TEXT NOT NULL,
    confirmed_at  BIGINT,
    last_step     BIGINT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);

-- One-time recovery codes, stored as keyed digests.
CREATE TABLE recovery_codes (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    code_hash  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (tenant_id, user_id, code_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);

-- Failed sign-ins per key ("user:<normalized username>" or "ip:<address>"): shared by
-- every pod, so a lockout holds whichever pod the next attempt reaches.
CREATE TABLE login_throttles (
    tenant_id         TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    throttle_key      TEXT NOT NULL,
    failures          INTEGER NOT NULL,
    window_started_at BIGINT NOT NULL,
    locked_until      BIGINT,
    expires_at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, throttle_key)
);
CREATE INDEX login_throttles_expiry ON login_throttles (expires_at);

-- Per-tenant secrets generated once and never changed (e.g. the pairwise-subject
-- salt), sealed under ENCRYPTION_KEY.
CREATE TABLE tenant_secrets (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    kek_id     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
