-- Argo CD health check for tanium-operator.dev/TaniumAction
-- (argocd-cm key: resource.customizations.health.tanium-operator.dev_TaniumAction; `kubectl tanium argocd-health`).
-- Healthy: completed (CompletedPartially too: the targets that never ran were offline until expiry; the message
-- says how many), or a recurring action running. Progressing: on its way. Suspended: waiting for a person (preview approval, approval
-- in Tanium, spec.suspend). Degraded: needs a person (held by a gate or bad input, failed, expired without running,
-- stopped, finished with failures, or the operator's token trouble).
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

if phase == "Completed" then
  local done = condition("Completed")
  if done ~= nil and done.reason == "CompletedWithFailures" then
    hs.status = "Degraded"
  else
    hs.status = "Healthy"
  end
elseif phase == "Running" and obj.spec ~= nil and obj.spec.schedule ~= nil
    and obj.spec.schedule.reissueSeconds ~= nil then
  -- A recurring action runs until its end time: that is its steady state, not a sync still in progress.
  hs.status = "Healthy"
elseif phase == "Pending" or phase == "Deploying" or phase == "Running" then
  hs.status = "Progressing"
elseif phase == "AwaitingPreviewApproval" or phase == "AwaitingApproval" or phase == "Suspended" then
  hs.status = "Suspended"
else
  -- Blocked, Expired, Stopped, Failed, or a phase this script does not know.
  hs.status = "Degraded"
end

local token = condition("GatewayToken")
if token ~= nil and token.status == "False" then
  hs.status = "Degraded"
  hs.message = token.message
end
return hs
