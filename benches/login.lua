-- wrk script for password sign-ins (used by benches/load.sh): run with one connection
-- per thread (-tN -cN), so the Lua state of a thread is the state of one browser.
--
-- A browser GETs /login (cookie + `_csrf`), then POSTs a correct username and password.
-- A successful sign-in rotates the session cookie and the CSRF token (fixation
-- defence) and answers with the "You are signed in" page, which carries no form, so
-- the browser GETs /login again for the new token before its next POST. Every
-- sign-in is therefore one GET and one POST; the POST is the Argon2id verify plus the
-- session writes. A failed sign-in answers 200 with the form and an error, so it is
-- told apart by the page, counted, and reported in "failed" below.
--
-- Each browser signs in its own user, `$BENCH_USERNAME-<thread number>` (benches/load.sh
-- creates as many as the most connections it runs): attempts in flight count towards a
-- username's lockout budget, so one user shared by every browser would be locked out
-- by design, and that is not what this measures.

local body
local cookie, csrf = nil, nil
ok = 0 -- globals: read by done() through thread:get
failed = 0

local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  body = "username=" .. os.getenv("BENCH_USERNAME") .. "-" .. tostring(id)
    .. "&password=" .. os.getenv("BENCH_PASSWORD") .. "&_csrf="
end

function request()
  local headers = {}
  if cookie then
    headers["Cookie"] = cookie
  end
  if csrf then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return wrk.format("POST", "/login", headers, body .. csrf)
  end
  return wrk.format("GET", "/login", headers, nil)
end

function response(status, headers, page)
  for k, v in pairs(headers) do
    if k:lower() == "set-cookie" then
      cookie = v:match("^([^;]+)")
    end
  end
  local posted = csrf ~= nil
  csrf = page:match('name="_csrf" value="([^"]+)"')
  if posted then
    if status == 200 and page:find("You are signed in", 1, true) then
      ok = ok + 1
    else
      failed = failed + 1
    end
  end
end

function done(summary, latency, requests)
  local ok_total, failed_total = 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    failed_total = failed_total + t:get("failed")
  end
  io.write(string.format("sign-ins: %d succeeded, %d failed, %.1f/s\n", ok_total,
    failed_total, ok_total / (summary.duration / 1e6)))
end
