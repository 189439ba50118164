-- wrk script: POST the body in the file named by the first script argument on every request, with the
-- content type of the second (default JSON) and, when a third is given, the Open Inference Protocol's
-- binary tensor data header (inference-header-content-length: the length of the body's JSON part);
-- print one JSON line of results at the end (parsed by run.py).
local body_file = nil

function init(args)
  body_file = args[1]
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*all")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[2] or "application/json"
  if args[3] and args[3] ~= "" then
    wrk.headers["Inference-Header-Content-Length"] = args[3]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
