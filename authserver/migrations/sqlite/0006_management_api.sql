-- The audit trail is read newest first by position within a tenant (the Management
-- API's `GET /audit` pages and CSV export): an index that serves `WHERE tenant_id = ?
-- AND id < ? ORDER BY id DESC` without sorting the tenant's whole trail per page.
CREATE INDEX audit_events_tenant_position ON audit_events (tenant_id, id);

-- Who manages a client: the operator's object (`OidcClient <namespace>/<name>`) for
-- clients registered through the admin API, NULL for clients made with the CLI or the
-- Management API. The Management API refuses to change a managed client (the operator
-- would put it back) and names the owner instead.
ALTER TABLE clients ADD COLUMN managed_by TEXT;

-- Tokens issued per tenant, 5-minute bucket and grant type, for the Management API's
-- `GET /stats`. Each pod counts in memory and adds its counts here at most every 10 s,
-- so issuing a token costs no extra write. Rows older than two days are purged.
CREATE TABLE token_counts (
    tenant_id  TEXT NOT NULL,
    bucket     BIGINT NOT NULL,
    grant_type TEXT NOT NULL,
    issued     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, bucket, grant_type)
);
