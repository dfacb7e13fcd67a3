-- wrk script for single-use requests (authorization codes): every line of the file
-- WRK_BODIES_FILE is one form body, sent exactly once. Thread i of n takes lines
-- i, i+n, i+2n, ... and stops itself when its share is used up.
-- wrk's own duration is always -d (its main thread sleeps that long), so each thread
-- records the monotonic time of its first request and its last response (LuaJIT ffi,
-- clock_gettime) and done() reports requests / (last response - first request) as rps,
-- with active_s; -d is only an upper bound.
-- A request built after the last body is never read (the thread's loop has stopped);
-- it carries an unknown code, so it cannot consume or replay a real one.
-- done() prints the same WRKJSON line as report.lua, plus active_s.
-- With WRK_CYCLE=1 the thread starts over at its first body instead of stopping (many
-- distinct, reusable bodies, e.g. the refresh tokens of many connections).

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC, shared by every thread
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local counter = 0
local threads = {}

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
  threads[#threads + 1] = thread
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
  cycle = os.getenv("WRK_CYCLE") == "1"
  exhausted = "grant_type=authorization_code&code=bench-exhausted"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Accept"] = "application/json"
end

function request()
  if first_us == nil then first_us = now_us() end
  next_body = next_body + 1
  if next_body > #bodies and cycle then next_body = 1 end
  if next_body > #bodies then
    wrk.thread:stop()
    return wrk.format(nil, nil, nil, exhausted)
  end
  return wrk.format(nil, nil, nil, bodies[next_body])
end

function response(status, headers, body)
  last_us = now_us()
end

done = function(summary, latency, requests)
  local e = summary.errors
  local first, last = nil, nil
  for _, t in ipairs(threads) do
    local f, l = t:get("first_us"), t:get("last_us")
    if f ~= nil and (first == nil or f < first) then first = f end
    if l ~= nil and (last == nil or l > last) then last = l end
  end
  local secs = summary.duration / 1e6
  if first ~= nil and last ~= nil and last > first then secs = (last - first) / 1e6 end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"active_s":%.3f,"bytes":%d,"rps":%.2f,' ..
    '"lat_mean_us":%.1f,"lat_stdev_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration / 1e6, secs, summary.bytes, summary.requests / secs,
    latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
