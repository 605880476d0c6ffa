-- Tenants and their signing keys. Forward-only: never edit a merged migration.

CREATE TABLE tenants (
    id           TEXT PRIMARY KEY,
    issuer       TEXT NOT NULL,
    display_name TEXT NOT NULL,
    settings     TEXT NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    CONSTRAINT tenants_issuer_key UNIQUE (issuer)
);

CREATE TABLE signing_keys (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kid           TEXT NOT NULL,
    alg           TEXT NOT NULL,
    public_jwk    TEXT NOT NULL,
    private_key   BLOB NOT NULL,
    kek_id        TEXT NOT NULL,
    source        TEXT NOT NULL DEFAULT 'generated',
    created_at    INTEGER NOT NULL,
    activates_at  INTEGER NOT NULL,
    superseded_at INTEGER,
    retires_at    INTEGER,
    PRIMARY KEY (tenant_id, kid)
);

CREATE INDEX signing_keys_tenant_alg ON signing_keys (tenant_id, alg);

-- SQLite has no LISTEN/NOTIFY: writers bump a counter that serving processes poll.
CREATE TABLE change_counter (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO change_counter (id, generation) VALUES (1, 0);

CREATE TRIGGER tenants_insert AFTER INSERT ON tenants
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER tenants_update AFTER UPDATE ON tenants
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER tenants_delete AFTER DELETE ON tenants
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER signing_keys_insert AFTER INSERT ON signing_keys
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER signing_keys_update AFTER UPDATE ON signing_keys
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER signing_keys_delete AFTER DELETE ON signing_keys
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
