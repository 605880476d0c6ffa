-- Tenants and their signing keys. Forward-only: never edit a merged migration.

CREATE TABLE tenants (
    id           TEXT PRIMARY KEY,
    issuer       TEXT NOT NULL,
    display_name TEXT NOT NULL,
    -- JSON object; portable across PostgreSQL and SQLite.
    settings     TEXT NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    CONSTRAINT tenants_issuer_key UNIQUE (issuer)
);

CREATE TABLE signing_keys (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kid           TEXT NOT NULL,
    alg           TEXT NOT NULL,
    public_jwk    TEXT NOT NULL,
    -- AES-256-GCM sealed PKCS#8 (nonce || ciphertext || tag), AAD = tenant_id/kid.
    private_key   BYTEA NOT NULL,
    kek_id        TEXT NOT NULL,
    source        TEXT NOT NULL DEFAULT 'generated',
    created_at    BIGINT NOT NULL,
    activates_at  BIGINT NOT NULL,
    superseded_at BIGINT,
    retires_at    BIGINT,
    PRIMARY KEY (tenant_id, kid)
);

CREATE INDEX signing_keys_tenant_alg ON signing_keys (tenant_id, alg);

-- Pods cache tenants and keys; every change to a cached table notifies all pods, which
-- drop their caches. Statement-level so bulk writes notify once.
CREATE FUNCTION gatehouse_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatehouse_changes', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
CREATE TRIGGER signing_keys_changed AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
