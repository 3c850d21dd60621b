// Starts the real stratus binary for a test: writes the YAML config to a temp dir, runs
// `serve --listen 127.0.0.1:0`, learns the port from the `listening` log line, and keeps
// every stderr line (JSON logs) for assertions. Processes are killed when the test process
// exits, so a failing test leaves no orphan behind.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SCALE = Number(process.env.TEST_TIMEOUT_SCALE || 1);
export const BIN = process.env.STRATUS_BIN || 'build/stratus';
const live = new Set();
const tempDirs = [];
process.on('exit', () => {
  for (const p of live) try { p.kill('SIGKILL'); } catch {}
  for (const d of tempDirs) try { rmSync(d, { recursive: true, force: true }); } catch {}
});

export async function waitFor(pred, { timeout = 5000, what = 'condition', interval = 10 } = {}) {
  const deadline = Date.now() + timeout * SCALE;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

export function writeConfig(yaml) {
  const dir = mkdtempSync(join(tmpdir(), 'stratus-test-'));
  tempDirs.push(dir);
  const file = join(dir, 'stratus.yaml');
  writeFileSync(file, yaml);
  return file;
}

// `wrapper`: a command the binary runs under, outermost (e.g. ['prlimit', '--nofile=128:128', '--']).
// `listen: false`: no --listen, the config's own listeners serve (gw.listeners: every
// `listening` line, once `listeners` of them are out).
export async function startGateway(yaml, { env = {}, args = [], file: reuse, wrapper: outer = [], listen = true, listeners = 1 } = {}) {
  const file = reuse ?? writeConfig(yaml); // `file`: restart on the same config (and its store)
  const wrapper = process.env.STRATUS_WRAPPER ? process.env.STRATUS_WRAPPER.split(/\s+/).filter(Boolean) : [];
  const cmd = [...outer, ...wrapper, BIN, 'serve', '--config', file, ...(listen ? ['--listen', '127.0.0.1:0'] : []), ...args];
  const child = spawn(cmd[0], cmd.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const gw = {
    child, file, logs: [], stderr: '', stdout: '', exitCode: null, signal: null,
    exited: new Promise((resolve) => child.on('exit', (code, signal) => {
      live.delete(child); gw.exitCode = code; gw.signal = signal; resolve(code);
    })),
  };
  let pending = '';
  child.stderr.on('data', (d) => {
    gw.stderr += d;
    pending += d;
    let nl;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try { gw.logs.push(JSON.parse(line)); } catch { /* valgrind/ASan text */ }
    }
  });
  child.stdout.on('data', (d) => { gw.stdout += d; });
  const listening = await waitFor(() => (gw.logs.filter((l) => l.event === 'listening').length >= listeners
      && gw.logs.find((l) => l.event === 'listening')) || gw.exitCode !== null,
    { timeout: 10000, what: 'the listening log line' });
  gw.listeners = gw.logs.filter((l) => l.event === 'listening');
  if (listening === true || gw.exitCode !== null) throw new Error(`gateway exited early (${gw.exitCode}):\n${gw.stderr}`);
  gw.address = listening.address;
  gw.baseURL = `http://${listening.address}`;
  gw.port = Number(listening.address.split(':').pop());
  gw.waitForLog = (pred, timeout = 5000) => waitFor(() => gw.logs.find(pred), { timeout, what: 'a log line' });
  gw.stop = async (signal = 'SIGTERM') => {
    if (gw.exitCode === null && gw.signal === null) child.kill(signal);
    return gw.exited;
  };
  return gw;
}

// One backend per fake, named after it, plus the given models.
// Builds a config. Backends default to type openai at `url`; `type`/`fields` give others
// (fields: extra YAML lines, already indented by the caller's object keys). Models default
// to route priority with retries and the circuit breaker OFF, so each test states exactly
// the resilience it exercises (`retry`, `cooldown`, `fields` switch them on).
export function config({ backends, models, extra = '' }) {
  let y = `log: { requests: true }\n${extra}\nbackends:\n`;
  for (const b of backends) {
    y += `  - name: ${b.name}\n    type: ${b.type ?? 'openai'}\n`;
    if (b.url) y += `    ${b.type === 'bedrock' ? 'endpoint_url' : 'base_url'}: ${b.url}\n`;
    if (b.api_key) y += `    api_key: ${b.api_key}\n`;
    y += `    timeout_ms: ${b.timeout_ms ?? Math.round(10000 * SCALE)}\n    connect_timeout_ms: ${b.connect_timeout_ms ?? 1000}\n`;
    if (b.first_byte_timeout_ms) y += `    first_byte_timeout_ms: ${b.first_byte_timeout_ms}\n`;
    for (const [k, v] of Object.entries(b.fields ?? {})) y += `    ${k}: ${v}\n`;
  }
  y += 'models:\n';
  for (const m of models) {
    y += `  - name: ${m.name}\n    route: ${m.route ?? 'priority'}\n`;
    y += `    retry: ${m.retry ?? '{ retries: 0 }'}\n`;
    y += `    cooldown: ${m.cooldown ?? '{ failures: 0 }'}\n`;
    for (const [k, v] of Object.entries(m.fields ?? {})) y += `    ${k}: ${v}\n`;
    y += '    targets:\n';
    for (const t of m.targets) {
      let line = `      - { backend: ${t.backend}, model: "${t.model}"`;
      if (t.weight !== undefined) line += `, weight: ${t.weight}`;
      if (t.price) line += `, price: { input: ${t.price.input}, output: ${t.price.output} }`;
      y += `${line} }\n`;
    }
  }
  return y;
}

// Reads an SSE response body into an array of raw `data:` payload strings.
export async function readSSE(res) {
  const text = await res.text();
  return text.split('\n\n').filter((e) => e.trim()).map((e) => e.replace(/^data: /, ''));
}

export const closedPort = 1; // nothing listens on port 1
