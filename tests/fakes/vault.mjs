// A fake HashiCorp Vault for integration tests of vault: secret references. It speaks Vault's
// real HTTP API for the two things a client of a KV v2 store does — read a secret
// (GET /v1/<mount>/data/<path>[?version=N]) and log in with AppRole
// (POST|PUT /v1/auth/approle/login) — with Vault's response envelope and error bodies, and it
// checks the token like Vault: X-Vault-Token or "Authorization: Bearer", the root token or one
// issued by a login that has not expired (tokenTtl seconds) or been revoked.
//
// Statuses and bodies (Vault's own, in the order Vault decides them):
//   no token                                               403 {"errors":["permission denied"]}
//   unknown, expired or revoked token (Vault ≥1.x formats its multierror)
//                                                          403 {"errors":["2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"]}
//     (login is the one path that needs no token; with approle unset it is not a login path,
//     so it gets 403 without a token and 404 no-handler with one, as an unmounted method does)
//   path under no mount                                    404 {"errors":["no handler for route \"<p>\". route entry not found."]}
//   <mount>/<path> without data/ (a KV v1 read on a v2 mount)
//                                                          404 envelope, data null, Vault's
//                                                          "Invalid path for a versioned K/V secrets engine…" warning
//   secret (or ?version) that does not exist               404 {"errors":[]}
//   latest version deleted (remove())                      404 envelope whose data.data is null and
//                                                          metadata.deletion_time is set, as KV v2 answers
//   a method other than GET on a data path                 405 {"errors":[]}
//   login: body not JSON 400; missing role_id/secret_id 400 {"errors":["missing role_id"]};
//          wrong either                                    400 {"errors":["invalid role or secret ID"]}
// X-Vault-Namespace is accepted and recorded (the data is the same in every namespace).
//
// Faults, fault(mode, times), hit every request before the token check:
//   'unavailable'  503 {"errors":["Vault is sealed"]}   'throttle'  429 rate limit quota exceeded
//   'hang'         read the request, never answer       'reset'     destroy the socket
// pause()/resume() make the port refuse connections and then listen on it again.
import crypto from 'node:crypto';
import { listen, faultSwitch, applyTransportFault, readBody } from './listener.mjs';

const KV1_ON_V2 = "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation.";
const INVALID_TOKEN = '2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n';
const randomId = (n) => crypto.randomBytes(n).toString('base64url').replace(/[-_]/g, '').slice(0, n);

export async function startVaultFake({ port = 0, token = 'root-token', approle, tokenTtl = 3600 } = {}) {
  let rootToken = token;
  const issued = new Map(); // client_token → {accessor, expires}
  const mounts = new Map([['secret', new Map()]]); // KV v2 mounts: mount → path → [versions]; a dev server has secret/
  const requests = [];
  const faults = faultSwitch();

  const tokenValid = (t) => {
    if (!t) return false;
    if (t === rootToken) return true;
    const i = issued.get(t);
    return !!i && i.expires > Date.now();
  };

  // The longest mount that prefixes the path, as Vault's router matches mounts.
  const mountOf = (path) => {
    let best = null;
    for (const m of mounts.keys()) if ((path === m || path.startsWith(`${m}/`)) && (!best || m.length > best.length)) best = m;
    return best;
  };

  const envelope = (fields) => ({ request_id: crypto.randomUUID(), lease_id: '', renewable: false, lease_duration: 0,
    data: null, wrap_info: null, warnings: null, auth: null, ...fields });
  const metadata = (v) => ({ created_time: v.created, custom_metadata: null, deletion_time: v.deleted ?? '', destroyed: false, version: v.version });

  function login(body, send) {
    const b = body ?? {};
    if (!b.role_id) return send(400, { errors: ['missing role_id'] });
    if (!b.secret_id) return send(400, { errors: ['missing secret_id'] });
    if (b.role_id !== approle.roleId || b.secret_id !== approle.secretId) return send(400, { errors: ['invalid role or secret ID'] });
    const clientToken = `hvs.${randomId(24)}`;
    const accessor = randomId(24);
    issued.set(clientToken, { accessor, expires: Date.now() + tokenTtl * 1000 });
    send(200, envelope({ auth: { client_token: clientToken, accessor, policies: ['default'], token_policies: ['default'],
      metadata: { role_name: approle.roleName ?? 'stratus' }, lease_duration: tokenTtl, renewable: true,
      entity_id: crypto.randomUUID(), token_type: 'service', orphan: true, mfa_requirement: null, num_uses: 0 } }));
  }

  function readKv(method, mount, rest, query, send) {
    if (!rest.startsWith('data/')) return send(404, envelope({ warnings: [KV1_ON_V2] }));
    if (method !== 'GET') return send(405, { errors: [] });
    const versions = mounts.get(mount).get(rest.slice('data/'.length));
    const want = Number(query.get('version') ?? 0);
    const v = versions && (want ? versions.find((x) => x.version === want) : versions.at(-1));
    if (!v) return send(404, { errors: [] });
    if (v.deleted) return send(404, envelope({ data: { data: null, metadata: metadata(v) }, mount_type: '' }));
    send(200, envelope({ data: { data: structuredClone(v.data), metadata: metadata(v) }, mount_type: 'kv' }));
  }

  const handler = async (req, res) => {
    const raw = await readBody(req);
    const url = new URL(req.url, 'http://vault');
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const presented = req.headers['x-vault-token'] ?? bearer;
    const rec = { method: req.method, path: url.pathname, namespace: req.headers['x-vault-namespace'] ?? null,
      tokenOk: tokenValid(presented), status: null };
    requests.push(rec);
    const send = (status, payload) => {
      rec.status = status;
      const text = JSON.stringify(payload);
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };

    const mode = faults.take();
    if (applyTransportFault(mode, req)) return;
    if (mode === 'unavailable') return send(503, { errors: ['Vault is sealed'] });
    if (mode === 'throttle') return send(429, { errors: [`request path "${url.pathname.slice(4)}": rate limit quota exceeded`] });

    if (!url.pathname.startsWith('/v1/')) return send(404, { errors: [] });
    const path = url.pathname.slice(4);
    if (approle && path === 'auth/approle/login' && (req.method === 'POST' || req.method === 'PUT')) {
      let body;
      try { body = raw.length ? JSON.parse(raw.toString('utf8')) : {}; } catch (e) {
        return send(400, { errors: [`failed to parse JSON input: ${e.message}`] });
      }
      return login(body, send);
    }
    if (!rec.tokenOk) return send(403, { errors: [presented ? INVALID_TOKEN : 'permission denied'] });
    const mount = mountOf(path);
    if (!mount) return send(404, { errors: [`no handler for route "${path}". route entry not found.`] });
    return readKv(req.method, mount, path.slice(mount.length + 1), url.searchParams, send);
  };

  // A bug in the fake must not crash the test process: answer as Vault does an internal error.
  const guarded = (req, res) => handler(req, res).catch((e) => {
    if (res.headersSent) return res.destroy();
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: [`fake: ${e.message}`] }));
  });
  const server = await listen(guarded, port);
  const split = (mountAndPath) => {
    const clean = mountAndPath.replace(/^\/+|\/+$/g, '');
    const mount = mountOf(clean) ?? clean.split('/')[0];
    if (!mounts.has(mount)) mounts.set(mount, new Map());
    return [mounts.get(mount), clean.slice(mount.length + 1)];
  };
  return {
    port: server.port,
    url: server.url,
    requests,
    // put('secret/stratus/openai', {api_key: 'sk-1'}): a new version, as a KV v2 write. The
    // first path segment is the mount unless a longer mount already exists (mount('kv/team')).
    put(mountAndPath, fields) {
      const [store, path] = split(mountAndPath);
      if (!path) throw new TypeError('put: need <mount>/<path>');
      const versions = store.get(path) ?? [];
      store.set(path, versions);
      versions.push({ data: structuredClone(fields), version: versions.length + 1, created: new Date().toISOString() });
      return versions.length;
    },
    // Soft-deletes the latest version (DELETE /v1/<mount>/data/<path>): reads get 404 with metadata.
    remove(mountAndPath) {
      const [store, path] = split(mountAndPath);
      const v = store.get(path)?.at(-1);
      if (v) v.deleted = new Date().toISOString();
    },
    mount(name) { if (!mounts.has(name)) mounts.set(name, new Map()); },
    setToken(t) { rootToken = t; },
    revokeTokens() { issued.clear(); },
    // '/v1/secret/data/x' or 'secret/data/x'.
    count: (prefix) => {
      const p = prefix.startsWith('/') ? prefix : `/v1/${prefix}`;
      return requests.filter((r) => r.path.startsWith(p)).length;
    },
    fault: (mode, times) => faults.set(mode, times),
    pause: server.pause,
    resume: server.resume,
    close: server.close,
  };
}
