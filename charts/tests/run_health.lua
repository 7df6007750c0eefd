-- Runs an Argo CD health script (arg[1]) the way Argo CD does (the object
-- as the global `obj`, the script's return value as the health) over the
-- cases read as JSON from stdin; prints each mismatch, exits 1 on any.
local cjson = require("cjson")
local script = assert(loadfile(arg[1]))
local cases = cjson.decode(io.read("*a"))
local failed = 0
for _, case in ipairs(cases) do
  obj = case.obj
  local ok, hs = pcall(script)
  if not ok then
    print(case.name .. ": the script failed: " .. tostring(hs))
    failed = failed + 1
  elseif hs.status ~= case.status or string.find(hs.message or "", case.message, 1, true) == nil then
    print(string.format("%s: got %s %q, want %s containing %q",
      case.name, tostring(hs.status), tostring(hs.message), case.status, case.message))
    failed = failed + 1
  end
end
print(string.format("%d cases, %d failed", #cases, failed))
os.exit(failed == 0 and 0 or 1)
