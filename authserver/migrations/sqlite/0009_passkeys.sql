-- Passkeys (WebAuthn credentials), per tenant: the relying party ID is the issuer's host,
-- and a credential is found by its id within its tenant only.
CREATE TABLE passkeys (
    tenant_id      TEXT NOT NULL,
    -- base64url (unpadded) of the credential id the authenticator chose.
    credential_id  TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    -- The user's label ("Work laptop"), 1 to 64 characters.
    name           TEXT NOT NULL,
    -- The verified credential as webauthn-rs-core serialises it (COSE public key,
    -- algorithm, flags, counter): public data, nothing secret.
    credential     TEXT NOT NULL,
    -- The signature counter last seen (0: the authenticator keeps none).
    sign_count     BIGINT NOT NULL,
    backup_eligible BOOLEAN NOT NULL,
    backup_state   BOOLEAN NOT NULL,
    -- The authenticator's model, when attestation was asked for.
    aaguid         TEXT,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    PRIMARY KEY (tenant_id, credential_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX passkeys_user ON passkeys (tenant_id, user_id);
