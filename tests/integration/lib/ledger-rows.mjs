// Puts rows with chosen times into a ledger the supported way: `stratus ledger import`
// (rows and their rollups in one transaction, as the gateway writes them). Writing raw
// rows with SQL would leave the rollups — what reports read — without them.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BIN } from './gateway.mjs';

let files = 0;

// `rows`: objects with at least ts_ms; the rest defaults to a 200 chat request.
export function importRows(configFile, rows, env = {}) {
  const path = join(dirname(configFile), `import-${process.pid}-${files++}.jsonl`);
  writeFileSync(path, rows.map((r) => JSON.stringify({
    request_id: `imported-${r.ts_ms}`, key_id: '', team: '', customer: '', model: 'chat', backend: 'b',
    target_model: 'ok', endpoint: 'chat/completions', status: 200, stream: false, prompt_tokens: 10,
    completion_tokens: 10, cached_tokens: null, estimated: false, cost_usd: null, latency_ms: 1, ttft_ms: 1,
    route: '', guard: '', cache: '', saved_usd: null, ...r,
  })).join('\n') + '\n');
  return execFileSync(BIN, ['ledger', 'import', path, '--config', configFile], {
    encoding: 'utf8', stdio: 'pipe', env: { ...process.env, ...env },
  });
}
