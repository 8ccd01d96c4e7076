-- wrk script: POST one job per request and count every answer that is not 2xx.
-- The body comes from the environment (bench/harness.py: DEMO_BODY, NOOP_BODY), and so does the key,
-- so that it never lands in a file (only jobwire reads it: bench.peers sends every system the same).

local key = os.getenv("JOBWIRE_BENCH_KEY")
if key == nil or key == "" then
  error("set JOBWIRE_BENCH_KEY to a jobwire API key")
end

local body = os.getenv("JOBWIRE_BENCH_BODY")
if body == nil or body == "" then
  error("set JOBWIRE_BENCH_BODY to the JSON body of each request")
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = body

-- every wrk thread runs its own Lua state: keep a handle on each so done() can add them up
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  statuses = {}
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  local by_status = {}
  for _, thread in ipairs(threads) do
    total = total + thread:get("non2xx")
    for status, count in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + count
    end
  end
  -- machine-readable lines for bench/harness.py (parse_wrk)
  io.write(string.format("bench-non2xx: %d\n", total))
  for status, count in pairs(by_status) do
    io.write(string.format("bench-status: %d %d\n", status, count))
  end
end
