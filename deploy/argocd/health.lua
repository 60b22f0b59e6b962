-- Argo CD health for shipshape.dev resources (Environment, StackSpec, ServiceRelease).
-- shipshape writes kstatus conditions (Ready / Reconciling / Stalled + observedGeneration);
-- Argo CD does not read kstatus for custom resources on its own, so this maps them:
--   status older than the spec, or Reconciling=True  -> Progressing
--   Ready=True                                      -> Healthy
--   Stalled=True (RolledBack, RolloutFailed, ...)   -> Degraded;  Stalled reason Paused -> Suspended
-- Install: see README "GitOps". Tested against every status of a real rollout (tests/release_e2e.rs).
local hs = { status = "Progressing", message = "waiting for the shipshape controller" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "generation " .. tostring(obj.metadata.generation) .. " not yet reconciled"
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.status == "True" then
    local text = (c.reason or "") .. ": " .. (c.message or "")
    if c.type == "Stalled" then
      if c.reason == "Paused" then hs.status = "Suspended" else hs.status = "Degraded" end
      hs.message = text
      return hs
    elseif c.type == "Reconciling" then
      hs.message = text
      return hs
    elseif c.type == "Ready" then
      hs.status = "Healthy"
      hs.message = c.message or ""
      return hs
    end
  end
end
return hs
