-- Argo CD health check for the Gatehouse custom resources (gatehouse.dev/v1alpha1
-- IdentityTenant, OidcClient and SigningKeySet: the same rules for all three).
-- Source of truth: deploy/argocd/health.lua. scripts/check-argocd-health.sh --write
-- copies it into argocd-cm.yaml, argo-cd-values.yaml and resource_customizations/, and
-- runs it against the fixtures there. Table and rationale: docs/kubernetes.md, "Argo CD
-- health checks".
--
-- Lua 5.1 as Argo CD runs it (gopher-lua, only the base, table, string and math
-- libraries): no goto, no integer division, no os or io.

-- Ready=False reasons the operator gets past by itself, or that the rest of a sync
-- usually resolves (a tenant, a Secret or the auth pods arriving): Progressing.
local WAITING = {
  MigrationPending = true,      -- the schema migration Job has not finished
  TenantNotFound = true,        -- the tenant is not there or not registered yet
  SecretNotFound = true,        -- a referenced Secret does not exist yet
  UpstreamSecretMissing = true, -- an upstream provider's client secret Secret is not there yet
  AuthServerUnavailable = true, -- the admin API is unreachable; retried with backoff
  Deleting = true,              -- cleanup on delete failed; retried with backoff
}
-- Every other Ready=False reason needs a change by someone (MigrationFailed,
-- InvalidSpec, Conflict, SecretInvalid, NamespaceNotAllowed, ClientIdRetired, and
-- ApplyFailed: the API server rejected the credentials Secret or purge CronJob, e.g. an
-- admission webhook or a quota, and the operator waits for a change), or is a real
-- outage (UpstreamUnreachable: sign-ins through an upstream provider fail now; the
-- operator keeps checking and the tenant turns Healthy when the upstream answers), and
-- so does a reason this script does not know yet: Degraded.

local function find_condition(status, type_)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == type_ then
      return condition
    end
  end
  return nil
end

local function describe(condition)
  local text = condition.reason
  if text == nil or text == "" then
    text = "Ready=" .. tostring(condition.status)
  end
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

local function health(obj)
  local metadata = obj.metadata or {}
  local status = obj.status
  local ready = find_condition(status, "Ready")

  -- Argo CD itself reports "Pending deletion" before it runs a health script; this
  -- branch keeps the script right on its own (and in the tests).
  if metadata.deletionTimestamp ~= nil then
    local message = "being deleted: waiting for the operator's cleanup (finalizer gatehouse.dev/cleanup)"
    if ready ~= nil and ready.status == "False" and ready.reason == "Deleting" then
      message = message .. "; " .. describe(ready)
    end
    return { status = "Progressing", message = message }
  end

  if status == nil then
    return { status = "Progressing", message = "waiting for the operator: no status yet" }
  end

  local generation = metadata.generation
  local observed = status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return {
      status = "Progressing",
      message = "waiting for the operator to observe generation " .. tostring(generation)
        .. " (status is for generation " .. tostring(observed or "none") .. ")",
    }
  end

  if ready == nil then
    return { status = "Progressing", message = "waiting for the operator: no Ready condition yet" }
  end
  if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
    return {
      status = "Progressing",
      message = "waiting for the operator: the Ready condition is for generation "
        .. tostring(ready.observedGeneration) .. ", the object is at " .. tostring(generation),
    }
  end

  if ready.status == "True" then
    local message = ready.message
    if message == nil or message == "" then
      message = "Reconciled"
    end
    return { status = "Healthy", message = message }
  end
  if ready.status == "False" then
    if WAITING[ready.reason] then
      return { status = "Progressing", message = describe(ready) }
    end
    return { status = "Degraded", message = describe(ready) }
  end
  -- Ready=Unknown (the operator does not set it today).
  return { status = "Progressing", message = describe(ready) }
end

return health(obj)
