-- Runs an Argo CD health check (Lua, as in resource.customizations.health.<group>_<kind>) on
-- objects, the way Argo CD runs it: the object as the global `obj`, only the base and table
-- libraries plus os.time/os.date (no string library, and string methods unavailable), the
-- returned table's status checked against Argo CD's health codes.
-- Works under Lua 5.1 (Argo CD's gopher-lua is 5.1) and 5.2 to 5.4.
--
-- Usage: lua5.4 run.lua SCRIPT WANT FILE...   (FILE "-" = stdin; WANT "" = no expectation)
-- Each FILE holds one or more JSON values, each an object or a List (`items`). Prints one
-- JSON line per object: {"kind":..,"namespace":..,"name":..,"status":..,"message":..}.
-- Exit 0 on success; 1 when WANT is set and some status differs; 2 on bad input or a
-- script error (as Argo CD would show: health Unknown with the error).
local json = require("dkjson")

local script_path, want = arg[1], arg[2]
if script_path == nil or want == nil or arg[3] == nil then
  io.stderr:write("usage: lua run.lua SCRIPT WANT FILE...\n")
  os.exit(2)
end

local function fail(message)
  io.stderr:write("argocd-health: " .. message .. "\n")
  os.exit(2)
end

local function read_all(path)
  local f, err
  if path == "-" then
    f = io.stdin
  else
    f, err = io.open(path, "rb")
    if f == nil then fail(err) end
  end
  local data = f:read("*a")
  if f ~= io.stdin then f:close() end
  return data
end

local source = read_all(script_path)

-- Argo CD's health codes; anything else becomes Unknown ("invalid health status").
local valid = { Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true, Unknown = true }

local function sandbox(object)
  local env = {
    obj = object,
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    print = print, rawequal = rawequal, rawget = rawget, rawset = rawset, select = select,
    tonumber = tonumber, tostring = tostring, type = type, unpack = unpack or table.unpack,
    xpcall = xpcall, getmetatable = getmetatable, setmetatable = setmetatable, _VERSION = "Lua 5.1",
    table = { concat = table.concat, insert = table.insert, remove = table.remove, sort = table.sort,
              getn = function(t) return #t end, maxn = table.maxn },
    os = { time = os.time, date = os.date },
  }
  env._G = env
  return env
end

local function load_in(env)
  if setfenv ~= nil then -- Lua 5.1
    local fn, err = loadstring(source, "=" .. script_path)
    if fn == nil then return nil, err end
    setfenv(fn, env)
    return fn
  end
  return load(source, "=" .. script_path, "t", env)
end

-- Runs the script on one object; returns status, message (status nil when it returned nil).
local function health(object)
  local fn, err = load_in(sandbox(object))
  if fn == nil then fail("cannot load " .. script_path .. ": " .. tostring(err)) end
  -- No string library in Argo CD: make ("x"):sub(...) fail here too.
  local string_meta = getmetatable("")
  local string_index = string_meta.__index
  string_meta.__index = nil
  local ok, result = pcall(fn)
  string_meta.__index = string_index
  if not ok then return "Unknown", "health script error: " .. tostring(result), true end
  if result == nil then return nil, "" end
  if type(result) ~= "table" then return "Unknown", "health script returned a " .. type(result), true end
  local status = result.status
  if status == nil then return "", tostring(result.message or "") end
  if not valid[status] then return "Unknown", "invalid health status: " .. tostring(status) end
  return status, result.message and tostring(result.message) or ""
end

local function objects_of(text, name)
  local out, pos = {}, 1
  while true do
    local first = text:find("%S", pos)
    if first == nil then break end
    local value, next_pos, err = json.decode(text, first)
    if err ~= nil or type(value) ~= "table" then
      fail(name .. ": not a JSON object at byte " .. first .. ": " .. tostring(err))
    end
    local kind = value.kind
    if type(value.items) == "table" and type(kind) == "string" and kind:sub(-4) == "List" then
      for _, item in ipairs(value.items) do out[#out + 1] = item end
    else
      out[#out + 1] = value
    end
    pos = next_pos
  end
  return out
end

local mismatch, errored = false, false
for i = 3, #arg do
  local path = arg[i]
  for _, object in ipairs(objects_of(read_all(path), path)) do
    local metadata = object.metadata or {}
    local status, message, is_error = health(object)
    local line = json.encode({
      kind = object.kind or "", namespace = metadata.namespace or "", name = metadata.name or "",
      status = status or json.null, message = message,
    }, { keyorder = { "kind", "namespace", "name", "status", "message" } })
    io.stdout:write(line, "\n")
    if is_error then errored = true end
    if want ~= "" and status ~= want then mismatch = true end
  end
end
io.stdout:flush()
if errored then os.exit(2) end
if mismatch then
  io.stderr:write("argocd-health: not every object is " .. want .. "\n")
  os.exit(1)
end
