// Real PostgreSQL and Redis servers for tests, started from Debian's packages
// (postgresql, redis-server; scripts/install-deps installs them) on loopback ports with
// throw-away data directories. PostgreSQL refuses to run as root, so as root it runs as the
// `postgres` system user the package creates.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, chmodSync, readdirSync } from 'node:fs';
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
    query(sql) {
      const out = execFileSync('psql', ['-X', '-A', '-t', '-F', '\t', '-h', '127.0.0.1', '-p', String(port), '-U', 'stratus', '-d', 'postgres', '-c', sql], { encoding: 'utf8' });
      return out.trim() ? out.trim().split('\n').map((l) => l.split('\t')) : [];
    },
    async close() {
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await start();
  return pg;
}

export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await waitPort(port);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async close() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
