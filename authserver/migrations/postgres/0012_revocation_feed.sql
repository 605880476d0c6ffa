-- Revocations reach every pod's cache of verified access tokens (introspection,
-- userinfo) through the change feed: a denylisted token, a revoked grant, or a grant
-- gone with its user or purged. The payload (the table name) tells pods to drop only
-- their token caches, not their caches of tenants, clients and keys. Statement-level,
-- like the other triggers, so a bulk revocation notifies once.
CREATE TRIGGER revoked_tokens_changed AFTER INSERT ON revoked_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
CREATE TRIGGER grants_revoked AFTER UPDATE OF revoked_at OR DELETE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
