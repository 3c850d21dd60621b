-- wrk script for bench/functions: the same ~1 KB conversation through one surface.
-- SURFACE=openai | bedrock | anthropic. done() prints one machine-readable line.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local text = string.rep("The quick brown fox jumps over the lazy dog. ", 20)
local surface = os.getenv("SURFACE") or "openai"
if surface == "bedrock" then
  wrk.path = "/model/bench/converse"
  wrk.body = '{"system":[{"text":"You are a concise assistant."}],"messages":[{"role":"user",'
    .. '"content":[{"text":"' .. text .. '"}]}],"inferenceConfig":{"maxTokens":64,"temperature":0.2}}'
elseif surface == "anthropic" then
  wrk.path = "/v1/messages"
  wrk.headers["anthropic-version"] = "2023-06-01"
  wrk.body = '{"model":"bench","system":"You are a concise assistant.","messages":[{"role":"user",'
    .. '"content":"' .. text .. '"}],"max_tokens":64,"temperature":0.2}'
else
  wrk.path = "/v1/chat/completions"
  wrk.body = '{"model":"bench","messages":[{"role":"system","content":"You are a concise assistant."},'
    .. '{"role":"user","content":"' .. text .. '"}],"temperature":0.2,"max_tokens":64}'
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status
  io.write(string.format("RESULT requests=%d rps=%.1f p50_us=%d mean_us=%.1f errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency.mean, errors))
end
