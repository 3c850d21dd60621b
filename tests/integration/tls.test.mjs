// The TLS listener (#12): a self-signed certificate made with openssl in the test's temp dir,
// real clients trusting it (node:https, node:http2 with ALPN h2, curl --cacert over HTTP/1.1
// and HTTP/2, the OpenAI SDK in a child process with NODE_EXTRA_CA_CERTS), a plain and a TLS
// listener side by side, the certificate swapped on SIGHUP under load, a bad one refused on
// reload, and hostile bytes (plain HTTP, garbage, a silent client) on the TLS port.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, waitFor, SCALE } from './lib/gateway.mjs';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'stratus-tls-'));
const CERT = join(dir, 'cert.pem');
const KEY = join(dir, 'key.pem');
const HEADER_TIMEOUT_MS = Math.round(500 * SCALE);
let fake, gw, certA, certB;

// A self-signed EC certificate for 127.0.0.1 and localhost: { cert, key, fp } (fp: sha256 hex).
function makeCert(name) {
  const c = join(dir, `${name}.crt`), k = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-keyout', k, '-out', c, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const cert = readFileSync(c, 'utf8');
  const fp = new X509Certificate(cert).fingerprint256.replace(/:/g, '').toLowerCase();
  return { cert, key: readFileSync(k, 'utf8'), fp, certPath: c };
}

// Installs a pair where the gateway reads it (renamed into place: never half-written).
function install(pair) {
  writeFileSync(`${KEY}.tmp`, pair.key);
  writeFileSync(`${CERT}.tmp`, pair.cert);
  renameSync(`${KEY}.tmp`, KEY);
  renameSync(`${CERT}.tmp`, CERT);
}

function gatewayConfig(extra = '') {
  return `log: { requests: true }
tls: { cert: "file:${CERT}", key: "file:${KEY}" }
limits: { header_timeout_ms: ${HEADER_TIMEOUT_MS} }
${extra}
backends:
  - { name: up, type: openai, base_url: "${fake.url}", timeout_ms: ${Math.round(20000 * SCALE)} }
models:
  - { name: chat, retry: { retries: 0 }, targets: [ { backend: up, model: ok } ] }
  - { name: twenty, retry: { retries: 0 }, targets: [ { backend: up, model: stream-20 } ] }
`;
}

// One HTTPS request on a fresh connection; resolves { status, body, fp } (fp: the server's
// certificate sha256 as lower-case hex).
function get(port, path = '/health', { ca = [certA.cert, certB.cert], method = 'GET', body } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path, method, ca, agent: false,
      headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      const fp = res.socket.getPeerCertificate().fingerprint256?.replace(/:/g, '').toLowerCase();
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: text, fp, alpn: res.socket.alpnProtocol }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

before(async () => {
  certA = makeCert('a');
  certB = makeCert('b');
  install(certA);
  fake = await startFake();
  gw = await startGateway(gatewayConfig());
});

after(async () => {
  await fake?.close();
  rmSync(dir, { recursive: true, force: true }); // the certificates and keys made above
});

test('https: /health over TLS with the configured certificate; the start line logs its fingerprint', async () => {
  const r = await get(gw.port);
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { status: 'ok' });
  assert.equal(r.fp, certA.fp);
  assert.equal(gw.logs.find((l) => l.event === 'tls').sha256, certA.fp);
  assert.equal(gw.listeners[0].tls, true);
});

test('TLS policy: 1.2 gets ECDHE with an AEAD cipher; 1.1 and non-ECDHE ciphers are refused', async () => {
  const connect = (opts) => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: gw.port, ca: certA.cert, servername: 'localhost', ...opts });
    s.once('secureConnect', () => { const c = s.getCipher(); const v = s.getProtocol(); s.end(); resolve({ c, v }); });
    s.once('error', reject);
  });
  const r12 = await connect({ maxVersion: 'TLSv1.2' });
  assert.equal(r12.v, 'TLSv1.2');
  assert.match(r12.c.name, /^ECDHE-.*(GCM|CHACHA20)/);
  const r13 = await connect({});
  assert.equal(r13.v, 'TLSv1.3');
  await assert.rejects(connect({ maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256' }));
  await assert.rejects(connect({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }));
});

test('curl --cacert: HTTP/1.1 and HTTP/2 chosen by ALPN', async () => {
  const url = `https://localhost:${gw.port}/health`;
  const h1 = await run('curl', ['-sS', '--http1.1', '--cacert', CERT, '--resolve', `localhost:${gw.port}:127.0.0.1`, '-w', ' %{http_version}', url]);
  assert.equal(h1.stdout, '{"status":"ok"} 1.1');
  const h2 = await run('curl', ['-sS', '--http2', '--cacert', CERT, '--resolve', `localhost:${gw.port}:127.0.0.1`, '-w', ' %{http_version}', url]);
  assert.equal(h2.stdout, '{"status":"ok"} 2');
  const chat = await run('curl', ['-sS', '--http2', '--cacert', CERT, '--resolve', `localhost:${gw.port}:127.0.0.1`,
    '-H', 'content-type: application/json', '-d', '{"model":"chat","messages":[{"role":"user","content":"hi"}]}',
    `https://localhost:${gw.port}/v1/chat/completions`]);
  assert.equal(JSON.parse(chat.stdout).choices[0].message.content, 'Hello from the fake');
});

test('node:http2 over TLS (ALPN h2): a JSON chat and an SSE chat on one session', async () => {
  const session = http2.connect(`https://localhost:${gw.port}`, { ca: certA.cert, host: '127.0.0.1' });
  session.on('error', () => {});
  await new Promise((res, rej) => { session.once('connect', res); session.once('error', rej); });
  assert.equal(session.alpnProtocol, 'h2');
  const one = (model, stream) => new Promise((resolve, reject) => {
    const s = session.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
    let status, text = '';
    s.on('response', (h) => { status = h[':status']; });
    s.setEncoding('utf8');
    s.on('data', (d) => { text += d; });
    s.on('end', () => resolve({ status, text }));
    s.on('error', reject);
    s.end(JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }));
  });
  const [json, sse] = await Promise.all([one('chat', false), one('twenty', true)]);
  assert.equal(json.status, 200);
  assert.equal(JSON.parse(json.text).choices[0].message.content, 'Hello from the fake');
  assert.equal(sse.status, 200);
  const events = sse.text.split('\n\n').filter((e) => e.trim()).map((e) => e.replace(/^data: /, ''));
  assert.equal(events.at(-1), '[DONE]');
  const content = events.slice(0, -1).map((e) => JSON.parse(e).choices[0]?.delta?.content ?? '').join('');
  assert.equal(content, Array.from({ length: 20 }, (_, i) => `tok${i} `).join(''));
  session.close();
  await waitFor(() => gw.logs.filter((l) => l.event === 'request' && l.protocol === 'HTTP/2' && l.path === '/v1/chat/completions').length >= 2,
    { what: 'the HTTP/2 request lines' });
});

test('the OpenAI SDK trusts the gateway through NODE_EXTRA_CA_CERTS (unary and stream)', async () => {
  const script = `
    import OpenAI from 'openai';
    const c = new OpenAI({ baseURL: 'https://localhost:${gw.port}/v1', apiKey: 'x', maxRetries: 0 });
    const r = await c.chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
    let s = '';
    for await (const ch of await c.chat.completions.create({ model: 'twenty', stream: true, messages: [{ role: 'user', content: 'hi' }] }))
      s += ch.choices[0]?.delta?.content ?? '';
    console.log(JSON.stringify({ unary: r.choices[0].message.content, stream: s }));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script],
    { env: { ...process.env, NODE_EXTRA_CA_CERTS: CERT }, cwd: process.cwd() });
  const out = JSON.parse(stdout);
  assert.equal(out.unary, 'Hello from the fake');
  assert.equal(out.stream, Array.from({ length: 20 }, (_, i) => `tok${i} `).join(''));
});

test('plain HTTP, garbage and a silent client on the TLS port are closed; others are served meanwhile', async () => {
  const raw = (bytes) => new Promise((resolve) => {
    const s = net.connect(gw.port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const t0 = Date.now();
    s.on('connect', () => { if (bytes) s.write(bytes); });
    s.on('data', (d) => { got = Buffer.concat([got, d]); });
    s.on('error', () => {});
    s.on('close', () => resolve({ got, ms: Date.now() - t0 }));
  });
  const [plain, garbage, silent, ok] = await Promise.all([
    raw('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'),
    raw(Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff))),
    raw(null),
    get(gw.port),
  ]);
  assert.ok(!plain.got.toString('latin1').startsWith('HTTP/'), 'no HTTP answer in clear');
  assert.ok(!garbage.got.toString('latin1').includes('HTTP/'));
  assert.equal(silent.got.length, 0);
  assert.ok(silent.ms >= HEADER_TIMEOUT_MS - 50 && silent.ms < HEADER_TIMEOUT_MS + 3000 * SCALE, `closed after ${silent.ms} ms`);
  assert.equal(ok.status, 200);
  assert.equal((await get(gw.port)).status, 200);
  await gw.waitForLog((l) => l.event === 'tls_handshake_failed' && /http request/.test(l.error));
  await gw.waitForLog((l) => l.event === 'tls_handshake_failed' && /header_timeout_ms/.test(l.error));
});

test('SIGHUP swaps the certificate under load: no request fails, new connections see the new one', async () => {
  let stop = false, done = 0;
  const failures = [];
  const keepAlive = new https.Agent({ keepAlive: true, ca: [certA.cert, certB.cert] });
  const loop = async (fresh) => {
    while (!stop) {
      try {
        const r = fresh ? await get(gw.port) : await new Promise((resolve, reject) => {
          https.get({ host: '127.0.0.1', port: gw.port, path: '/health', agent: keepAlive }, (res) => {
            res.resume(); res.on('end', () => resolve({ status: res.statusCode }));
          }).on('error', reject);
        });
        if (r.status !== 200) failures.push(r.status);
        done++;
      } catch (e) { failures.push(e.message); }
    }
  };
  const loops = [loop(true), loop(true), loop(false), loop(false)];
  await waitFor(() => done >= 50, { what: 'requests before the swap' });
  install(certB);
  gw.child.kill('SIGHUP');
  await gw.waitForLog((l) => l.event === 'tls_reloaded' && l.sha256 === certB.fp);
  const after = done;
  await waitFor(() => done >= after + 50, { what: 'requests after the swap' });
  stop = true;
  await Promise.all(loops);
  keepAlive.destroy();
  assert.deepEqual(failures, []);
  assert.equal((await get(gw.port)).fp, certB.fp);
});

test('a bad certificate on reload keeps the old one and says why', async () => {
  writeFileSync(CERT, 'not a certificate\n');
  gw.child.kill('SIGHUP');
  const line = await gw.waitForLog((l) => l.event === 'tls_reload_failed');
  assert.equal(line.cert, `file:${CERT}`);
  assert.match(line.error, new RegExp(`tls\\.cert file:${CERT}: .*no start line`));
  const r = await get(gw.port);
  assert.equal(r.status, 200);
  assert.equal(r.fp, certB.fp);
  // A key that does not match the certificate is refused too.
  writeFileSync(CERT, certA.cert);
  writeFileSync(KEY, certB.key);
  const n = gw.logs.filter((l) => l.event === 'tls_reload_failed').length;
  gw.child.kill('SIGHUP');
  await waitFor(() => gw.logs.filter((l) => l.event === 'tls_reload_failed').length > n, { what: 'the second failure' });
  assert.match(gw.logs.filter((l) => l.event === 'tls_reload_failed').at(-1).error, /tls\.key .*(mismatch|does not match)/);
  assert.equal((await get(gw.port)).fp, certB.fp);
  install(certB);
});

test('a plain and a TLS listener at once (listen: a list)', async () => {
  const two = await startGateway(gatewayConfig(
    'listen: [ { address: "127.0.0.1:0", tls: false }, "127.0.0.1:0" ]'), { listen: false, listeners: 2 });
  try {
    assert.deepEqual(two.listeners.map((l) => l.tls), [false, true]);
    const [plainPort, tlsPort] = two.listeners.map((l) => Number(l.address.split(':').pop()));
    const plain = await fetch(`http://127.0.0.1:${plainPort}/health`);
    assert.equal(plain.status, 200);
    const secure = await get(tlsPort);
    assert.equal(secure.status, 200);
    assert.equal(secure.fp, certB.fp);
    // TLS to the plain port fails; the listeners go on.
    await assert.rejects(get(plainPort));
    assert.equal((await fetch(`http://127.0.0.1:${plainPort}/health`)).status, 200);
  } finally {
    assert.equal(await two.stop(), 0, two.stderr.slice(-3000));
  }
});

test('a certificate that does not load stops the start with the reason', async () => {
  const bad = join(dir, 'bad.pem');
  writeFileSync(bad, 'garbage\n');
  await assert.rejects(startGateway(gatewayConfig().replace(`file:${CERT}`, `file:${bad}`)), /no start line/);
});

// Last: exit 0 after all of the above: no crash, and under ASan no leak (it exits 66 then).
test('the gateway exits 0 on SIGTERM', async () => {
  assert.equal(await gw.stop(), 0, gw.stderr.slice(-3000));
});
