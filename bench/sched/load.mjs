// Load for bench/sched: CONC concurrent streaming clients against an engine worker's URL,
// REQS requests each (temperature 0, ignore_eos, MAX_TOKENS); optionally one client that
// sends a LONG-token prompt once the others stream. Prints one JSON line: TTFT p50/p90 of
// the short requests, the long prompt's TTFT, the longest gap between two chunks of any
// short stream (how long a step froze it), aggregate tokens/s.
// usage: node load.mjs URL CONC REQS MAX_TOKENS [LONG_WORDS]
const [url, conc, reqs, maxTokens, longWords = '0'] = process.argv.slice(2);
const prompt = 'Write a long story about a lighthouse keeper and the sea.';

async function one(content, maxTok) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'm', stream: true, stream_options: { include_usage: true }, temperature: 0,
      max_tokens: maxTok, ignore_eos: true, messages: [{ role: 'user', content }],
    }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', ttft = null, tokens = 0, last = null, gap = 0;
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
      const now = performance.now();
      if (j.choices?.[0]?.delta?.content) {
        if (ttft === null) ttft = now - t0;
        else gap = Math.max(gap, now - last);
        last = now;
      }
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  return { ttft, tokens, gap };
}

const q = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))]; };
const t0 = performance.now();
const results = [];
let long = null;
const longPrompt = Array.from({ length: Number(longWords) }, (_, i) => `word${i}`).join(' ');
await Promise.all([
  ...Array.from({ length: Number(conc) }, async (_, w) => {
    for (let r = 0; r < Number(reqs); r++) results.push(await one(`${prompt} (${w * 1000 + r})`, Number(maxTokens)));
  }),
  (async () => {
    if (!Number(longWords)) return;
    await new Promise((r) => setTimeout(r, 3000)); // the short streams are running by then
    long = await one(longPrompt, 8);
  })(),
]);
const wall = (performance.now() - t0) / 1000;
const tokens = results.reduce((a, r) => a + r.tokens, 0) + (long ? long.tokens : 0);
const r1 = (x) => Math.round(x * 10) / 10;
console.log(JSON.stringify({
  requests: results.length, tokens, wall_s: r1(wall), aggregate_tok_s: r1(tokens / wall),
  ttft_ms_p50: r1(q(results.map((r) => r.ttft), 0.5)), ttft_ms_p90: r1(q(results.map((r) => r.ttft), 0.9)),
  max_gap_ms: r1(Math.max(...results.map((r) => r.gap))), long_ttft_ms: long ? r1(long.ttft) : null,
}));
