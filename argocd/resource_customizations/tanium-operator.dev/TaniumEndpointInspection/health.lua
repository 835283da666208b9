-- Argo CD health check for tanium-operator.dev/TaniumEndpointInspection
-- (argocd-cm key: resource.customizations.health.tanium-operator.dev_TaniumEndpointInspection;
-- `kubectl tanium argocd-health`). Healthy: the endpoint was read (Ready). Degraded: it cannot be (unknown or
-- offline endpoint, connection failure), a requested process kill failed or its outcome is unknown, or the
-- operator's token trouble. Progressing: not read yet, or a kill is in flight. A kill that found no such process
-- is Healthy and says so.
local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local hs = {}
if obj.status ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for tanium-operator to see the latest spec"
  return hs
end
local ready = condition("Ready")
if ready == nil or ready.reason == "Progressing" then
  -- Not read yet, or a new generation the operator has not decided on (what kstatus reads as in progress too).
  hs.status = "Progressing"
  hs.message = (ready ~= nil and ready.message) or "Waiting for tanium-operator"
  return hs
end
hs.message = ready.message
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Degraded"
end

local kill = obj.status.kill
if kill ~= nil then
  if kill.state == "Requested" then
    hs.status = "Progressing"
    hs.message = "Ending process " .. tostring(kill.pid)
  elseif kill.state == "Failed" or kill.state == "Unknown" then
    hs.status = "Degraded"
    if kill.message ~= nil then
      hs.message = kill.message
    end
  elseif kill.state == "NotFound" and kill.message ~= nil then
    -- Nothing to end is not a fault, but it is what a person asked about.
    hs.message = kill.message
  end
end

local token = condition("GatewayToken")
if token ~= nil and token.status == "False" then
  hs.status = "Degraded"
  hs.message = token.message
end
return hs
