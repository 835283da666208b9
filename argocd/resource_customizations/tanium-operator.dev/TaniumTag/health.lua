-- Argo CD health check for tanium-operator.dev/TaniumTag
-- (argocd-cm key: resource.customizations.health.tanium-operator.dev_TaniumTag; `kubectl tanium argocd-health`).
-- Healthy: every matching endpoint carries every tag. Progressing: tagging or removing. Suspended: spec.suspend, or
-- a round above the operator's approval threshold waiting for its approval.
-- Degraded: held by a gate or bad input, or the operator's token trouble.
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
if obj.status == nil or obj.status.phase == nil then
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

local ready = condition("Ready")
if ready ~= nil and ready.reason == "Progressing" then
  -- A new generation the operator has not decided on yet (what kstatus reads as in progress too).
  hs.status = "Progressing"
  hs.message = ready.message
  return hs
end
local phase = obj.status.phase
hs.message = phase
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
end

if phase == "InSync" then
  hs.status = "Healthy"
elseif phase == "Pending" or phase == "Tagging" or phase == "Removing" then
  hs.status = "Progressing"
elseif phase == "Suspended" or phase == "AwaitingPreviewApproval" then
  -- A person's turn: lift suspend, or approve the round (status.roundDigest).
  hs.status = "Suspended"
else
  hs.status = "Degraded"
end

local token = condition("GatewayToken")
if token ~= nil and token.status == "False" then
  hs.status = "Degraded"
  hs.message = token.message
end
return hs
