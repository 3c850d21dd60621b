// Real PostgreSQL and Redis servers for tests, started from Debian's packages
// (postgresql, redis-server; scripts/install-deps installs them) on loopback ports with
// throw-away data directories. PostgreSQL refuses to run as root, so as root it runs as the
// `postgres` system user the package creates.
//
// Nothing started here may outlive the test process: close() is idempotent and always
// removes the data directory, and whatever is still running when the process exits — a
// failed or timed-out test, an after() hook that never ran, an early process.exit, SIGTERM
// from the runner — is stopped synchronously on the way out. (pg_ctl puts the postmaster
// in its own session, so ending the test's process group would not reach it.)
// scripts/run-tests checks afterwards that nothing was left.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

async function waitPort(port, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('connect', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} never opened`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function pgBin() {
  const versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

const live = new Set(); // services not closed yet: each has stopNow(), synchronous
function stopAll() {
  for (const svc of [...live]) {
    try { svc.stopNow(); } catch { /* best effort on the way out */ }
    live.delete(svc);
  }
}
process.on('exit', stopAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { stopAll(); process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1)); });
}

const asRoot = process.getuid?.() === 0;
const run = (cmd, args, opts = {}) => asRoot
  ? execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe', ...opts })
  : execFileSync(cmd, args, { stdio: 'pipe', ...opts });

export async function startPostgres() {
  const bin = pgBin();
  const dir = mkdtempSync(join(tmpdir(), 'stratus-pg-'));
  chmodSync(dir, 0o777);
  const data = join(dir, 'data');
  run(`${bin}/initdb`, ['-D', data, '-A', 'trust', '-U', 'stratus', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
  // pg_ctl waits for the server to be up or down, and signals the postmaster itself (a signal
  // sent to runuser would not reach it).
  const start = async () => {
    run(`${bin}/pg_ctl`, ['-D', data, '-o', opts, '-l', join(dir, 'log'), '-w', 'start']);
    pg.running = true;
    await waitPort(port);
  };
  const pg = {
    url: `postgres://stratus@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      if (!pg.running) return;
      run(`${bin}/pg_ctl`, ['-D', data, '-m', 'fast', '-w', 'stop']);
      pg.running = false;
    },
    start,
    // A role that must give `password` over TCP (scram-sha-256), for store.password tests;
    // every other role stays trusted.
    requirePassword(role, password) {
      pg.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}' SUPERUSER`);
      const hba = join(data, 'pg_hba.conf');
      const rules = readFileSync(hba, 'utf8');
      writeFileSync(hba, `host all ${role} 127.0.0.1/32 scram-sha-256\n${rules}`);
      run(`${bin}/pg_ctl`, ['-D', data, 'reload']);
    },
    query(sql) {
      const out = execFileSync('psql', ['-X', '-A', '-t', '-F', '\t', '-h', '127.0.0.1', '-p', String(port), '-U', 'stratus', '-d', 'postgres', '-c', sql], { encoding: 'utf8' });
      return out.trim() ? out.trim().split('\n').map((l) => l.split('\t')) : [];
    },
    async close() {
      if (!live.has(pg)) return;
      try {
        await pg.stop();
      } finally {
        pg.stopNow();
        live.delete(pg);
      }
    },
    // Synchronous: for the exit handler. An immediate stop, then the directory.
    stopNow() {
      if (pg.running) {
        try { run(`${bin}/pg_ctl`, ['-D', data, '-m', 'immediate', '-w', 'stop']); } catch { /* gone already */ }
        pg.running = false;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(pg);
  try {
    await start();
  } catch (e) {
    await pg.close();
    throw e;
  }
  return pg;
}

export async function startRedis({ password } = {}) {
  const port = await freePort();
  // Its own directory (also how scripts/run-tests recognises a redis-server of ours).
  const dir = mkdtempSync(join(tmpdir(), 'stratus-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--save', '', '--appendonly', 'no', ...(password ? ['--requirepass', password] : [])], { stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  const running = () => child.exitCode === null && child.signalCode === null;
  const redis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    // Idempotent: a test may stop Redis on purpose, and after() closes it again.
    async close() {
      if (running()) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
      live.delete(redis);
    },
    stopNow() {
      if (running()) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(redis);
  try {
    await waitPort(port);
  } catch (e) {
    await redis.close();
    throw e;
  }
  return redis;
}
