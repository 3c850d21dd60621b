// A fake AWS Secrets Manager + SSM Parameter Store for integration tests of secret references
// (aws-sm:…, ssm:…). One HTTP server speaks both services' real wire protocol, AWS JSON 1.1:
// POST / with X-Amz-Target (secretsmanager.GetSecretValue, AmazonSSM.GetParameter) and
// Content-Type application/x-amz-json-1.1. It verifies every request's SigV4 signature by
// recomputing it with @smithy/signature-v4 (the AWS SDK's signer) over the bytes received,
// scoped to the service the target belongs to (secretsmanager | ssm), so a wrong key, region,
// service, date or a single changed byte is refused — and the official SDK clients work
// against it unchanged (tests/integration/fakes.test.mjs proves both).
//
// Errors, checked in the order the services' shared front end (coral) checks them. JSON 1.1
// services answer authentication failures with 400, not 403 (SSM's UnrecognizedClientException
// is "Status Code: 400" in SDK logs; DynamoDB emulators that probed the same front end record
// the same order, types and messages), and the front end's own errors carry the
// com.amazon.coral.service# namespace, which clients strip to get the name:
//   not POST, or a Content-Type other than x-amz-json-1.1/json   404 <UnknownOperationException/>
//   body is not JSON                          400 com.amazon.coral.service#SerializationException
//   X-Amz-Target not one of the two above     400 …#UnknownOperationException (also unimplemented ops)
//   no Authorization (or not AWS4-…)          400 …#MissingAuthenticationTokenException
//   Authorization lacks Credential/SignedHeaders/Signature, no X-Amz-Date, bad date format,
//     other algorithm, Credential not 5 parts  400 …#IncompleteSignatureException
//   scope region/service/terminator/date wrong, host unsigned, date > 5 min off
//                                             400 …#InvalidSignatureException
//   unknown access key id; session token missing, wrong or unexpected
//                                             400 …#UnrecognizedClientException
//   x-amz-content-sha256 not the body's hash, or the signature differs
//                                             400 …#InvalidSignatureException
//   missing required member                   400 com.amazon.coral.validate#ValidationException
// Then each service's modelled errors (400, bare __type):
//   secretsmanager  ResourceNotFoundException {Message: "Secrets Manager can't find the specified
//                   secret."} (capital M, as the service sends it); InvalidRequestException for
//                   a secret deleted with deleteSecret()
//   ssm             ParameterNotFound with no message (SSM sends none), ParameterVersionNotFound,
//                   ValidationException when /aws/reference/secretsmanager/… is read without
//                   WithDecryption
//
// Faults, fault(mode, times) — they hit every request before authentication, as an outage or
// the front end's rate limiter would:
//   'unavailable'  503 ServiceUnavailableException     'internal'  500 InternalServiceError
//                  (secretsmanager) / InternalServerError (ssm), each service's modelled 5xx
//   'throttle'     400 ThrottlingException "Rate exceeded"
//   'hang'         read the request, never answer      'reset'  destroy the socket
// pause()/resume() make the port refuse connections and then listen on it again.
import crypto from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { listen, faultSwitch, applyTransportFault, readBody } from './listener.mjs';

export const ACCOUNT = '123456789012';
const CORAL = 'com.amazon.coral.service#';
const SKEW_MS = 5 * 60 * 1000;

// X-Amz-Target → the SigV4 service name its endpoint verifies the scope against.
const OPERATIONS = {
  'secretsmanager.GetSecretValue': 'secretsmanager',
  'AmazonSSM.GetParameter': 'ssm',
};

const epochSeconds = () => Date.now() / 1000;
const sha256hex = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');
const amzDate = (d) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');

function parseAmzDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  return m ? new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : null;
}

// Secrets Manager appends "-" and six random characters to a secret's name in its ARN.
function arnSuffix() {
  const abc = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  return Array.from(crypto.randomBytes(6), (b) => abc[b % abc.length]).join('');
}

// A SecureString read without WithDecryption is the KMS ciphertext blob, base64: it must not
// contain (or decode to) the plaintext, or a client that forgot the flag would pass tests.
function fakeCiphertext(plaintext) {
  const header = Buffer.from([0x01, 0x02, 0x02, 0x00, 0x78]); // what KMS blobs start with ("AQICAH…")
  return Buffer.concat([header, crypto.randomBytes(48 + Buffer.byteLength(plaintext))]).toString('base64');
}

// Verifies SigV4 the way the AWS front end does. Returns null when valid, else [type, message]
// with the front end's type (without namespace) and wording.
async function checkSignature(req, raw, service, { region, accessKeyId, secretAccessKey, sessionToken }) {
  const auth = req.headers.authorization?.trim();
  if (!auth || !auth.startsWith('AWS4-')) return ['MissingAuthenticationTokenException', 'Request is missing Authentication Token'];
  const [algorithm, ...rest] = auth.split(/\s+/);
  const params = {};
  for (const kv of rest.join(' ').split(/[,\s]+/).filter(Boolean)) {
    const eq = kv.indexOf('=');
    if (eq > 0) params[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  let incomplete = '';
  for (const p of ['Credential', 'SignedHeaders', 'Signature'])
    if (!params[p]) incomplete += `Authorization header requires '${p}' parameter. `;
  const xAmzDate = req.headers['x-amz-date'];
  if (!xAmzDate) incomplete += "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ";
  if (incomplete) return ['IncompleteSignatureException', `${incomplete}Authorization=${auth}`];
  const date = parseAmzDate(xAmzDate);
  if (!date) return ['IncompleteSignatureException', `Date must be in ISO-8601 'basic format'. Got '${xAmzDate}'. See http://en.wikipedia.org/wiki/ISO_8601`];
  const now = Date.now();
  if (date.getTime() < now - SKEW_MS)
    return ['InvalidSignatureException', `Signature expired: ${xAmzDate} is now earlier than ${amzDate(new Date(now - SKEW_MS))} (${amzDate(new Date(now))} - 5 min.)`];
  if (date.getTime() > now + SKEW_MS)
    return ['InvalidSignatureException', `Signature not yet current: ${xAmzDate} is still later than ${amzDate(new Date(now + SKEW_MS))} (${amzDate(new Date(now))} + 5 min.)`];
  const signed = params.SignedHeaders.toLowerCase().split(';');
  if (!signed.includes('host')) return ['InvalidSignatureException', "'Host' must be a 'SignedHeader' in the AWS Authorization."];
  if (algorithm !== 'AWS4-HMAC-SHA256') return ['IncompleteSignatureException', `Unsupported AWS 'algorithm': '${algorithm}' (only AWS4-HMAC-SHA256 for now). `];
  const scope = params.Credential.split('/');
  if (scope.length !== 5) return ['IncompleteSignatureException', `Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '${params.Credential}'`];
  const [keyId, day, scopeRegion, scopeService, terminator] = scope;
  let wrongScope = '';
  if (scopeRegion !== region) wrongScope += `Credential should be scoped to a valid region, not '${scopeRegion}'. `;
  if (scopeService !== service) wrongScope += `Credential should be scoped to correct service: '${service}'. `;
  if (terminator !== 'aws4_request') wrongScope += `Credential should be scoped with a valid terminator: 'aws4_request', not '${terminator}'. `;
  if (day !== xAmzDate.slice(0, 8)) wrongScope += `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${day}' != '${xAmzDate.slice(0, 8)}', from '${xAmzDate}'.`;
  if (wrongScope) return ['InvalidSignatureException', wrongScope.trim()];
  if (keyId !== accessKeyId) return ['UnrecognizedClientException', 'The security token included in the request is invalid.'];
  const token = req.headers['x-amz-security-token'];
  if (sessionToken ? token !== sessionToken || !signed.includes('x-amz-security-token') : token !== undefined)
    return ['UnrecognizedClientException', 'The security token included in the request is invalid.'];
  // The signer takes a signed x-amz-content-sha256 on trust as the payload hash; AWS does not,
  // and neither may we, or a changed body under an unchanged header would pass.
  const declared = req.headers['x-amz-content-sha256'];
  if (declared !== undefined && declared !== sha256hex(raw))
    return ['InvalidSignatureException', "The provided 'x-amz-content-sha256' header does not match what was computed."];

  const headers = {};
  for (const h of signed) if (req.headers[h] !== undefined) headers[h] = req.headers[h];
  const [path, query = ''] = req.url.split('?');
  const [hostname, port] = (req.headers.host ?? '').split(':');
  const request = new HttpRequest({
    method: req.method, protocol: 'http:', hostname, port: port ? Number(port) : undefined, path,
    query: Object.fromEntries(new URLSearchParams(query)), headers, body: raw,
  });
  const signer = new SignatureV4({ service, region, sha256: Sha256, applyChecksum: false,
    credentials: { accessKeyId, secretAccessKey, sessionToken } });
  // signableHeaders: sign exactly what the client signed, even headers the SDK never would.
  const expected = await signer.sign(request, { signingDate: date, signableHeaders: new Set(signed) });
  const want = /Signature=([0-9a-f]{64})/.exec(expected.headers.authorization)[1];
  const got = Buffer.from(params.Signature);
  if (got.length !== want.length || !crypto.timingSafeEqual(got, Buffer.from(want)))
    return ['InvalidSignatureException', 'The request signature we calculated does not match the signature you provided. '
      + 'Check your AWS Secret Access Key and signing method. Consult the service documentation for details.'];
  return null;
}

export async function startAwsSecretsFake({ port = 0, region = 'us-east-1', accessKeyId = 'AKIDEXAMPLE',
  secretAccessKey = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken } = {}) {
  const creds = { region, accessKeyId, secretAccessKey, sessionToken };
  const requests = [];
  const faults = faultSwitch();
  const secrets = new Map(); // name → {name, arn, deleted, versions: [{id, string?, binary?, created, stages}]}
  const parameters = new Map(); // name → {name, type, versions: [{value, version, modified, ciphertext}]}

  const secretArnPrefix = `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:`;
  const parameterArn = (name) => `arn:aws:ssm:${region}:${ACCOUNT}:parameter${name.startsWith('/') ? '' : '/'}${name}`;

  // A SecretId is a name, a full ARN, or a partial ARN (the full one without "-XXXXXX").
  function findSecret(id) {
    if (id.startsWith('arn:')) {
      for (const s of secrets.values()) if (s.arn === id || s.arn.slice(0, -7) === id) return s;
      return null;
    }
    return secrets.get(id) ?? null;
  }

  function getSecretValue(body) {
    const s = findSecret(body.SecretId);
    if (!s) return [400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret."];
    if (s.deleted) return [400, 'InvalidRequestException', "You can't perform this operation on the secret because it was marked for deletion."];
    let v;
    if (body.VersionId !== undefined) {
      v = s.versions.find((x) => x.id === body.VersionId);
      if (!v) return [400, 'ResourceNotFoundException', `Secrets Manager can't find the specified secret value for VersionId: ${body.VersionId}`];
      if (body.VersionStage !== undefined && !v.stages.includes(body.VersionStage))
        return [400, 'InvalidRequestException', 'You provided a VersionStage that is not associated to the provided VersionId.'];
    } else {
      const stage = body.VersionStage ?? 'AWSCURRENT';
      v = s.versions.find((x) => x.stages.includes(stage));
      if (!v) return [400, 'ResourceNotFoundException', `Secrets Manager can't find the specified secret value for staging label: ${stage}`];
    }
    const out = { ARN: s.arn, Name: s.name, VersionId: v.id, VersionStages: [...v.stages], CreatedDate: v.created };
    if (v.binary) out.SecretBinary = v.binary.toString('base64'); // a blob member is base64 in JSON
    else out.SecretString = v.string;
    return [200, out];
  }

  function getParameter(body) {
    let name = body.Name;
    // Secrets Manager secrets are readable through SSM under this prefix — only decrypted.
    const ref = '/aws/reference/secretsmanager/';
    if (name.startsWith(ref)) {
      if (body.WithDecryption !== true)
        return [400, 'ValidationException', 'WithDecryption flag must be True for retrieving a Secret Manager secret.'];
      const [status, out] = getSecretValue({ SecretId: name.slice(ref.length) });
      if (status !== 200) return [400, 'ParameterNotFound', "Secrets Manager can't find the specified secret."];
      return [200, { Parameter: { Name: name, Type: 'SecureString', Value: out.SecretString ?? out.SecretBinary, Version: 0,
        SourceResult: JSON.stringify(out), LastModifiedDate: out.CreatedDate, ARN: out.ARN, DataType: 'text' } }];
    }
    let selector;
    if (name.startsWith('arn:')) {
      const prefix = `arn:aws:ssm:${region}:${ACCOUNT}:parameter/`;
      if (!name.startsWith(prefix)) return [400, 'ParameterNotFound'];
      const rest = name.slice(prefix.length);
      name = parameters.has(`/${rest}`) ? `/${rest}` : rest;
    } else {
      // "name:3" selects a version ("name:label" a label, which the fake has none of).
      const colon = name.lastIndexOf(':');
      if (colon > 0) { selector = name.slice(colon); name = name.slice(0, colon); }
    }
    const p = parameters.get(name);
    if (!p) return [400, 'ParameterNotFound'];
    let v = p.versions.at(-1);
    if (selector) {
      if (!/^:\d+$/.test(selector)) return [400, 'ParameterNotFound'];
      v = p.versions.find((x) => x.version === Number(selector.slice(1)));
      if (!v) return [400, 'ParameterVersionNotFound', `Systems Manager could not find version ${selector.slice(1)} of ${name}. Verify the version and try again.`];
    }
    const value = p.type === 'SecureString' && body.WithDecryption !== true ? v.ciphertext : v.value;
    const out = { Name: name, Type: p.type, Value: value, Version: v.version, LastModifiedDate: v.modified, ARN: parameterArn(name), DataType: 'text' };
    if (selector) out.Selector = selector;
    return [200, { Parameter: out }];
  }

  const handlers = {
    'secretsmanager.GetSecretValue': [['SecretId'], getSecretValue],
    'AmazonSSM.GetParameter': [['Name'], getParameter],
  };

  const handler = async (req, res) => {
    const raw = await readBody(req);
    const target = req.headers['x-amz-target'] ?? null;
    let body;
    try { body = raw.length ? JSON.parse(raw.toString('utf8')) : undefined; } catch { body = null; }
    const rec = { target, service: OPERATIONS[target] ?? null, body, headers: req.headers, signatureOk: false, error: null, status: null };
    requests.push(rec);
    const send = (status, payload) => {
      rec.status = status;
      const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
      const headers = { 'x-amzn-requestid': crypto.randomUUID(), 'content-length': Buffer.byteLength(text) };
      if (typeof payload !== 'string') headers['content-type'] = 'application/x-amz-json-1.1';
      res.writeHead(status, headers);
      res.end(text);
    };
    const fail = (status, type, message, { namespace = '', messageKey = 'message' } = {}) => {
      rec.error = type;
      const payload = { __type: `${namespace}${type}` };
      if (message !== undefined) payload[messageKey] = message;
      send(status, payload);
    };
    const coral = (type, message) => fail(400, type, message, { namespace: CORAL });

    const mode = faults.take();
    if (applyTransportFault(mode, req)) return;
    if (mode === 'unavailable') return fail(503, 'ServiceUnavailableException', 'Service Unavailable');
    if (mode === 'internal') return fail(500, rec.service === 'ssm' ? 'InternalServerError' : 'InternalServiceError', 'An internal error occurred.');
    if (mode === 'throttle') return fail(400, 'ThrottlingException', 'Rate exceeded');

    const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim();
    if (req.method !== 'POST' || (raw.length && contentType !== 'application/x-amz-json-1.1' && contentType !== 'application/json')) {
      rec.error = 'UnknownOperationException';
      return send(404, '<UnknownOperationException/>\n');
    }
    if (body === null) return coral('SerializationException');
    if (!rec.service) return coral('UnknownOperationException');
    const bad = await checkSignature(req, raw, rec.service, creds);
    if (bad) return coral(bad[0], bad[1]);
    rec.signatureOk = true;
    if (body === undefined || typeof body !== 'object' || Array.isArray(body)) return coral('SerializationException');

    const [required, run] = handlers[target];
    for (const member of required) {
      if (typeof body[member] !== 'string' || body[member] === '') {
        const lower = member[0].toLowerCase() + member.slice(1);
        return fail(400, 'ValidationException', `1 validation error detected: Value null at '${lower}' failed to satisfy constraint: Member must not be null`,
          { namespace: 'com.amazon.coral.validate#' });
      }
    }
    const [status, out, message] = run(body);
    if (status === 200) return send(200, out);
    // Secrets Manager's modelled errors say "Message"; the front end and SSM say "message".
    return fail(status, out, message, { messageKey: rec.service === 'secretsmanager' ? 'Message' : 'message' });
  };

  // A bug in the fake must not crash the test process: answer as AWS's front end does.
  const guarded = (req, res) => handler(req, res).catch((e) => {
    if (res.headersSent) return res.destroy();
    res.writeHead(500, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(JSON.stringify({ __type: `${CORAL}InternalFailure`, message: `fake: ${e.message}` }));
  });
  const server = await listen(guarded, port);
  return {
    port: server.port,
    url: server.url,
    region,
    requests,
    // value: a string (SecretString) or {binary: Buffer} (SecretBinary). Each call is a new
    // version: it becomes AWSCURRENT and the one before AWSPREVIOUS, as PutSecretValue does.
    setSecret(name, value) {
      let s = secrets.get(name);
      if (!s) { s = { name, arn: `${secretArnPrefix}${name}-${arnSuffix()}`, deleted: false, versions: [] }; secrets.set(name, s); }
      s.deleted = false;
      for (const v of s.versions) v.stages = v.stages.includes('AWSCURRENT') ? ['AWSPREVIOUS'] : [];
      const v = { id: crypto.randomUUID(), created: epochSeconds(), stages: ['AWSCURRENT'] };
      if (typeof value === 'string') v.string = value;
      else if (value && Buffer.isBuffer(value.binary)) v.binary = Buffer.from(value.binary);
      else throw new TypeError('setSecret: value must be a string or {binary: Buffer}');
      s.versions.push(v);
      return { arn: s.arn, versionId: v.id };
    },
    // As DeleteSecret with a recovery window: the secret stays, reads are refused.
    deleteSecret(name) { const s = secrets.get(name); if (s) s.deleted = true; },
    secretArn: (name) => secrets.get(name)?.arn,
    // value: a string, or for StringList an array (stored comma-joined, as SSM returns it).
    setParameter(name, value, type = 'SecureString') {
      if (!['String', 'SecureString', 'StringList'].includes(type)) throw new TypeError(`setParameter: unknown type ${type}`);
      const text = Array.isArray(value) ? value.join(',') : String(value);
      let p = parameters.get(name);
      if (!p) { p = { name, type, versions: [] }; parameters.set(name, p); }
      p.type = type;
      const version = p.versions.length + 1;
      p.versions.push({ value: text, version, modified: epochSeconds(), ciphertext: fakeCiphertext(text) });
      return { version, arn: parameterArn(name) };
    },
    count: (target) => requests.filter((r) => r.target === target).length,
    fault: (mode, times) => faults.set(mode, times),
    pause: server.pause,
    resume: server.resume,
    close: server.close,
  };
}

// Signs a request for the fake with the AWS SDK's signer (tests of the fake itself).
// target picks the operation and, unless service is given, the scope's service.
// signingDate back-dates the signature; applyChecksum signs an x-amz-content-sha256 header.
export async function signAwsForTest({ url, body, target, service = OPERATIONS[target], region = 'us-east-1',
  accessKeyId = 'AKIDEXAMPLE', secretAccessKey = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken,
  signingDate = new Date(), applyChecksum = false }) {
  const u = new URL(url);
  const signer = new SignatureV4({ service, region, sha256: Sha256, applyChecksum,
    credentials: { accessKeyId, secretAccessKey, sessionToken } });
  const signed = await signer.sign(new HttpRequest({
    method: 'POST', protocol: u.protocol, hostname: u.hostname, port: Number(u.port), path: u.pathname || '/',
    headers: { host: u.host, 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': target }, body,
  }), { signingDate });
  return signed.headers;
}
