// Reading a Prometheus exposition in tests. promtool (Prometheus's own parser and linter,
// installed by scripts/install-deps into ~/.cache/stratus) decides whether the text is
// valid; `samples` then reads the values for assertions.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const PROMTOOL = process.env.PROMTOOL || join(homedir(), '.cache/stratus/promtool');

// { code, output } of `promtool check metrics` on `text` (0: valid, no lint problems).
export function promtoolCheck(text) {
  if (!existsSync(PROMTOOL)) throw new Error(`${PROMTOOL} missing: run scripts/install-deps`);
  return new Promise((resolve, reject) => {
    const p = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (d) => { output += d; });
    p.stderr.on('data', (d) => { output += d; });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, output }));
    p.stdin.end(text);
  });
}

// Every sample: { name, labels: {k: v} (unescaped), value: Number }.
export function samples(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
    let l;
    while (m[2] && (l = re.exec(m[2])) !== null)
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}

// The samples of `name` whose labels include `labels`.
export function find(all, name, labels = {}) {
  return all.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

// The one value of `name` with `labels` (throws when there is not exactly one).
export function value(all, name, labels = {}) {
  const hits = find(all, name, labels);
  if (hits.length !== 1) throw new Error(`${hits.length} samples of ${name} ${JSON.stringify(labels)}`);
  return hits[0].value;
}
