-- The audit trail is read newest first by position within a tenant (the Management
-- API's `GET /audit` pages and CSV export): an index that serves `WHERE tenant_id = ?
-- AND id < ? ORDER BY id DESC` without sorting the tenant's whole trail per page.
CREATE INDEX audit_events_tenant_position ON audit_events (tenant_id, id);
