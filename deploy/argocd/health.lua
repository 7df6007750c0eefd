-- Argo CD health for the mailroute.io kinds, from their conditions
-- (docs/concepts.md). Same script for AddressSpace, RecipientPolicy,
-- MailContact, SmtpConnector and RoutingTable.
--   Progressing: the operator has not yet seen this generation (a
--                RoutingTable: not every Ready relay pod serves it yet);
--   Degraded:    Stalled, not Ready, or a LoopRisk / AuthoritativenessConflict
--                (mail for it may loop or be refused: look before it flows);
--   Healthy:     Ready, with no risk (a RoutingTable: Propagated).
local hs = {status = "Progressing", message = "Waiting for the mailroute operator"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.kind == "RoutingTable" then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Propagated" then
      if c.status == "True" then
        return {status = "Healthy", message = c.message}
      end
      return {status = "Progressing", message = c.reason .. ": " .. c.message}
    end
  end
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.message = "Waiting for the mailroute operator to observe generation " .. generation
  return hs
end
local by_type = {}
for _, c in ipairs(obj.status.conditions) do
  by_type[c.type] = c
end
local function describe(c)
  if c.message == nil or c.message == "" then
    return c.reason
  end
  -- Problem messages already start with their reason.
  if string.sub(c.message, 1, #c.reason) == c.reason then
    return c.message
  end
  return c.reason .. ": " .. c.message
end
for _, t in ipairs({"Stalled", "LoopRisk", "AuthoritativenessConflict"}) do
  local c = by_type[t]
  if c ~= nil and c.status == "True" then
    return {status = "Degraded", message = t .. " " .. describe(c)}
  end
end
local ready = by_type["Ready"]
if ready == nil or ready.status == "Unknown" then
  return hs
end
if ready.status == "False" then
  return {status = "Degraded", message = describe(ready)}
end
return {status = "Healthy", message = describe(ready)}
