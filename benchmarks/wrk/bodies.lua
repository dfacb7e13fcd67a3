-- wrk script for single-use requests (authorization codes): every line of the file
-- WRK_BODIES_FILE is one form body, sent exactly once. Thread i of n takes lines
-- i, i+n, i+2n, ... and stops itself when its share is used up, so the run ends when
-- every body was sent (-d is only an upper bound) and wrk's duration is the real one.
-- A request built after the last body is never read (the thread's loop has stopped);
-- it carries an unknown code, so it cannot consume or replay a real one.
-- done() prints the same WRKJSON line as report.lua.

local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
end

function init(args)
  local path = os.getenv("WRK_BODIES_FILE")
  local threads = tonumber(os.getenv("WRK_THREADS") or "0")
  if threads == 0 then threads = counter end
  bodies = {}
  local i = 0
  for line in io.lines(path) do
    if #line > 0 then
      if i % threads == thread_index then bodies[#bodies + 1] = line end
      i = i + 1
    end
  end
  next_body = 0
  exhausted = "grant_type=authorization_code&code=bench-exhausted"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Accept"] = "application/json"
end

function request()
  next_body = next_body + 1
  if next_body > #bodies then
    wrk.thread:stop()
    return wrk.format(nil, nil, nil, exhausted)
  end
  return wrk.format(nil, nil, nil, bodies[next_body])
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
