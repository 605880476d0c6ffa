-- The audit trail is read newest first by position within a tenant (the Management
-- API's `GET /audit` pages and CSV export): an index that serves `WHERE tenant_id = ?
-- AND id < ? ORDER BY id DESC` without sorting the tenant's whole trail per page.
CREATE INDEX audit_events_tenant_position ON audit_events (tenant_id, id);

-- Who manages a client: the operator's object (`OidcClient <namespace>/<name>`) for
-- clients registered through the admin API, NULL for clients made with the CLI or the
-- Management API. The Management API refuses to change a managed client (the operator
-- would put it back) and names the owner instead.
ALTER TABLE clients ADD COLUMN managed_by TEXT;
