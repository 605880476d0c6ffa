-- A provider with `storeTokens` keeps the upstream's token response of the link's last
-- sign-in, sealed with AES-256-GCM under the ENCRYPTION_KEY (`tokens_kek_id` names the
-- key; `authserver keys reencrypt` re-seals it): base64url of nonce || ciphertext, the
-- tenant, provider and upstream subject bound as associated data. NULL: none kept.
ALTER TABLE federated_identities ADD COLUMN tokens_sealed TEXT;
ALTER TABLE federated_identities ADD COLUMN tokens_kek_id TEXT;
