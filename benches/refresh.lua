-- wrk script for refresh-token grants (used by benches/load.sh).
--
-- Refresh tokens rotate on every use: the old one becomes invalid, and presenting it
-- again revokes the whole grant. So every request must carry a token no other request
-- has used. Each wrk thread keeps a queue of valid tokens (seeded from BENCH_TOKENS,
-- one per line, split across BENCH_THREADS threads): a request pops one, its response
-- pushes the new one. With one request in flight per connection, the queue never runs
-- dry while every response succeeds; a broken chain shows as a non-2xx and in
-- "chains broken" below, never silently.
--
-- Seed one token more than connections per thread: before the threads start, wrk calls
-- request() once on the first thread's state to check the script (the request is not
-- sent), and that call pops a token too.

local auth = os.getenv("BENCH_AUTH")
local queue = {}
broken = 0 -- globals: read by done() through thread:get
issued = 0

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(os.getenv("BENCH_THREADS") or "1")
  local i = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if line ~= "" then
      if i % n == id then
        table.insert(queue, line)
      end
      i = i + 1
    end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = auth
end

function request()
  -- An empty queue means a chain broke; the server rejects this one (counted).
  local token = table.remove(queue) or "queue-empty"
  return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if status == 200 and token then
    table.insert(queue, token)
    issued = issued + 1
  else
    broken = broken + 1
  end
end

function done(summary, latency, requests)
  local broken_total, issued_total = 0, 0
  for _, t in ipairs(threads) do
    broken_total = broken_total + t:get("broken")
    issued_total = issued_total + t:get("issued")
  end
  io.write(string.format("refresh tokens rotated: %d, chains broken: %d\n", issued_total, broken_total))
end
