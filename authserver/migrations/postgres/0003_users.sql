-- End users, per tenant. Forward-only: never edit a merged migration.

CREATE TABLE users (
    tenant_id           TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Random, opaque and never reused: the local subject identifier.
    user_id             TEXT NOT NULL,
    -- As entered; uniqueness is on the case-folded form.
    username            TEXT NOT NULL,
    username_normalized TEXT NOT NULL,
    email               TEXT,
    email_verified      BOOLEAN NOT NULL DEFAULT FALSE,
    -- OpenID Connect profile claims (name, given_name, picture, …) as a JSON object.
    profile             TEXT NOT NULL DEFAULT '{}',
    -- Argon2id PHC string; NULL for a user who cannot log in with a password.
    password_hash       TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    CONSTRAINT users_username_key UNIQUE (tenant_id, username_normalized)
);
CREATE INDEX users_tenant_email ON users (tenant_id, email);
