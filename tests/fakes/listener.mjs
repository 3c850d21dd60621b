// Listening and faults shared by the secret-store fakes (aws-secrets.mjs, vault.mjs).
//
// pause() closes the listening socket and every open connection, so the next connect() is
// refused — what a client sees when the service's endpoint is unreachable — and resume()
// listens again on the same port, so a client keeps its configured url and sees the service
// come back. Open connections are destroyed, not drained: a keep-alive socket left open would
// let a pooled client keep talking to a "down" service. A client that reuses a pooled socket
// before it has read the close gets a reset ("socket hang up"), not a refusal — the same race
// it has with a real restart; a test that wants the refusal lets the outage last a moment.
import http from 'node:http';

export async function listen(handler, port = 0) {
  const sockets = new Set();
  const server = http.createServer(handler);
  server.keepAliveTimeout = 30000;
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  const start = (p) => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, '127.0.0.1', () => { server.off('error', reject); resolve(); });
  });
  const stop = () => new Promise((resolve) => {
    if (!server.listening) { for (const s of sockets) s.destroy(); return resolve(); }
    server.close(() => resolve());
    for (const s of sockets) s.destroy(); // close() waits for these; hung requests never end
  });
  await start(port);
  const actual = server.address().port;
  return {
    port: actual,
    url: `http://127.0.0.1:${actual}`,
    pause: stop,
    resume: () => (server.listening ? Promise.resolve() : start(actual)),
    close: stop,
  };
}

// A fault that lasts for `times` requests (default: until cleared with fault(null)), so a
// test can fail the first attempt and let the retry through.
export function faultSwitch() {
  let mode = null;
  let left = 0;
  return {
    set(m, times = Infinity) { mode = m ?? null; left = times; },
    take() {
      if (!mode) return null;
      const m = mode;
      if (--left <= 0) mode = null;
      return m;
    },
  };
}

// Node answers 'reset' by destroying the socket mid-request: the client sees ECONNRESET or
// "socket hang up", never an HTTP status.
export function applyTransportFault(mode, req) {
  if (mode === 'hang') return true;
  if (mode === 'reset') { req.socket.destroy(); return true; }
  return false;
}

export async function readBody(req) {
  const parts = [];
  for await (const part of req) parts.push(part);
  return Buffer.concat(parts); // bytes, not a string: a split multi-byte character must survive
}
