#!/usr/bin/env node
// Checks that includes run one way through src/ (DESIGN.md: "No include goes up a floor").
//   1. Every module (a .c/.h pair: src/api/proxy.c + src/api/proxy.h = api/proxy) includes
//      only modules on its own floor or below — the floors are listed here and in
//      docs/architecture.md.
//   2. No include cycle between modules, on any floor.
//   3. A source file over 800 lines says why in its opening comment ("Why one file ...",
//      issue #10), so a long file is a decision someone wrote down, not drift.
// Prints each violation and exits 1; prints a one-line summary and exits 0 when clean.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const SRC = new URL('../src/', import.meta.url).pathname;

// Lowest first. A module's floor is that of the first pattern its path matches.
const FLOORS = [
  [0, /^util\//], [0, /^obs\/log$/],          // building blocks every floor may use
  [1, /^config\//], [1, /^cost\/prices$/],     // the config tree and the price catalogue it loads
  [1, /^secrets\//],                          // secret references the config resolves, and the
  [1, /^providers\/aws\/(sigv4|credentials)$/], // AWS signing and credentials they (and bedrock) use
  [1, /^http\//],                             // HTTP server and SSE framing
  [2, /^openai\//], [2, /^store\//],          // the request model; the ledger and key store
  [3, /^cost\//],                             // prices, TCO, spend reports
  [4, /^providers\//],                        // upstream client and provider translations
  [5, /^engine\//],                           // local inference workers and their supervisor
  [6, /^route\//],                            // router, attempt engine, explain
  [7, /^guard\//],                            // keys, rate limits, budgets
  [8, /^obs\//],                              // what a request leaves behind (record)
  [9, /^api\//], [9, /^app$/], [9, /^generation$/],                // inbound surfaces, glue, admin; the daemon
  [10, /^daemon$/],                           // `serve`: the composition root
  [10, /^cli\//], [10, /^main$/],             // commands
];

function floorOf(mod) {
  for (const [f, re] of FLOORS) if (re.test(mod)) return f;
  return null;
}

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.[ch]$/.test(name)) out.push(p);
  }
  return out;
}

const edges = new Map(); // module -> Map(included module -> "file:line")
const problems = [];
for (const file of walk(SRC)) {
  const rel = relative(SRC, file);
  const mod = rel.replace(/\.[ch]$/, '');
  if (floorOf(mod) === null) problems.push(`${rel}: not on any floor (add it to scripts/check-includes.mjs)`);
  if (!edges.has(mod)) edges.set(mod, new Map());
  readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    const m = /^\s*#\s*include\s+"([^"]+)\.h"/.exec(line);
    if (!m || m[1] === mod) return;
    if (!edges.get(mod).has(m[1])) edges.get(mod).set(m[1], `src/${rel}:${i + 1}`);
  });
}

for (const [mod, to] of edges) {
  const f = floorOf(mod);
  for (const [dep, where] of to) {
    const g = floorOf(dep);
    if (f !== null && g !== null && g > f)
      problems.push(`${where}: ${mod} (floor ${f}) includes ${dep}.h (floor ${g}): an include up a floor`);
  }
}

// Cycles: depth-first search with colours; report each cycle once, as a path.
const colour = new Map();
const stack = [];
const seen = new Set();
function visit(mod) {
  colour.set(mod, 'grey');
  stack.push(mod);
  for (const dep of (edges.get(mod) ?? new Map()).keys()) {
    if (!edges.has(dep)) continue;
    if (colour.get(dep) === 'grey') {
      const cycle = [...stack.slice(stack.indexOf(dep)), dep];
      const key = [...cycle].sort().join(' ');
      if (!seen.has(key)) {
        seen.add(key);
        problems.push(`include cycle: ${cycle.join(' -> ')} (${edges.get(mod).get(dep)})`);
      }
    } else if (!colour.has(dep)) visit(dep);
  }
  stack.pop();
  colour.set(mod, 'black');
}
for (const mod of edges.keys()) if (!colour.has(mod)) visit(mod);

const LONG = 800;
for (const file of walk(SRC)) {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n').length - 1;
  const opening = /^\s*\/\*[\s\S]*?\*\//.exec(text)?.[0] ?? '';
  if (lines > LONG && !/Why one file/.test(opening))
    problems.push(`src/${relative(SRC, file)}: ${lines} lines and no "Why one file ..." in its opening comment`);
}

if (problems.length) {
  for (const p of problems) console.log(p);
  console.log(`check-includes: ${problems.length} problem(s) in ${edges.size} modules`);
  process.exit(1);
}
console.log(`check-includes: ${edges.size} modules, includes run one way, no cycles; long files say why`);
