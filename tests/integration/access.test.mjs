// Access control (`access:`, issue #12): the client allowlist checked at accept, 403 before
// any body byte is read, X-Forwarded-For believed only from trusted proxies (walked from the
// right), per-key allowed_cidrs (admin API and CLI), IPv6, and the log's client field.
// Source addresses other than 127.0.0.1 come from Linux's loopback (127.0.0.0/8 all works).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { startFake } from '../fakes/openai.mjs';
import { startGateway, config, writeConfig, waitFor, BIN, SCALE } from './lib/gateway.mjs';

const MK = 'test-master-key-0123456789';
const env = { MK };
let up;
before(async () => { up = await startFake(); });
after(async () => { await up?.close(); });

const models = () => [{ name: 'chat', targets: [{ backend: 'up', model: 'ok' }] }];
const yaml = (extra) => config({ extra, backends: [{ name: 'up', url: up.url }], models: models() });
const gateway = (extra, opts = {}) => startGateway(yaml(extra), { env, ...opts });

// One request from `from` (a local source address) with optional headers and body.
function request(gw, { from = '127.0.0.1', method = 'GET', path = '/health', headers = {}, body, host } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: host ?? '127.0.0.1', port: gw.port, method, path, localAddress: from,
      headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch {}
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
const chat = (gw, key, opts = {}) => request(gw, {
  method: 'POST', path: '/v1/chat/completions', ...opts,
  headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(opts.headers ?? {}) },
  body: { model: 'chat', messages: [{ role: 'user', content: 'hi' }] },
});
const requestLog = (gw, id) => gw.waitForLog((l) => l.event === 'request' && l.id === id);
const rows = (gw, sql) => {
  const out = execFileSync('sqlite3', ['-json', join(dirname(gw.file), 'stratus.db'), sql], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
};

test('access.allow: a listed address is served, another gets 403 ip_not_allowed and a log line naming it', async () => {
  const gw = await gateway('access: { allow: [127.0.0.1/32, "10.0.0.0/8"] }');
  try {
    const ok = await request(gw, { from: '127.0.0.1' });
    assert.equal(ok.status, 200);
    const okLine = await requestLog(gw, ok.headers['x-request-id']);
    assert.equal(okLine.client, '127.0.0.1', 'the request log line carries the client address');
    assert.equal(okLine.peer, undefined, 'no proxy: no separate peer');

    const no = await request(gw, { from: '127.0.0.2' });
    assert.equal(no.status, 403);
    assert.deepEqual(no.json.error.type, 'permission_error');
    assert.deepEqual(no.json.error.code, 'ip_not_allowed');
    assert.match(no.json.error.message, /127\.0\.0\.2/);
    assert.equal(no.headers.connection, 'close', 'the connection is closed after the 403');
    const warn = await gw.waitForLog((l) => l.event === 'ip_not_allowed');
    assert.equal(warn.client, '127.0.0.2');
    const line = await requestLog(gw, no.headers['x-request-id']);
    assert.equal(line.status, 403);
    assert.equal(line.client, '127.0.0.2');

    // Spoofing X-Forwarded-For from an untrusted peer changes nothing, either way.
    const spoof = await request(gw, { from: '127.0.0.2', headers: { 'x-forwarded-for': '10.1.2.3' } });
    assert.equal(spoof.status, 403, 'X-Forwarded-For from a peer not in trust_proxy is ignored');
    const plain = await request(gw, { from: '127.0.0.1', headers: { 'x-forwarded-for': '192.0.2.7' } });
    assert.equal(plain.status, 200);
    assert.equal((await requestLog(gw, plain.headers['x-request-id'])).client, '127.0.0.1');
  } finally {
    await gw.stop();
  }
});

test('access.allow: the 403 arrives after the head of a large POST, without any body byte sent', async () => {
  const gw = await gateway('access: { allow: [127.0.0.1/32] }');
  const head = (from) => new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: gw.port, localAddress: from });
    let got = '';
    let ended = false;
    s.on('data', (d) => { got += d; });
    s.on('end', () => { ended = true; });
    s.on('error', reject);
    s.on('connect', () => s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
      'Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n'));
    setTimeout(() => { s.destroy(); resolve({ got, ended }); }, 400 * SCALE);
  });
  try {
    const refused = await head('127.0.0.2');
    assert.match(refused.got, /^HTTP\/1\.1 403 /, 'the answer comes with the body never sent');
    assert.match(refused.got, /"code":"ip_not_allowed"/);
    assert.ok(refused.ended, 'and the server ends the connection');
    const allowed = await head('127.0.0.1');
    assert.equal(allowed.got, '', 'an allowed client with the same head is waited for (its body)');
  } finally {
    await gw.stop();
  }
});

test('access.trust_proxy: X-Forwarded-For is walked from the right past trusted proxies; allow applies to that client', async () => {
  const gw = await gateway('access:\n  allow: [10.0.0.0/8]\n  trust_proxy: [127.0.0.1/32, 127.0.0.3]');
  try {
    const viaProxy = await request(gw, { from: '127.0.0.1', headers: { 'x-forwarded-for': '10.1.2.3' } });
    assert.equal(viaProxy.status, 200);
    const line = await requestLog(gw, viaProxy.headers['x-request-id']);
    assert.equal(line.client, '10.1.2.3');
    assert.equal(line.peer, '127.0.0.1', 'the trusted proxy is logged as the peer');

    // A client may put anything on the left; the right-most untrusted address counts.
    const spoofedLeft = await request(gw, { from: '127.0.0.1', headers: { 'x-forwarded-for': '192.0.2.9, 10.1.2.3' } });
    assert.equal(spoofedLeft.status, 200);
    assert.equal((await requestLog(gw, spoofedLeft.headers['x-request-id'])).client, '10.1.2.3');
    // Two trusted hops (127.0.0.3 appended by the first proxy), and two header lines.
    const twoHops = await request(gw, { from: '127.0.0.1', headers: { 'x-forwarded-for': ['10.4.4.4', '127.0.0.3'] } });
    assert.equal(twoHops.status, 200);
    assert.equal((await requestLog(gw, twoHops.headers['x-request-id'])).client, '10.4.4.4');

    const outside = await request(gw, { from: '127.0.0.1', headers: { 'x-forwarded-for': '10.1.2.3, 192.0.2.9' } });
    assert.equal(outside.status, 403, 'the proxy says the client is 192.0.2.9: not allowed');
    assert.match(outside.json.error.message, /192\.0\.2\.9/);
    const outsideLine = await requestLog(gw, outside.headers['x-request-id']);
    assert.deepEqual([outsideLine.client, outsideLine.peer], ['192.0.2.9', '127.0.0.1']);

    const noHeader = await request(gw, { from: '127.0.0.1' });
    assert.equal(noHeader.status, 403, 'without X-Forwarded-For the proxy itself is the client');
    const garbage = await request(gw, { from: '127.0.0.1', headers: { 'x-forwarded-for': 'not-an-ip' } });
    assert.equal(garbage.status, 400);
    assert.equal(garbage.json.error.code, 'bad_forwarded_for');

    // A peer that is neither a trusted proxy nor allowed is refused whatever it claims.
    const untrusted = await request(gw, { from: '127.0.0.2', headers: { 'x-forwarded-for': '10.1.2.3' } });
    assert.equal(untrusted.status, 403);
    assert.match(untrusted.json.error.message, /127\.0\.0\.2/);
  } finally {
    await gw.stop();
  }
});

test('per-key allowed_cidrs: set through the admin API, listed, enforced on the client address with a ledger row', async () => {
  const gw = await gateway('auth: { master_key: env:MK, refresh_ms: 200 }\naccess: { trust_proxy: [127.0.0.5/32] }');
  const admin = (method, path, body) => request(gw, {
    method, path, body, headers: { authorization: `Bearer ${MK}` },
  });
  try {
    const bad = await admin('POST', '/admin/keys', { name: 'x', allowed_cidrs: ['10.0.0.1/8'] });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, 'allowed_cidrs');
    assert.match(bad.json.error.message, /10\.0\.0\.1\/8/);
    const notList = await admin('POST', '/admin/keys', { allowed_cidrs: '10.0.0.0/8' });
    assert.equal(notList.status, 400);

    const made = await admin('POST', '/admin/keys', { name: 'lab', allowed_cidrs: ['127.0.0.2', '10.0.0.0/8', '::1/128'] });
    assert.equal(made.status, 201, made.text);
    assert.deepEqual(made.json.allowed_cidrs, ['127.0.0.2/32', '10.0.0.0/8', '::1/128'], 'stored normalised');
    const listed = (await admin('GET', '/admin/keys')).json.data.find((k) => k.id === made.json.id);
    assert.deepEqual(listed.allowed_cidrs, ['127.0.0.2/32', '10.0.0.0/8', '::1/128']);
    const open = await admin('POST', '/admin/keys', { name: 'anywhere' });
    assert.deepEqual(open.json.allowed_cidrs, []);

    const key = made.json.key;
    assert.equal((await chat(gw, key, { from: '127.0.0.2' })).status, 200);
    const elsewhere = await chat(gw, key, { from: '127.0.0.1' });
    assert.equal(elsewhere.status, 403);
    assert.equal(elsewhere.json.error.code, 'ip_not_allowed');
    assert.match(elsewhere.json.error.message, new RegExp(`${made.json.id} may not be used from 127\\.0\\.0\\.1`));
    assert.equal((await chat(gw, open.json.key, { from: '127.0.0.1' })).status, 200, 'a key without a list works anywhere');
    // Behind a trusted proxy the key is checked against the forwarded client.
    assert.equal((await chat(gw, key, { from: '127.0.0.5', headers: { 'x-forwarded-for': '10.7.7.7' } })).status, 200);
    assert.equal((await chat(gw, key, { from: '127.0.0.5', headers: { 'x-forwarded-for': '192.0.2.1' } })).status, 403);
    // /v1/models is a keyed route too.
    assert.equal((await request(gw, { path: '/v1/models', headers: { authorization: `Bearer ${key}` } })).status, 403);

    // Each refused model request leaves a ledger row, like other refusals.
    const sql = "SELECT status FROM requests WHERE status = 403 AND endpoint = 'chat/completions'";
    await waitFor(() => rows(gw, sql).length === 2, { timeout: 5000, what: 'the refusals in the ledger' });
    const line = await requestLog(gw, elsewhere.headers['x-request-id']);
    assert.deepEqual([line.status, line.client], [403, '127.0.0.1']);
  } finally {
    await gw.stop();
  }
});

test('per-key allowed_cidrs from the CLI (keys create --allowed-cidrs), listed by keys list', async () => {
  const file = writeConfig(yaml('auth: { master_key: env:MK, refresh_ms: 200 }'));
  const cli = (args) => spawnSync(BIN, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  const made = cli(['keys', 'create', '--config', file, '--name', 'cli', '--allowed-cidrs', '127.0.0.2/32,::1/128', '--json']);
  assert.equal(made.status, 0, made.stderr);
  const k = JSON.parse(made.stdout);
  assert.deepEqual(k.allowed_cidrs, ['127.0.0.2/32', '::1/128']);
  const badCli = cli(['keys', 'create', '--config', file, '--allowed-cidrs', '10.0.0.0/33']);
  assert.equal(badCli.status, 2);
  assert.match(badCli.stderr, /allowed_cidrs.*10\.0\.0\.0\/33.*at most 32/);
  const table = cli(['keys', 'list', '--config', file]);
  assert.match(table.stdout, /127\.0\.0\.2\/32,::1\/128/);

  const gw = await startGateway(null, { env, file });
  try {
    assert.equal((await chat(gw, k.key, { from: '127.0.0.2' })).status, 200);
    const no = await chat(gw, k.key, { from: '127.0.0.1' });
    assert.equal(no.status, 403);
    assert.equal(no.json.error.code, 'ip_not_allowed');
  } finally {
    await gw.stop();
  }
});

test('IPv6: a [::1] listener matches ::1/128 and refuses it when only IPv4 is allowed', async () => {
  const v6 = await gateway('access: { allow: ["::1/128"] }', { args: ['--listen', '[::1]:0'] });
  try {
    const r = await request(v6, { host: '::1', from: '::1' });
    assert.equal(r.status, 200);
    assert.equal((await requestLog(v6, r.headers['x-request-id'])).client, '::1');
  } finally {
    await v6.stop();
  }
  const v4only = await gateway('access: { allow: [127.0.0.0/8] }', { args: ['--listen', '[::1]:0'] });
  try {
    const r = await request(v4only, { host: '::1', from: '::1' });
    assert.equal(r.status, 403);
    assert.match(r.json.error.message, /::1/);
  } finally {
    await v4only.stop();
  }
});

test('config: bad CIDRs and unknown keys under access are refused with FILE:LINE:COL', () => {
  const check = (extra) => spawnSync(BIN, ['check', '--config', writeConfig(yaml(extra))], { encoding: 'utf8' });
  const cases = [
    ['access:\n  allow: [10.0.0.0/8, 300.1.2.3]', /:3:23: access\.allow: '300\.1\.2\.3' is not a CIDR/],
    ['access:\n  allow: ["::1/129"]', /:3:11: .*at most 128/],
    ['access:\n  trust_proxy: [10.0.0.1/24]', /:3:17: .*bits set beyond the prefix/],
    ['access:\n  allow: []', /:3:10: access\.allow is empty/],
    ['access:\n  alow: [10.0.0.0/8]', /:3:3: unknown key 'alow' in access \(did you mean 'allow'\?\)/],
    ['access:\n  allow: 10.0.0.0/8', /:3:10: access\.allow must be a list/],
  ];
  for (const [extra, re] of cases) {
    const r = check(extra);
    assert.equal(r.status, 2, `${extra}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, re);
  }
  assert.equal(check('access:\n  allow: [10.0.0.0/8, "fd00::/8", 127.0.0.1]\n  trust_proxy: ["::1"]').status, 0);
});

test('the gateway exits 0 on SIGTERM after refusing and serving', async () => {
  const gw = await gateway('access: { allow: [127.0.0.1/32] }');
  assert.equal((await request(gw, { from: '127.0.0.2' })).status, 403);
  assert.equal((await request(gw, { from: '127.0.0.1' })).status, 200);
  assert.equal(await gw.stop(), 0);
  assert.equal(gw.exitCode, 0);
});
