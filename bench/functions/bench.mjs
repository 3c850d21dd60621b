// Drives function invocations for bench/functions/run: for each function named on the
// command line, 16 classifications sent one after another, as 16 concurrent single
// requests, and as one batch of 16 — ROUNDS times each, interleaved, median reported.
// Prints one RESULT line per (function, mode).
const [base, ...functions] = process.argv.slice(2);
const ROUNDS = Number(process.env.ROUNDS || 5);
const N = 16;
const words = 'invoice password account verify urgent meeting lunch report shipment refund'.split(' ');
const emails = Array.from({ length: N }, (_, i) => ({
  from: `sender${i}@example${i % 3}.com`,
  subject: `${words[i % 10]} ${words[(i * 3) % 10]} notice #${i}`,
  body: `Hello, please ${words[(i * 7) % 10]} the ${words[(i * 5) % 10]} before Friday. `.repeat(1 + (i % 3)),
}));

async function invoke(fn, input) {
  const r = await fetch(`${base}/v1/functions/${fn}/invoke`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input),
  });
  if (r.status !== 200) throw new Error(`${fn}: HTTP ${r.status} ${await r.text()}`);
  return r.json();
}

const modes = {
  sequential: async (fn) => { for (const e of emails) await invoke(fn, e); },
  concurrent: async (fn) => { await Promise.all(emails.map((e) => invoke(fn, e))); },
  batch: async (fn) => {
    const out = await invoke(fn, emails);
    if (out.length !== N) throw new Error('short batch');
  },
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

for (const fn of functions) {
  for (const m of Object.values(modes)) await m(fn); // warm: engine contexts, connections
  const t = { sequential: [], concurrent: [], batch: [] };
  for (let r = 0; r < ROUNDS; r++)
    for (const [name, m] of Object.entries(modes)) {
      const t0 = process.hrtime.bigint();
      await m(fn);
      t[name].push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  for (const name of Object.keys(modes)) {
    const ms = median(t[name]);
    console.log(`RESULT fn=${fn} mode=${name} ms_per_16=${ms.toFixed(1)} per_s=${(N / (ms / 1000)).toFixed(1)}`);
  }
}
