-- wrk script: POST a JSON body with extra headers, then write a JSON summary when done.
-- env: BENCH_BODY (request body file), BENCH_HEADERS (optional file of "Name: value" lines),
--      BENCH_OUT (where the summary goes)
local function slurp(path)
  local f = assert(io.open(path, "rb")); local s = f:read("*a"); f:close(); return s
end

wrk.method = "POST"
wrk.body = slurp(os.getenv("BENCH_BODY"))
wrk.headers["Content-Type"] = "application/json"
local header_file = os.getenv("BENCH_HEADERS")
if header_file and header_file ~= "" then
  for line in io.lines(header_file) do
    local k, v = line:match("^%s*([^:]+):%s*(.-)%s*$")
    if k then wrk.headers[k] = v end
  end
end

-- No response() hook on purpose: defining one makes wrk hand every body to Lua, which is slower.
-- A non-2xx/3xx answer still counts, in errors.status.

function done(summary, latency, requests)
  local f = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  local secs = summary.duration / 1e6
  local e = summary.errors
  local p = function(q) return latency:percentile(q) / 1000.0 end
  f:write(string.format(
    '{"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.2f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_ms":{"min":%.3f,"mean":%.3f,"max":%.3f,"p50":%.3f,"p90":%.3f,"p99":%.3f,"p999":%.3f}}\n',
    summary.requests, secs, summary.bytes, summary.requests / secs,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min / 1000.0, latency.mean / 1000.0, latency.max / 1000.0,
    p(50), p(90), p(99), p(99.9)))
  f:close()
end
