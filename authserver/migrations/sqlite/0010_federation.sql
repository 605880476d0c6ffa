-- Federated identities: an account at an upstream identity provider (a tenant's
-- `federation.providers[].id` plus the upstream's `sub`) linked to one local user.
-- The pair is unique in the tenant, so an upstream account signs in to one user only;
-- a user may have several (one per provider, or more).
CREATE TABLE federated_identities (
    tenant_id       TEXT NOT NULL,
    provider_id     TEXT NOT NULL,
    -- The upstream's `sub` (at most 255 characters, OIDC Core §2).
    subject         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    -- The upstream's e-mail address at the last sign-in (shown on the account page).
    email           TEXT,
    -- The claims the provider forwards (`claims.forward`, e.g. groups) as a JSON
    -- object, replaced at every upstream sign-in. No upstream token is kept.
    claims          TEXT NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL,
    last_sign_in_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider_id, subject),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX federated_identities_user ON federated_identities (tenant_id, user_id);
