-- Refresh-token rotation under load: each connection keeps one chain going, spending the refresh
-- token it holds and continuing with the one the answer carries. Env: TOKENS (a file, one refresh
-- token per line; at least as many as connections), THREADS (wrk -t), BASIC (base64 of id:secret).
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  queue = {}
  local n = tonumber(os.getenv("THREADS"))
  local i = 0
  for line in io.lines(os.getenv("TOKENS")) do
    if line ~= "" then
      if i % n == id then table.insert(queue, line) end
      i = i + 1
    end
  end
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = "Basic " .. os.getenv("BASIC") }
end

function request()
  -- wrk builds one request per thread before connecting that it never sends; give it no token.
  if not primed then
    primed = true
    return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=unsent")
  end
  local t = table.remove(queue) or "exhausted"
  return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=" .. t)
end

function response(status, hdrs, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then table.insert(queue, t) end
end
