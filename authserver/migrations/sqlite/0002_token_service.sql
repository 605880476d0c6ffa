-- OAuth clients, their secrets, replay caches, the revocation denylist, DPoP nonces and
-- audit events. Every table is tenant-scoped.

CREATE TABLE clients (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    -- The registration (ClientSpec) as JSON; portable and versioned by the binary.
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, client_id)
);

-- Keyed digests (HMAC-SHA-256) of client secrets; at most a current one (no expiry) and
-- a previous one (with expiry) during a rotation overlap.
CREATE TABLE client_secrets (
    tenant_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    digest     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (tenant_id, client_id, digest),
    FOREIGN KEY (tenant_id, client_id) REFERENCES clients (tenant_id, client_id) ON DELETE CASCADE
);

-- Revoked access tokens, by jti, until they would have expired anyway.
CREATE TABLE revoked_tokens (
    tenant_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, jti)
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);

-- Single-use private_key_jwt assertions (RFC 7523 §3 jti).
CREATE TABLE assertion_jti (
    tenant_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, client_id, jti)
);
CREATE INDEX assertion_jti_expires ON assertion_jti (expires_at);

-- Single-use DPoP proofs (RFC 9449 §11.1).
CREATE TABLE dpop_jti (
    tenant_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, jti)
);
CREATE INDEX dpop_jti_expires ON dpop_jti (expires_at);

-- Server-issued DPoP nonces (RFC 9449 §8), valid until expires_at on every pod.
CREATE TABLE dpop_nonces (
    tenant_id  TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, nonce)
);
CREATE INDEX dpop_nonces_expires ON dpop_nonces (expires_at);

CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    at        INTEGER NOT NULL,
    event     TEXT NOT NULL,
    actor     TEXT,
    subject   TEXT,
    ip        TEXT,
    details   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_tenant_at ON audit_events (tenant_id, at);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TRIGGER clients_insert AFTER INSERT ON clients
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER clients_update AFTER UPDATE ON clients
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER clients_delete AFTER DELETE ON clients
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER client_secrets_insert AFTER INSERT ON client_secrets
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER client_secrets_update AFTER UPDATE ON client_secrets
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER client_secrets_delete AFTER DELETE ON client_secrets
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
