-- E-mail: the outbox every pod sends from, the single-use links mailed to users
-- (verification, password reset), and the devices a user has signed in from (for the
-- optional new-device notice).

-- One row per message. The request path only inserts; a sender loop in every pod claims
-- due rows with a lease (`lease_until`, a conditional UPDATE), sends, and marks them
-- sent, or schedules a retry with backoff until `attempts` reaches the configured
-- maximum (then `failed_at`). The message itself (subject, text and HTML parts, which
-- carry a single-use link) is sealed under the ENCRYPTION_KEY (`kek_id`) and erased
-- once sent or given up; `expires_at` is set then, and the purge deletes the row after it.
CREATE TABLE email_outbox (
    id              TEXT NOT NULL PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- verify_email, password_reset, new_device
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    -- Lower-cased recipient, for the per-address limit.
    recipient_key   TEXT NOT NULL,
    sealed          BLOB NOT NULL,
    kek_id          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     INTEGER,
    sent_at         INTEGER,
    failed_at       INTEGER,
    last_error      TEXT,
    expires_at      INTEGER
);
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX email_outbox_recipient ON email_outbox (tenant_id, recipient_key, kind, created_at);
CREATE INDEX email_outbox_expires ON email_outbox (expires_at);

-- Single-use links, kept only as `crypto::handle_hash` of the token. `email` is the
-- address the link was sent to: a link is refused once the user's address changed.
CREATE TABLE email_tokens (
    tenant_id  TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    -- verify_email, password_reset
    purpose    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX email_tokens_user ON email_tokens (tenant_id, user_id, purpose);
CREATE INDEX email_tokens_expires ON email_tokens (expires_at);

-- Devices (a long-lived cookie, kept as its hash) a user has signed in from.
CREATE TABLE known_devices (
    tenant_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    device_hash   TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, device_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);

-- Password reset looks users up by address, in any case.
CREATE INDEX users_tenant_email_folded ON users (tenant_id, lower(email));
