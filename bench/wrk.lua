-- wrk script of bench/run.sh. With an argument (`-- FILE`), each request carries the next token of
-- FILE (one a line, cycled in order); without, requests are whatever -H sets. At the end it prints
-- one machine-readable line: requests/s, p50 and p99 in ms, and every error count (non-2xx
-- answers included).
local tokens = {}
local i = 0

function init(args)
  if args[1] then
    for line in io.lines(args[1]) do
      if #line > 0 then tokens[#tokens + 1] = line end
    end
  end
end

function request()
  if #tokens == 0 then
    return wrk.format()
  end
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("RESULT rps=%.0f p50=%.3f p99=%.3f requests=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, errors, e.status))
end
