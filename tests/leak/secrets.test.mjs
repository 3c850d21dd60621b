// Secret stores under valgrind: remote references resolved at start, rotated by the refresh
// thread (a config built off the loop, handed over, swapped in), a refresh that fails, a
// SIGHUP — any leak or memory error (libcurl replies, wiped buffers, the refresh thread's
// configs) makes valgrind exit 99.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFake } from '../fakes/openai.mjs';
import { startAwsSecretsFake } from '../fakes/aws-secrets.mjs';
import { startVaultFake } from '../fakes/vault.mjs';
import { startGateway, config } from '../integration/lib/gateway.mjs';

test('no leaks across secret resolution, scheduled rotation, a failing refresh and SIGHUP', async () => {
  assert.ok(process.env.STRATUS_WRAPPER?.includes('valgrind'), 'run me through scripts/run-tests valgrind');
  const up = await startFake();
  const aws = await startAwsSecretsFake({ accessKeyId: 'AKIDLEAK', secretAccessKey: 'leak-secret' });
  const vault = await startVaultFake({ token: 'hvs.leak', approle: { roleId: 'r', secretId: 's' } });
  aws.setSecret('leak/sm', JSON.stringify({ key: 'sk-leak-1' }));
  aws.setParameter('/leak/p', 'aws-sm:leak/sm#key');
  vault.put('secret/leak', { key: 'sk-vault-1' });
  const gw = await startGateway(config({
    extra: `secrets:\n  refresh_s: 1\n  aws: { region: us-east-1, secrets_manager_url: "${aws.url}", ssm_url: "${aws.url}" }\n` +
      `  vault: { address: "${vault.url}", approle: { role_id: r, secret_id: env:SID } }\n`,
    backends: [{ name: 'a', url: up.url, api_key: 'ssm:/leak/p' }, { name: 'b', url: up.url, api_key: 'vault:secret/leak#key' }],
    models: [{ name: 'a', targets: [{ backend: 'a', model: 'ok' }] }, { name: 'b', targets: [{ backend: 'b', model: 'ok' }] }],
  }), { env: { AWS_ACCESS_KEY_ID: 'AKIDLEAK', AWS_SECRET_ACCESS_KEY: 'leak-secret', SID: 's' } });
  const call = (model) => fetch(`${gw.baseURL}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }] }),
  });
  try {
    assert.equal((await call('a')).status, 200);
    aws.setSecret('leak/sm', JSON.stringify({ key: 'sk-leak-2' }));
    vault.revokeTokens();
    vault.put('secret/leak', { key: 'sk-vault-2' });
    await gw.waitForLog((l) => l.event === 'config_reloaded' && l.cause === 'secrets', 60000);
    assert.equal((await call('b')).status, 200);
    aws.fault('unavailable');
    await gw.waitForLog((l) => l.event === 'secret_refresh_failed', 60000);
    aws.fault(null);
    gw.child.kill('SIGHUP');
    await gw.waitForLog((l) => l.event === 'config_reloaded' && l.cause === 'reload', 60000);
    assert.equal((await call('a')).status, 200);
  } finally {
    await gw.stop('SIGTERM');
    await up.close(); await aws.close(); await vault.close();
  }
  assert.equal(gw.exitCode, 0, gw.stderr.slice(-3000));
});
