// A resource server for idgate's e2e tests: GET /whoami with `Authorization: Bearer <JWT>`
// verifies the access token against the provider's JWKS (its jwks_uri, trusting `ca_file`),
// its iss and aud, and answers 200 {"sub","client_id","scope","aud","exp"}; 401 {"error",
// "reason"} otherwise. HTTPS with tls_cert/tls_key, plain HTTP without.
// Usage: node resource.mjs CONFIG.json. Prints `ready` on stdout once listening, one line per
// request on stderr, and exits on SIGTERM.
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as dns from 'node:dns';

import { createRemoteJWKSet, customFetch, jwtVerify } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
if (!config.issuer || !config.audience || !config.jwks_uri || !config.port) {
  throw new Error('the configuration needs issuer, audience, jwks_uri and port');
}
const ca = config.ca_file ? readFileSync(config.ca_file) : undefined;
// Optional {"host name": "address"}: network namespaces have no resolver of their own.
const resolve = config.resolve ?? {};

function log(line) {
  process.stderr.write(`resource: ${line}\n`);
}

function lookup(hostname, options, callback) {
  const address = resolve[hostname];
  if (address === undefined) {
    return dns.lookup(hostname, options, callback);
  }
  const family = address.includes(':') ? 6 : 4;
  return options?.all ? callback(null, [{ address, family }]) : callback(null, address, family);
}

// jose's fetch of the JWKS, over node's https with the test CA.
function fetchWithCa(url, { headers, signal }) {
  return new Promise((resolvePromise, reject) => {
    const req = https.get(url, { ca, lookup, headers: Object.fromEntries(headers), signal }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolvePromise(new Response(Buffer.concat(chunks), { status: res.statusCode, headers: { 'content-type': res.headers['content-type'] ?? 'application/json' } })));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

const jwks = createRemoteJWKSet(new URL(config.jwks_uri), { [customFetch]: fetchWithCa });

function answer(res, status, body) {
  const text = JSON.stringify(body);
  const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
  if (status === 401) {
    headers['www-authenticate'] = `Bearer error="invalid_token", error_description=${JSON.stringify(body.reason ?? '')}`;
  }
  res.writeHead(status, headers);
  res.end(text);
}

async function handle(req, res) {
  const path = new URL(req.url, 'http://x').pathname;
  if (path !== '/whoami') {
    return answer(res, 404, { error: 'not_found' });
  }
  if (req.method !== 'GET') {
    return answer(res, 405, { error: 'method_not_allowed' });
  }
  const match = /^Bearer +([^ ]+) *$/i.exec(req.headers.authorization ?? '');
  if (!match) {
    log(`GET /whoami 401 no bearer token`);
    return answer(res, 401, { error: 'invalid_token', reason: 'no bearer token' });
  }
  try {
    const { payload } = await jwtVerify(match[1], jwks, {
      issuer: config.issuer,
      audience: config.audience,
      typ: 'at+jwt',
      requiredClaims: ['sub', 'exp'],
    });
    const { sub, client_id: clientId, scope, aud, exp } = payload;
    log(`GET /whoami 200 sub=${sub} client_id=${clientId} scope=${scope ?? ''}`);
    return answer(res, 200, { sub, client_id: clientId, scope: scope ?? null, aud, exp });
  } catch (err) {
    const reason = `${err.code ?? err.name}: ${err.message}`;
    log(`GET /whoami 401 ${reason}`);
    return answer(res, 401, { error: 'invalid_token', reason });
  }
}

const handler = (req, res) => {
  req.resume();
  handle(req, res).catch((err) => {
    log(`error: ${err.stack ?? err}`);
    answer(res, 500, { error: 'server_error' });
  });
};
const server = config.tls_cert
  ? https.createServer({ cert: readFileSync(config.tls_cert), key: readFileSync(config.tls_key) }, handler)
  : http.createServer(handler);
server.listen(config.port, config.listen ?? '0.0.0.0', () => {
  log(`listening on ${config.listen ?? '0.0.0.0'}:${config.port} (${config.tls_cert ? 'https' : 'http'}), issuer ${config.issuer}, audience ${config.audience}`);
  process.stdout.write('ready\n');
});

process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
process.on('SIGINT', () => process.exit(0));
