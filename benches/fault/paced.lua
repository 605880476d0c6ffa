-- wrk script for the fault suite: one POST per connection every BENCH_INTERVAL_MS at most
-- (wrk's delay()), so the load is steady instead of saturating the two cores, and
-- latency reflects the server rather than the queue wrk builds.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
wrk.headers["Host"] = os.getenv("BENCH_HOST")
wrk.body = os.getenv("BENCH_BODY")
local interval = tonumber(os.getenv("BENCH_INTERVAL_MS") or "10")

function delay()
  return interval
end
