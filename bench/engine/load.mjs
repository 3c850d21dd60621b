// Load generator for bench/engine: N concurrent streaming chat completions against an
// OpenAI-compatible URL; reports per-request TTFT and generation rate and the aggregate.
// usage: node load.mjs URL MODEL CONCURRENCY REQUESTS_PER_WORKER MAX_TOKENS
const [url, model, conc, perWorker, maxTokens] = process.argv.slice(2);
const prompt = 'Write a long story about a lighthouse keeper and the sea.';

async function one(i) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model, stream: true, stream_options: { include_usage: true }, temperature: 0, seed: i,
      max_tokens: Number(maxTokens), ignore_eos: true,
      messages: [{ role: 'user', content: `${prompt} (${i})` }],
    }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', ttft = null, tokens = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (ttft === null && j.choices?.[0]?.delta?.content) ttft = performance.now() - t0;
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  const total = performance.now() - t0;
  return { ttft, total, tokens, rate: tokens / ((total - ttft) / 1000) };
}

const t0 = performance.now();
const results = [];
await Promise.all(Array.from({ length: Number(conc) }, async (_, w) => {
  for (let r = 0; r < Number(perWorker); r++) results.push(await one(w * 1000 + r));
}));
const wall = (performance.now() - t0) / 1000;
const tokens = results.reduce((a, r) => a + r.tokens, 0);
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
console.log(JSON.stringify({
  requests: results.length, tokens, wall_s: wall, aggregate_tok_s: tokens / wall,
  per_stream_tok_s: med(results.map((r) => r.rate)), ttft_ms_p50: med(results.map((r) => r.ttft)),
}));
