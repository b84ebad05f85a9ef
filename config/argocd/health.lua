-- Argo CD health check for regcred.dev/RegistryCredential.
-- Argo CD runs it with `obj` set to the object and only Lua 5.1's base and table libraries
-- (no string library: no string.format, no ("x"):sub), so it uses only `..` and tostring.
-- It reads the same conditions kstatus (Flux, `kubectl wait`) reads, in the same order:
--   deleting                                  -> Progressing
--   no status yet / generation not observed   -> Progressing
--   Stalled=True                              -> Degraded   (kstatus: Failed)
--   Reconciling=True                          -> Progressing (kstatus: InProgress)
--   Ready=True                                -> Healthy    (kstatus: Current)
--   Ready=False                               -> Degraded   (a bad source, failed namespaces)
--   Ready=Unknown or no Ready condition       -> Progressing
local hs = {}

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

local metadata = obj.metadata or {}
if metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: removing copies and ServiceAccount entries"
  return hs
end

local status = obj.status
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions
local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local ready = condition(conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Ready describes generation " .. tostring(ready.observedGeneration) .. ", not " .. tostring(generation)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end
hs.status = "Progressing"
hs.message = describe(ready)
return hs
