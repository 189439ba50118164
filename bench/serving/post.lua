-- wrk script: POST the body in the file named by the first script argument, as JSON, on every request,
-- and print one JSON line of results at the end (parsed by run.py).
local body_file = nil

function init(args)
  body_file = args[1]
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*all")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
