-- Revocations reach the serving process's cache of verified access tokens through the
-- polled change counter when another process (the CLI, a purge) makes them: a
-- denylisted token, a revoked grant, or a grant gone with its user or purged.
CREATE TRIGGER revoked_tokens_insert AFTER INSERT ON revoked_tokens
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER grants_revoked AFTER UPDATE OF revoked_at ON grants
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
CREATE TRIGGER grants_delete AFTER DELETE ON grants
    BEGIN UPDATE change_counter SET generation = generation + 1; END;
