// The fake cloud providers are only worth trusting if they reject what the real ones reject.
// These tests drive them directly (no gateway): the Bedrock fake must refuse a request whose
// SigV4 signature is wrong by one byte, and its event-stream must be what the AWS SDK's
// codec decodes (and refuses when a CRC is wrong); the Anthropic fake must insist on the key,
// the version header and max_tokens. The secret-store fakes must serve the official AWS SDK
// clients unchanged and refuse what Secrets Manager, SSM and Vault refuse.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startAnthropicFake } from '../fakes/anthropic.mjs';
import { startBedrockFake, signForTest, codec } from '../fakes/bedrock.mjs';
import { startAwsSecretsFake, signAwsForTest } from '../fakes/aws-secrets.mjs';
import { startVaultFake } from '../fakes/vault.mjs';
import { toUtf8 } from '@smithy/util-utf8';
import { SecretsManagerClient, GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { SSMClient, GetParameterCommand } from '@aws-sdk/client-ssm';

let anth, bed;
before(async () => {
  anth = await startAnthropicFake({ apiKey: 'k' });
  bed = await startBedrockFake();
});
after(async () => {
  await anth?.close();
  await bed?.close();
});

const messages = [{ role: 'user', content: 'hello world' }];

test('anthropic fake: key, version and max_tokens are required', async () => {
  const post = (headers, body) => fetch(`${anth.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  let res = await post({ 'anthropic-version': '2023-06-01' }, { model: 'echo', max_tokens: 5, messages });
  assert.equal(res.status, 401);
  res = await post({ 'x-api-key': 'k' }, { model: 'echo', max_tokens: 5, messages });
  assert.equal(res.status, 400);
  res = await post({ 'x-api-key': 'k', 'anthropic-version': '2023-06-01' }, { model: 'echo', messages });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /max_tokens/);
  res = await post({ 'x-api-key': 'k', 'anthropic-version': '2023-06-01' }, { model: 'echo', max_tokens: 5, messages: [{ role: 'system', content: 'x' }] });
  assert.equal(res.status, 400);
  res = await post({ 'x-api-key': 'k', 'anthropic-version': '2023-06-01' }, { model: 'stream-3', max_tokens: 5, stream: true, messages });
  const types = (await res.text()).split('\n').filter((l) => l.startsWith('event: ')).map((l) => l.slice(7));
  assert.deepEqual(types, ['message_start', 'ping', 'content_block_start', 'content_block_delta', 'content_block_delta',
    'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
});

async function bedrockPost(path, body, signWith = {}) {
  const url = `${bed.url}${path}`;
  const headers = await signForTest({ url, body, ...signWith });
  return { url, headers, send: (b = body) => fetch(url, { method: 'POST', headers, body: b }) };
}

test('bedrock fake: a correctly signed request is answered; one changed byte is refused', async () => {
  const body = JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'hello world' }] }] });
  const { send } = await bedrockPost('/model/echo/converse', body);
  let res = await send();
  assert.equal(res.status, 200);
  assert.equal((await res.json()).output.message.content[0].text, 'hello world');
  res = await send(body.replace('hello', 'jello'));
  assert.equal(res.status, 403);
  assert.match(res.headers.get('x-amzn-errortype'), /^InvalidSignatureException/);
  const wrong = await bedrockPost('/model/echo/converse', body, { secretAccessKey: 'nope' });
  res = await wrong.send();
  assert.equal(res.status, 403);
  const region = await bedrockPost('/model/echo/converse', body, { region: 'us-west-2' });
  assert.equal((await region.send()).status, 403);
  res = await fetch(`${bed.url}/model/echo/converse`, { method: 'POST', body });
  assert.equal(res.status, 403);
  assert.match(res.headers.get('x-amzn-errortype'), /^MissingAuthenticationTokenException/);
});

async function decodeStream(model) {
  const body = JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'hello world' }] }] });
  const { send } = await bedrockPost(`/model/${model}/converse-stream`, body);
  const res = await send();
  assert.equal(res.headers.get('content-type'), 'application/vnd.amazon.eventstream');
  let buf = Buffer.from(await res.arrayBuffer());
  const events = [];
  while (buf.length >= 4) {
    const len = buf.readUInt32BE(0);
    events.push(codec.decode(buf.subarray(0, len))); // throws on a bad CRC
    buf = buf.subarray(len);
  }
  return events.map((e) => [e.headers[':event-type']?.value ?? e.headers[':exception-type']?.value, JSON.parse(toUtf8(e.body))]);
}

test('bedrock fake: ConverseStream decodes with the AWS codec; a bad CRC does not', async () => {
  const events = await decodeStream('stream-2');
  assert.deepEqual(events.map((e) => e[0]), ['messageStart', 'contentBlockDelta', 'contentBlockDelta', 'contentBlockStop', 'messageStop', 'metadata']);
  assert.deepEqual(events.at(-1)[1].usage, { inputTokens: 2, outputTokens: 2, totalTokens: 4 });
  await assert.rejects(decodeStream('bad-crc'), /checksum/i);
});

test('fakes: a malformed body (null message / block) gets a 400 naming it, not a crash', async () => {
  const res = await fetch(`${anth.url}/v1/messages`, { method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'echo', max_tokens: 5, messages: [{ role: 'user', content: [null] }] }) });
  assert.equal(res.status, 400);
  assert.match((await res.json()).error.message, /messages\.0\.content\.0/);
  for (const bad of [[null], [{ role: 'user', content: [{ toolUse: null }] }]]) {
    const { send } = await bedrockPost('/model/echo/converse', JSON.stringify({ messages: bad }));
    const r = await send();
    assert.equal(r.status, 400);
    assert.match(r.headers.get('x-amzn-errortype'), /^ValidationException/);
    assert.match((await r.json()).message, /^messages\.0/);
  }
});

// --- Secret stores: AWS Secrets Manager + SSM Parameter Store, Vault -------------------------

const KEY = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
let aws, vault;
const clients = [];
before(async () => {
  aws = await startAwsSecretsFake();
  vault = await startVaultFake({ approle: { roleId: 'role-1', secretId: 'secret-1' } });
});
after(async () => {
  for (const c of clients) c.destroy();
  await aws?.close();
  await vault?.close();
});

// maxAttempts 1: an error must come back as the fake sent it, not after SDK retries.
function sdk(Client, { credentials = KEY, url = aws.url } = {}) {
  const c = new Client({ region: 'us-east-1', endpoint: url, credentials, maxAttempts: 1 });
  clients.push(c);
  return c;
}

test('aws-secrets fake: the SDK reads a secret by name, ARN and partial ARN, by stage, and binary', async () => {
  const first = aws.setSecret('stratus/openai', 'sk-one');
  const sm = sdk(SecretsManagerClient);
  let r = await sm.send(new GetSecretValueCommand({ SecretId: 'stratus/openai' }));
  assert.equal(r.SecretString, 'sk-one');
  assert.equal(r.Name, 'stratus/openai');
  assert.match(r.ARN, /^arn:aws:secretsmanager:us-east-1:123456789012:secret:stratus\/openai-[A-Za-z0-9]{6}$/);
  assert.deepEqual(r.VersionStages, ['AWSCURRENT']);
  assert.equal(r.VersionId, first.versionId);
  assert.ok(r.CreatedDate instanceof Date && Math.abs(r.CreatedDate - Date.now()) < 60000);
  aws.setSecret('stratus/openai', 'sk-two');
  for (const id of [first.arn, first.arn.slice(0, -7)])
    assert.equal((await sm.send(new GetSecretValueCommand({ SecretId: id }))).SecretString, 'sk-two');
  r = await sm.send(new GetSecretValueCommand({ SecretId: 'stratus/openai', VersionStage: 'AWSPREVIOUS' }));
  assert.equal(r.SecretString, 'sk-one');
  r = await sm.send(new GetSecretValueCommand({ SecretId: 'stratus/openai', VersionId: first.versionId }));
  assert.equal(r.SecretString, 'sk-one');
  aws.setSecret('stratus/blob', { binary: Buffer.from([0, 1, 2, 255]) });
  r = await sm.send(new GetSecretValueCommand({ SecretId: 'stratus/blob' }));
  assert.deepEqual(Buffer.from(r.SecretBinary), Buffer.from([0, 1, 2, 255]));
  assert.equal(r.SecretString, undefined);
  assert.ok(aws.count('secretsmanager.GetSecretValue') >= 5);
  assert.ok(aws.requests.every((q) => q.signatureOk));
});

test('aws-secrets fake: the SDK reads SSM parameters; a SecureString is ciphertext unless decrypted', async () => {
  aws.setParameter('/stratus/anthropic', 'sk-ant-plain');
  aws.setParameter('/stratus/region', 'eu-west-1', 'String');
  aws.setParameter('/stratus/hosts', ['a', 'b'], 'StringList');
  const ssm = sdk(SSMClient);
  let r = await ssm.send(new GetParameterCommand({ Name: '/stratus/anthropic', WithDecryption: true }));
  assert.equal(r.Parameter.Value, 'sk-ant-plain');
  assert.equal(r.Parameter.Type, 'SecureString');
  assert.equal(r.Parameter.Version, 1);
  assert.equal(r.Parameter.ARN, 'arn:aws:ssm:us-east-1:123456789012:parameter/stratus/anthropic');
  assert.ok(r.Parameter.LastModifiedDate instanceof Date);
  r = await ssm.send(new GetParameterCommand({ Name: '/stratus/anthropic', WithDecryption: false }));
  assert.notEqual(r.Parameter.Value, 'sk-ant-plain');
  assert.match(r.Parameter.Value, /^AQICAH[A-Za-z0-9+/]+=*$/);
  assert.ok(!Buffer.from(r.Parameter.Value, 'base64').toString('latin1').includes('sk-ant'));
  assert.equal((await ssm.send(new GetParameterCommand({ Name: '/stratus/region' }))).Parameter.Value, 'eu-west-1');
  assert.equal((await ssm.send(new GetParameterCommand({ Name: '/stratus/hosts' }))).Parameter.Value, 'a,b');
  aws.setParameter('/stratus/anthropic', 'sk-ant-2');
  r = await ssm.send(new GetParameterCommand({ Name: '/stratus/anthropic:1', WithDecryption: true }));
  assert.equal(r.Parameter.Value, 'sk-ant-plain');
  assert.equal(r.Parameter.Selector, ':1');
  r = await ssm.send(new GetParameterCommand({ Name: 'arn:aws:ssm:us-east-1:123456789012:parameter/stratus/anthropic', WithDecryption: true }));
  assert.equal(r.Parameter.Value, 'sk-ant-2');
  aws.setSecret('stratus/viassm', 'sk-through-ssm');
  r = await ssm.send(new GetParameterCommand({ Name: '/aws/reference/secretsmanager/stratus/viassm', WithDecryption: true }));
  assert.equal(r.Parameter.Value, 'sk-through-ssm');
  await assert.rejects(ssm.send(new GetParameterCommand({ Name: '/aws/reference/secretsmanager/stratus/viassm' })),
    (e) => e.name === 'ValidationException' && /WithDecryption/.test(e.message));
});

test('aws-secrets fake: wrong key, unknown key id, missing secret and parameter are the SDK errors AWS gives', async () => {
  aws.setSecret('stratus/openai', 'sk-x');
  aws.setParameter('/stratus/anthropic', 'sk-ant-x');
  const status400 = (name) => (e) => { assert.equal(e.name, name); assert.equal(e.$metadata.httpStatusCode, 400); return true; };
  await assert.rejects(sdk(SecretsManagerClient, { credentials: { ...KEY, secretAccessKey: 'wrong' } })
    .send(new GetSecretValueCommand({ SecretId: 'stratus/openai' })), status400('InvalidSignatureException'));
  await assert.rejects(sdk(SSMClient, { credentials: { ...KEY, secretAccessKey: 'wrong' } })
    .send(new GetParameterCommand({ Name: '/stratus/anthropic' })), status400('InvalidSignatureException'));
  await assert.rejects(sdk(SSMClient, { credentials: { ...KEY, accessKeyId: 'AKIDUNKNOWN' } })
    .send(new GetParameterCommand({ Name: '/stratus/anthropic' })), status400('UnrecognizedClientException'));
  await assert.rejects(sdk(SecretsManagerClient).send(new GetSecretValueCommand({ SecretId: 'nope' })), (e) => {
    status400('ResourceNotFoundException')(e);
    assert.equal(e.message, "Secrets Manager can't find the specified secret.");
    return true;
  });
  await assert.rejects(sdk(SSMClient).send(new GetParameterCommand({ Name: '/nope', WithDecryption: true })), status400('ParameterNotFound'));
  await assert.rejects(sdk(SSMClient).send(new GetParameterCommand({ Name: '/stratus/anthropic:9' })), status400('ParameterVersionNotFound'));
  aws.setSecret('stratus/gone', 'x');
  aws.deleteSecret('stratus/gone');
  await assert.rejects(sdk(SecretsManagerClient).send(new GetSecretValueCommand({ SecretId: 'stratus/gone' })), status400('InvalidRequestException'));
});

test('aws-secrets fake: session credentials must carry their token', async () => {
  const temp = await startAwsSecretsFake({ accessKeyId: 'ASIATEMP', sessionToken: 'session-1' });
  try {
    temp.setSecret('s', 'v');
    const creds = { accessKeyId: 'ASIATEMP', secretAccessKey: KEY.secretAccessKey };
    const ok = await sdk(SecretsManagerClient, { url: temp.url, credentials: { ...creds, sessionToken: 'session-1' } })
      .send(new GetSecretValueCommand({ SecretId: 's' }));
    assert.equal(ok.SecretString, 'v');
    for (const c of [creds, { ...creds, sessionToken: 'session-2' }])
      await assert.rejects(sdk(SecretsManagerClient, { url: temp.url, credentials: c }).send(new GetSecretValueCommand({ SecretId: 's' })),
        (e) => e.name === 'UnrecognizedClientException');
  } finally {
    await temp.close();
  }
});

// A paused fake must refuse a new connection. (A pooled keep-alive socket the client has not
// yet seen closed fails differently — "other side closed", "socket hang up" — a race of the
// client's, which the tests avoid by letting the outage last a moment.)
const connectError = (port) => new Promise((resolve) => {
  const s = net.connect(port, '127.0.0.1');
  s.on('connect', () => { s.destroy(); resolve(null); });
  s.on('error', (e) => resolve(e.code));
});

async function awsRaw(body, sign = {}, alter = (h) => h) {
  const target = sign.target ?? 'secretsmanager.GetSecretValue';
  const headers = alter(await signAwsForTest({ url: aws.url, body, target, ...sign }));
  const res = await fetch(`${aws.url}/`, { method: 'POST', headers, body: sign.sendBody ?? body });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: res.status, json };
}

test('aws-secrets fake: a signed raw request is answered; one changed byte, scope or header is refused', async () => {
  aws.setSecret('stratus/openai', 'sk-raw');
  const body = JSON.stringify({ SecretId: 'stratus/openai' });
  let r = await awsRaw(body);
  assert.equal(r.status, 200);
  assert.equal(r.json.SecretString, 'sk-raw');
  assert.equal(typeof r.json.CreatedDate, 'number');
  const invalid = (res, pattern) => {
    assert.equal(res.status, 400);
    assert.equal(res.json.__type, 'com.amazon.coral.service#InvalidSignatureException');
    if (pattern) assert.match(res.json.message, pattern);
  };
  invalid(await awsRaw(body, { sendBody: body.replace('openai', 'openaj') }), /signature we calculated does not match/);
  invalid(await awsRaw(body, { service: 'ssm' }), /correct service: 'secretsmanager'/);
  invalid(await awsRaw(body, { region: 'eu-west-1' }), /valid region, not 'eu-west-1'/);
  invalid(await awsRaw(body, { signingDate: new Date(Date.now() - 10 * 60 * 1000) }), /^Signature expired/);
  invalid(await awsRaw(body, {}, (h) => ({ ...h, 'content-type': 'application/json' })), /does not match/);
  // A signed payload hash is checked against the body, not trusted.
  invalid(await awsRaw(body, { applyChecksum: true, sendBody: body.replace('openai', 'openaj') }), /x-amz-content-sha256/);
  assert.equal((await awsRaw(body, { applyChecksum: true })).status, 200);
  r = await awsRaw(body, {}, ({ authorization, ...h }) => h);
  assert.equal(r.status, 400);
  assert.equal(r.json.__type, 'com.amazon.coral.service#MissingAuthenticationTokenException');
  r = await awsRaw(body, {}, (h) => ({ ...h, authorization: h.authorization.replace(/, Signature=.*/, '') }));
  assert.equal(r.json.__type, 'com.amazon.coral.service#IncompleteSignatureException');
  r = await awsRaw(body, { target: 'secretsmanager.ListSecrets', service: 'secretsmanager' });
  assert.equal(r.status, 400);
  assert.equal(r.json.__type, 'com.amazon.coral.service#UnknownOperationException');
  r = await awsRaw('{"SecretId":', {});
  assert.equal(r.json.__type, 'com.amazon.coral.service#SerializationException');
  const refused = aws.requests.filter((q) => !q.signatureOk).map((q) => q.error);
  assert.ok(refused.includes('InvalidSignatureException') && refused.includes('MissingAuthenticationTokenException'));
});

test('aws-secrets fake: faults for a number of requests, and pause refuses connections on the same port', async () => {
  aws.setSecret('stratus/openai', 'sk-f');
  const sm = sdk(SecretsManagerClient);
  const get = () => sm.send(new GetSecretValueCommand({ SecretId: 'stratus/openai' }));
  aws.fault('throttle', 1);
  await assert.rejects(get(), (e) => e.name === 'ThrottlingException' && e.$metadata.httpStatusCode === 400);
  assert.equal((await get()).SecretString, 'sk-f');
  aws.fault('unavailable', 1);
  await assert.rejects(get(), (e) => e.name === 'ServiceUnavailableException' && e.$metadata.httpStatusCode === 503);
  aws.fault('internal', 1);
  await assert.rejects(get(), (e) => e.name === 'InternalServiceError' && e.$metadata.httpStatusCode === 500);
  aws.fault('reset', 1);
  await assert.rejects(awsRaw(JSON.stringify({ SecretId: 'stratus/openai' })));
  aws.fault('hang', 1);
  await assert.rejects(fetch(`${aws.url}/`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(300) }), /abort|timeout/i);
  assert.equal((await get()).SecretString, 'sk-f');
  await aws.pause();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await connectError(aws.port), 'ECONNREFUSED');
  await aws.resume();
  assert.equal((await get()).SecretString, 'sk-f');
});

async function vaultGet(path, headers = {}) {
  const res = await fetch(`${vault.url}/v1/${path}`, { headers });
  return { status: res.status, json: await res.json() };
}

test('vault fake: KV v2 reads with the token, versions, and the errors Vault gives', async () => {
  vault.put('secret/stratus/openai', { api_key: 'sk-v1' });
  const root = { 'x-vault-token': 'root-token' };
  let r = await vaultGet('secret/data/stratus/openai', root);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.data.data, { api_key: 'sk-v1' });
  assert.equal(r.json.data.metadata.version, 1);
  assert.equal(r.json.data.metadata.deletion_time, '');
  for (const k of ['request_id', 'lease_id', 'renewable', 'lease_duration', 'wrap_info', 'warnings', 'auth']) assert.ok(k in r.json, k);
  vault.put('secret/stratus/openai', { api_key: 'sk-v2' });
  assert.equal((await vaultGet('secret/data/stratus/openai', { authorization: 'Bearer root-token' })).json.data.data.api_key, 'sk-v2');
  assert.equal((await vaultGet('secret/data/stratus/openai?version=1', root)).json.data.data.api_key, 'sk-v1');
  r = await vaultGet('secret/data/stratus/openai');
  assert.deepEqual([r.status, r.json], [403, { errors: ['permission denied'] }]);
  r = await vaultGet('secret/data/stratus/openai', { 'x-vault-token': 'bad' });
  assert.equal(r.status, 403);
  assert.match(r.json.errors[0], /permission denied[\s\S]*invalid token/);
  r = await vaultGet('secret/data/stratus/missing', root);
  assert.deepEqual([r.status, r.json], [404, { errors: [] }]);
  r = await vaultGet('secret/data/stratus/openai?version=7', root);
  assert.deepEqual([r.status, r.json], [404, { errors: [] }]);
  r = await vaultGet('nomount/data/x', root);
  assert.deepEqual([r.status, r.json], [404, { errors: ['no handler for route "nomount/data/x". route entry not found.'] }]);
  r = await vaultGet('secret/stratus/openai', root); // a KV v1 read on a v2 mount
  assert.equal(r.status, 404);
  assert.equal(r.json.data, null);
  assert.match(r.json.warnings[0], /versioned K\/V/);
  vault.remove('secret/stratus/openai');
  r = await vaultGet('secret/data/stratus/openai', root);
  assert.equal(r.status, 404);
  assert.equal(r.json.data.data, null);
  assert.notEqual(r.json.data.metadata.deletion_time, '');
  await vaultGet('secret/data/stratus/openai', { ...root, 'x-vault-namespace': 'team-a' });
  assert.equal(vault.requests.at(-1).namespace, 'team-a');
  assert.ok(vault.count('secret/data/stratus/openai') >= 6);
  vault.setToken('root-2');
  assert.equal((await vaultGet('secret/data/stratus/missing', root)).status, 403);
  assert.equal((await vaultGet('secret/data/stratus/missing', { 'x-vault-token': 'root-2' })).status, 404);
  vault.setToken('root-token');
});

async function approleLogin(body) {
  const res = await fetch(`${vault.url}/v1/auth/approle/login`, { method: 'POST', body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

test('vault fake: AppRole login issues a token that reads until revoked', async () => {
  vault.put('secret/stratus/anthropic', { api_key: 'sk-ant' });
  let r = await approleLogin({ role_id: 'role-1', secret_id: 'wrong' });
  assert.deepEqual([r.status, r.json], [400, { errors: ['invalid role or secret ID'] }]);
  r = await approleLogin({ secret_id: 'secret-1' });
  assert.deepEqual([r.status, r.json], [400, { errors: ['missing role_id'] }]);
  r = await approleLogin({ role_id: 'role-1', secret_id: 'secret-1' });
  assert.equal(r.status, 200);
  const { client_token: t, lease_duration: ttl, renewable, policies } = r.json.auth;
  assert.match(t, /^hvs\./);
  assert.deepEqual([ttl, renewable, policies], [3600, true, ['default']]);
  r = await vaultGet('secret/data/stratus/anthropic', { 'x-vault-token': t });
  assert.equal(r.json.data.data.api_key, 'sk-ant');
  assert.equal(vault.requests.at(-1).tokenOk, true);
  vault.revokeTokens();
  r = await vaultGet('secret/data/stratus/anthropic', { 'x-vault-token': t });
  assert.equal(r.status, 403);
  assert.equal(vault.requests.at(-1).tokenOk, false);
});

test('vault fake: login tokens expire after tokenTtl; an unconfigured AppRole is no login path', async () => {
  const v = await startVaultFake({ approle: { roleId: 'r', secretId: 's' }, tokenTtl: 1 });
  const bare = await startVaultFake();
  try {
    v.put('secret/x', { k: 'v' });
    const login = await (await fetch(`${v.url}/v1/auth/approle/login`, { method: 'PUT', body: '{"role_id":"r","secret_id":"s"}' })).json();
    const read = () => fetch(`${v.url}/v1/secret/data/x`, { headers: { 'x-vault-token': login.auth.client_token } });
    assert.equal((await read()).status, 200);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await read()).status, 403);
    const post = (headers) => fetch(`${bare.url}/v1/auth/approle/login`, { method: 'POST', headers, body: '{"role_id":"r","secret_id":"s"}' });
    assert.equal((await post({})).status, 403);
    assert.equal((await post({ 'x-vault-token': 'root-token' })).status, 404);
  } finally {
    await v.close();
    await bare.close();
  }
});

test('vault fake: sealed, reset, hang and pause', async () => {
  vault.put('secret/stratus/openai', { api_key: 'sk-f' });
  const root = { 'x-vault-token': 'root-token' };
  vault.fault('unavailable', 1);
  let r = await vaultGet('secret/data/stratus/openai', root);
  assert.deepEqual([r.status, r.json], [503, { errors: ['Vault is sealed'] }]);
  vault.fault('throttle', 1);
  assert.equal((await vaultGet('secret/data/stratus/openai', root)).status, 429);
  vault.fault('reset', 1);
  await assert.rejects(vaultGet('secret/data/stratus/openai', root));
  vault.fault('hang', 1);
  await assert.rejects(fetch(`${vault.url}/v1/secret/data/stratus/openai`, { headers: root, signal: AbortSignal.timeout(300) }));
  assert.equal((await vaultGet('secret/data/stratus/openai', root)).status, 200);
  await vault.pause();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await connectError(vault.port), 'ECONNREFUSED');
  await vault.resume();
  assert.equal((await vaultGet('secret/data/stratus/openai', root)).json.data.data.api_key, 'sk-f');
});
