// Load side of bench/engine/prefix: TTFT of streaming chat requests whose ~1,000-token system
// prompt the engine has seen before (warm: the same system prompt, a new user message) against
// ones it has not (cold: a new system prompt of the same length), alternating, ROUNDS of each.
// TTFT = request sent → first chunk with content. Prints one JSON line.
// usage: node prefix.mjs URL MODEL ROUNDS [WORDS]
const [url, model, roundsArg, wordsArg] = process.argv.slice(2);
const ROUNDS = Number(roundsArg || 7), WORDS = Number(wordsArg || 670);

// Deterministic pseudo-random words, so a run is repeatable and prompts differ from the
// first token on (a cold prompt shares only the chat template's head with the warm one).
const VOCAB = ('account answer billing policy refund customer order parcel delivery support ' +
  'invoice contract warranty section clause service request ticket agent escalate priority ' +
  'shipping address payment method card balance credit notice period renewal cancel plan ' +
  'upgrade discount region language tone brief polite accurate source document reference').split(' ');
function systemPrompt(seed) {
  let x = seed * 2654435761 % 4294967296 || 1;
  const next = () => (x = (x * 1103515245 + 12345) % 2147483648);
  const words = [`Assistant profile ${seed}.`];
  for (let i = 0; i < WORDS; i++) words.push(VOCAB[next() % VOCAB.length] + (i % 12 === 11 ? '.' : ''));
  return words.join(' ');
}

async function ttft(system, user) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model, stream: true, stream_options: { include_usage: true }, temperature: 0, max_tokens: 8,
      messages: [{ role: 'system', content: system }, { role: 'user', content: user }],
    }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '', first = null, usage = null, text = '';
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
      const piece = j.choices?.[0]?.delta?.content;
      if (first === null && piece) first = performance.now() - t0;
      text += piece ?? '';
      if (j.usage) usage = j.usage;
    }
  }
  if (first === null) throw new Error('no content chunk (the model ended at once)');
  return { ms: first, text, prompt: usage.prompt_tokens, cached: usage.prompt_tokens_details?.cached_tokens ?? 0 };
}

const WARM = systemPrompt(1);
await ttft(WARM, 'Warm-up: the system prompt is seen once.');
const cold = [], warm = [];
for (let r = 0; r < ROUNDS; r++) {
  cold.push(await ttft(systemPrompt(100 + r), `Question ${r}: where is my parcel?`));
  warm.push(await ttft(WARM, `Question ${r}: where is my parcel?`));
}
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const mc = med(cold.map((x) => x.ms)), mw = med(warm.map((x) => x.ms));
console.log(JSON.stringify({
  rounds: ROUNDS, prompt_tokens: med(cold.map((x) => x.prompt)),
  cold_ms_p50: mc, warm_ms_p50: mw, ratio: mc / mw,
  cold_cached_tokens_p50: med(cold.map((x) => x.cached)), warm_cached_tokens_p50: med(warm.map((x) => x.cached)),
  cold_ms: cold.map((x) => +x.ms.toFixed(1)), warm_ms: warm.map((x) => +x.ms.toFixed(1)),
  // the answers, so the script can check that the cache changed none of them
  texts: [...cold, ...warm].map((x) => x.text),
}));
