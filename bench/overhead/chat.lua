-- wrk script for bench/overhead: POSTs a ~1 KB chat completion body.
-- STREAM=1 asks for an SSE stream. EXTRA_HEADERS="name: value|name: value" adds headers
-- (Portkey's routing headers). TEMPERATURE=0 makes the request cacheable (bench/cache).
-- done() prints one machine-readable line for the run script.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local extra = os.getenv("EXTRA_HEADERS") or ""
for pair in string.gmatch(extra, "[^|]+") do
  local name, value = string.match(pair, "^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end
local text = string.rep("The quick brown fox jumps over the lazy dog. ", 20)
local stream = os.getenv("STREAM") == "1"
wrk.body = '{"model":"bench","messages":[{"role":"system","content":"You are a concise assistant."},'
  .. '{"role":"user","content":"' .. text .. '"}],"temperature":' .. (os.getenv("TEMPERATURE") or "0.2") .. ',"max_tokens":64'
  .. (stream and ',"stream":true' or '') .. '}'

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status
  io.write(string.format("RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d errors=%d non2xx=%d timeouts=%d body_bytes=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    errors, summary.errors.status, summary.errors.timeout, #wrk.body))
end
