-- Argo CD health check for tanium-operator.dev/TaniumConnection
-- (argocd-cm key: resource.customizations.health.tanium-operator.dev_TaniumConnection; `kubectl tanium argocd-health`).
-- Healthy: the Gateway answers with the token (Ready). Progressing: not looked at yet, or a new generation not yet.
-- Degraded: Ready is False (its reason and message say why: the token Secret cannot be read, the token is refused,
-- the Gateway cannot be reached), or the token's rotation needs a person (GatewayToken). The objects using it are
-- held meanwhile (ConnectionNotReady), and say so themselves.
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
local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for tanium-operator"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for tanium-operator to see the latest spec"
  return hs
end

hs.message = ready.message
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Degraded"
end

local token = condition("GatewayToken")
if token ~= nil and token.status == "False" then
  hs.status = "Degraded"
  hs.message = token.message
end
return hs
