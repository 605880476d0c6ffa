-- Retired client ids (tombstones). Deleting a client revokes everything issued to it and
-- retires its id, so that a client registered later under the same id (by a CLI user, or
-- by another namespace through the operator) cannot inherit its users' consents or its
-- outstanding tokens. An id is reusable only after `clients purge-retired`, which is
-- refused before `reusable_at` (the deletion plus the longest token lifetime).
CREATE TABLE retired_clients (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL,
    retired_at  BIGINT NOT NULL,
    reusable_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, client_id)
);
