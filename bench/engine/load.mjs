// Load side of bench/engine/run: alternating rounds of streaming chat completions against two
// OpenAI-compatible servers that are up at the same time (stratus and llama-server), one model.
//
// A cell is server × concurrency × sampling. In every round each cell runs max(REQS, conc)
// requests from `conc` concurrent clients; the cells of one concurrency and sampling run back
// to back, one server then the other, and the server that goes first alternates per round.
// Each figure is computed per round and reported as the median over rounds (min–max).
//
// Per request: TTFT = request sent → first chunk with content; tokens = usage.completion_tokens
// (checked against the number of content deltas); decode rate = (n − 1) / (t_last − t_first),
// the n − 1 intervals after the first token; ITL = the gaps between content deltas. Per cell:
// aggregate tok/s = all completion tokens / the cell's wall time (TTFT included); "other CPU"
// = CPU time of every process except the two servers (with their children) and this client
// during the cell, from /proc, as % of one core — a noisy cell shows there.
//
// Requests go through node:http with a fresh connection each (agent: false): llama-server
// answers streams with `Connection: close`, and fetch's pool could reuse such a socket. A
// request that fails (status, socket, timeout, no content, no usage) is counted, never thrown.
//
// usage: node load.mjs --model NAME --gguf FILE --server NAME=URL@PID --server NAME=URL@PID
//          [--conc 1,4,8,16] [--rounds 5] [--rounds-for 4:2,16:2] [--reqs 8]
//          [--max-tokens 128] [--seed 42] [--json FILE]
// Prints the model's markdown section on stdout and one progress line per cell on stderr.
import http from 'node:http';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readGguf, describeGguf } from './gguf.mjs';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' }, gguf: { type: 'string' }, server: { type: 'string', multiple: true },
    conc: { type: 'string', default: '1,4,8,16' }, rounds: { type: 'string', default: '5' },
    'rounds-for': { type: 'string', default: '' }, reqs: { type: 'string', default: '8' },
    'max-tokens': { type: 'string', default: '128' }, seed: { type: 'string', default: '42' },
    json: { type: 'string' }, 'clk-tck': { type: 'string', default: '100' },
  },
});
const CONC = a.conc.split(',').map(Number);
const ROUNDS = Number(a.rounds), REQS = Number(a.reqs), MAX_TOKENS = Number(a['max-tokens']);
const SEED = Number(a.seed), CLK_TCK = Number(a['clk-tck']);
const roundsFor = Object.fromEntries(CONC.map((c) => [c, ROUNDS]));
for (const p of a['rounds-for'].split(',').filter(Boolean)) {
  const [c, r] = p.split(':').map(Number);
  if (c in roundsFor) roundsFor[c] = r;
}
const SERVERS = a.server.map((s) => {
  const m = /^([^=]+)=(http:\/\/[^@]+)@(\d+)$/.exec(s);
  if (!m) throw new Error(`--server NAME=URL@PID, got ${s}`);
  return { name: m[1], url: new URL(m[2]), pid: Number(m[3]) };
});
if (SERVERS.length !== 2) throw new Error('two --server options, please');
// Same sampling on both servers. Greedy sends temperature 0 alone: the answer is the argmax
// whatever else is set, and each server takes its own greedy path (llama-server keeps its
// default top_k 40 ahead of it; top_k 0 would make it sort the whole 32k vocabulary per token,
// ~4 ms a slot on the tiny model). The sampled row sets the whole chain on both, in the order
// both apply it: top_k 40 (llama-server's default, which stratus applies only when sent), top_p,
// min_p 0 (llama-server's default is 0.05), temperature, then a draw with a fixed seed.
const SAMPLING = [
  { name: 'greedy', body: { temperature: 0 } },
  { name: 'T0.8 p0.95', body: { temperature: 0.8, top_p: 0.95, top_k: 40, min_p: 0, seed: SEED } },
];
const PROMPT = 'write a long story about a lighthouse keeper and the sea.';

// One streaming request; resolves with its record, never rejects.
function one(server, sampling, tag) {
  const body = JSON.stringify({
    model: 'm', stream: true, stream_options: { include_usage: true }, max_tokens: MAX_TOKENS,
    ignore_eos: true, ...sampling.body,
    // the tag leads, so no server can reuse more than the chat template's head of a prompt
    messages: [{ role: 'user', content: `Story ${tag}: ${PROMPT}` }],
  });
  return new Promise((resolve) => {
    const t0 = performance.now();
    const times = [];
    let usage = null, buf = '', done = false, sawDone = false;
    const finish = (error) => {
      if (done) return;
      done = true;
      const r = { ok: false, error, ttft: null, tokens: usage?.completion_tokens ?? null,
        prompt: usage?.prompt_tokens ?? null, deltas: times.length };
      if (!error && times.length === 0) r.error = 'no content';
      else if (!error && !usage) r.error = 'no usage';
      else if (!error) {
        r.ok = true;
        r.ttft = times[0] - t0;
        r.gaps = times.slice(1).map((t, i) => t - times[i]);
        const span = times[times.length - 1] - times[0];
        r.rate = r.tokens > 1 && span > 0 ? (r.tokens - 1) / (span / 1000) : null;
        r.sawDone = sawDone;
      }
      resolve(r);
    };
    const req = http.request({
      hostname: server.url.hostname, port: server.url.port, path: '/v1/chat/completions',
      method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.setEncoding('utf8');
      if (res.statusCode !== 200) {
        let text = '';
        res.on('data', (d) => { text += d; });
        res.on('end', () => finish(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        res.on('error', (e) => finish(`HTTP ${res.statusCode}: ${e.message}`));
        return;
      }
      res.on('data', (chunk) => {
        const now = performance.now();
        buf += chunk;
        let k;
        while ((k = buf.search(/\r?\n\r?\n/)) >= 0) {
          const ev = buf.slice(0, k);
          buf = buf.slice(k).replace(/^\r?\n\r?\n/, '');
          for (const line of ev.split(/\r?\n/)) {
            if (line.startsWith('error:')) { finish(`stream error: ${line.slice(0, 200)}`); req.destroy(); return; }
            if (!line.startsWith('data:')) continue;
            const data = line.slice(5).trim();
            if (data === '[DONE]') { sawDone = true; continue; }
            let j;
            try { j = JSON.parse(data); } catch { finish(`bad JSON: ${data.slice(0, 100)}`); req.destroy(); return; }
            if (j.error) { finish(`stream error: ${JSON.stringify(j.error).slice(0, 200)}`); req.destroy(); return; }
            if (j.choices?.[0]?.delta?.content) times.push(now);
            if (j.usage) usage = j.usage;
          }
        }
      });
      res.on('end', () => finish(null));
      res.on('error', (e) => finish(`response: ${e.message}`));
      res.on('close', () => finish(res.complete ? null : 'connection closed mid-stream'));
    });
    req.setTimeout(300000, () => req.destroy(new Error('timeout (300 s)')));
    req.on('error', (e) => finish(`request: ${e.message}`));
    req.end(body);
  });
}

// CPU accounting from /proc: jiffies busy on the whole machine, and those of our processes.
function procTimes(pid) { // [ppid, utime + stime] of one process (all its threads)
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return [Number(f[1]), Number(f[11]) + Number(f[12])];
  } catch { return null; } // exited meanwhile
}
function cpuSnapshot() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]; // user nice system irq softirq steal
  const procs = new Map();
  for (const d of readdirSync('/proc')) if (/^\d+$/.test(d)) { const t = procTimes(d); if (t) procs.set(Number(d), t); }
  const ours = new Set([process.pid, ...SERVERS.map((s) => s.pid)]);
  for (let grew = true; grew;) { // the servers' descendants (stratus's engine worker)
    grew = false;
    for (const [pid, [ppid]] of procs) if (!ours.has(pid) && ours.has(ppid)) { ours.add(pid); grew = true; }
  }
  let own = 0;
  for (const pid of ours) own += procs.get(pid)?.[1] ?? 0;
  return { busy, own };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  const s = xs.filter((x) => x != null).sort((x, y) => x - y);
  return s.length ? s[Math.max(0, Math.ceil(p * s.length) - 1)] : null;
};
const median = (xs) => pct(xs, 0.5);

async function runCell(server, conc, sampling, round) {
  const n = Math.max(REQS, conc);
  const recs = [];
  let next = 0;
  const c0 = cpuSnapshot();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < n) { const i = next++; recs.push(await one(server, sampling, `${round}-${SAMPLING.indexOf(sampling)}-${conc}-${i}`)); }
  }));
  const wall = (performance.now() - t0) / 1000;
  const c1 = cpuSnapshot();
  const ok = recs.filter((r) => r.ok);
  const tokens = ok.reduce((s, r) => s + r.tokens, 0);
  const other = Math.max(0, (c1.busy - c0.busy) - (c1.own - c0.own)) / CLK_TCK;
  return {
    requests: n, failed: recs.length - ok.length, errors: [...new Set(recs.filter((r) => !r.ok).map((r) => r.error))],
    tokens, wall_s: wall, aggregate: tokens / wall,
    ttft_p50: median(ok.map((r) => r.ttft)), ttft_p95: pct(ok.map((r) => r.ttft), 0.95),
    itl_p50: median(ok.flatMap((r) => r.gaps)), itl_p95: pct(ok.flatMap((r) => r.gaps), 0.95),
    rate: median(ok.map((r) => r.rate)),
    delta_mismatch: ok.filter((r) => r.deltas !== r.tokens).length,
    deltas: ok.reduce((s, r) => s + r.deltas, 0),
    short: ok.filter((r) => r.tokens < MAX_TOKENS).length,
    no_done: ok.filter((r) => !r.sawDone).length,
    prompt: median(ok.map((r) => r.prompt)),
    other_cpu_pct: (100 * other) / wall,
  };
}

async function getJson(server, path) {
  return new Promise((resolve) => {
    http.get({ hostname: server.url.hostname, port: server.url.port, path, agent: false }, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { t += d; });
      res.on('end', () => { try { resolve(JSON.parse(t)); } catch { resolve(null); } });
    }).on('error', () => resolve(null));
  });
}

// ---- run ----
const gguf = readGguf(a.gguf);
const key = (s, c, m) => `${s}|${c}|${m}`;
const results = {}; // key -> [per-round cell result]
const started = performance.now();
for (const s of SERVERS) for (const m of SAMPLING) { // warm-up, not counted
  const r = await one(s, m, `warm-up ${m.name}`);
  if (!r.ok) process.stderr.write(`  ${a.model} warm-up ${s.name} ${m.name}: ${r.error}\n`);
}
const maxRounds = Math.max(...Object.values(roundsFor));
for (let round = 0; round < maxRounds; round++) {
  const order = round % 2 === 0 ? SERVERS : [...SERVERS].reverse();
  for (const m of SAMPLING) {
    for (const c of CONC) {
      if (round >= roundsFor[c]) continue;
      for (const s of order) {
        const r = await runCell(s, c, m, round);
        (results[key(s.name, c, m.name)] ??= []).push(r);
        process.stderr.write(`  ${a.model} r${round + 1} ${m.name} c=${c} ${s.name}: ` +
          `${r.aggregate.toFixed(0)} tok/s, TTFT p50 ${r.ttft_p50?.toFixed(1)} ms, ` +
          `${r.rate?.toFixed(0)} tok/s/stream, failed ${r.failed}, other CPU ${r.other_cpu_pct.toFixed(0)}%` +
          `${r.errors.length ? ` (${r.errors[0]})` : ''}\n`);
        await sleep(100);
      }
    }
  }
}
const runSeconds = (performance.now() - started) / 1000;

// ---- report ----
const f = (x, d) => (x == null || Number.isNaN(x) ? '–' : x.toFixed(d));
const spread = (xs, d) => {
  const v = xs.filter((x) => x != null);
  if (!v.length) return '–';
  const lo = Math.min(...v), hi = Math.max(...v);
  return v.length > 1 ? `${f(median(v), d)} (${f(lo, d)}–${f(hi, d)})` : f(v[0], d);
};
const dig = (x) => (x >= 100 ? 0 : x >= 10 ? 1 : 2);
const col = (rs, k) => { const v = rs.map((r) => r[k]).filter((x) => x != null); return spread(v, dig(median(v) ?? 0)); };
const out = [];
const [A, B] = SERVERS;
const props = await getJson(B, '/props');
const ready = await getJson(A, '/ready');
const sSlots = ready?.backends?.find((b) => b.engine)?.engine?.slots;
out.push(`#### ${a.model}: ${describeGguf(gguf)}`, '');
out.push(`Slots: ${A.name} ${sSlots ?? '?'}, ${B.name} ${props?.total_slots ?? '?'} ` +
  `(n_ctx per slot ${props?.default_generation_settings?.n_ctx ?? '?'}). ` +
  `Rounds per concurrency: ${CONC.map((c) => `${c}-way ${roundsFor[c]}`).join(', ')}; ` +
  `max(${REQS}, concurrency) requests per cell and round; ${A.name} first in odd rounds. ` +
  `Run time ${(runSeconds / 60).toFixed(1)} min.`, '');
out.push('| sampling | conc | server | TTFT p50 ms | TTFT p95 ms | ITL p50 ms | ITL p95 ms | ' +
  'per-stream tok/s | aggregate tok/s | failed | other CPU % |');
out.push('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const m of SAMPLING) for (const c of CONC) for (const s of SERVERS) {
  const rs = results[key(s.name, c, m.name)] ?? [];
  const failed = rs.reduce((x, r) => x + r.failed, 0), reqs = rs.reduce((x, r) => x + r.requests, 0);
  const noise = rs.map((r) => r.other_cpu_pct);
  out.push(`| ${m.name} | ${c} | ${s.name} | ${col(rs, 'ttft_p50')} | ${col(rs, 'ttft_p95')} | ` +
    `${col(rs, 'itl_p50')} | ${col(rs, 'itl_p95')} | ${col(rs, 'rate')} | ${col(rs, 'aggregate')} | ` +
    `${failed}/${reqs} | ${f(median(noise), 0)} (max ${f(Math.max(...noise), 0)}) |`);
}
out.push('', `Ratios ${A.name} / ${B.name}, per round (the two cells ran back to back), median (min–max); ` +
  'TTFT and ITL: below 1 is better for ' + A.name + ', rates: above 1.', '');
out.push('| sampling | conc | TTFT p50 | ITL p50 | per-stream tok/s | aggregate tok/s |');
out.push('|---|---:|---:|---:|---:|---:|');
for (const m of SAMPLING) for (const c of CONC) {
  const ra = results[key(A.name, c, m.name)] ?? [], rb = results[key(B.name, c, m.name)] ?? [];
  const ratio = (k) => spread(ra.map((r, i) => (rb[i] && r[k] != null && rb[i][k] ? r[k] / rb[i][k] : null)), 2);
  out.push(`| ${m.name} | ${c} | ${ratio('ttft_p50')} | ${ratio('itl_p50')} | ${ratio('rate')} | ${ratio('aggregate')} |`);
}
out.push('');
const lines = [];
for (const s of SERVERS) for (const m of SAMPLING) {
  const agg = (c) => median((results[key(s.name, c, m.name)] ?? []).map((r) => r.aggregate));
  const sc = CONC.filter((c) => c > 1).map((c) => `${c}-way ${f(agg(c) / agg(1), 2)}×`).join(', ');
  const all = CONC.flatMap((c) => results[key(s.name, c, m.name)] ?? []);
  const sum = (k) => all.reduce((x, r) => x + r[k], 0);
  const errs = [...new Set(all.flatMap((r) => r.errors))];
  lines.push(`- ${s.name}, ${m.name}: aggregate over the 1-way aggregate (both include TTFT): ${sc}. ` +
    `Prompt ${f(median(all.map((r) => r.prompt)), 0)} tokens; of ${sum('requests') - sum('failed')} answers, ` +
    `${sum('short')} shorter than max_tokens, ${sum('delta_mismatch')} with content deltas ≠ usage.completion_tokens ` +
    `(${sum('deltas')} deltas for ${sum('tokens')} tokens in all), ` +
    `${sum('no_done')} without [DONE]` + (errs.length ? `; failures: ${errs.slice(0, 3).join('; ')}` : '') + '.');
}
const cells = Object.values(results).flat();
const noisy = cells.filter((r) => r.other_cpu_pct > 10).length;
lines.push(`- Noise: ${noisy} of ${cells.length} cells had other processes use more than 10 % of a core ` +
  `(worst ${f(Math.max(...cells.map((r) => r.other_cpu_pct)), 0)} %)` +
  (noisy ? '; their figures are not a quiet machine\'s.' : '.'));
out.push(...lines, '');
console.log(out.join('\n'));
if (a.json) writeFileSync(a.json, JSON.stringify({ model: a.model, gguf, rounds: roundsFor, results }, null, 1));
