-- wrk script used for every measurement in this harness (our own code).
-- Request shape comes from environment variables so one script serves all
-- scenarios:
--   WRK_METHOD        GET (default) or POST
--   WRK_BODY          request body (e.g. an x-www-form-urlencoded string)
--   WRK_CONTENT_TYPE  defaults to application/x-www-form-urlencoded when a body is set
--   WRK_AUTHORIZATION an Authorization header value (e.g. "Bearer C...")
-- The request is static (no request() callback), so wrk pre-builds it once and
-- the Lua layer adds no per-request cost. done() prints one machine-readable
-- line starting with "WRKJSON " that benchmarks/report.py parses.

local method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")

wrk.method = method
if body ~= nil and #body > 0 then
  wrk.body = body
  wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/x-www-form-urlencoded"
end
wrk.headers["Accept"] = "application/json"
local authorization = os.getenv("WRK_AUTHORIZATION")
if authorization ~= nil and #authorization > 0 then
  wrk.headers["Authorization"] = authorization
end

done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.2f,' ..
    '"lat_mean_us":%.1f,"lat_stdev_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, secs, summary.bytes, summary.requests / secs,
    latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
