// An OpenID provider for idgate's e2e tests: panva's oidc-provider, configured from a JSON file,
// issuing JWT access tokens by
// - client credentials, clients authenticated with private_key_jwt (RFC 7523) or not at all;
// - OAuth 2.0 token exchange (RFC 8693) of a JWT-SVID, registered with provider.registerGrantType.
// Usage: node provider.mjs CONFIG.json (see README.md). Prints `ready` on stdout once listening,
// one line per token request on stderr, and exits on SIGTERM.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import { calculateJwkThumbprint, createLocalJWKSet, decodeJwt, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import { Provider, errors } from 'oidc-provider';

// oidc-provider prints its notices with console.info: keep stdout for `ready` alone.
console.info = console.error;
console.log = console.error;

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const ttl = config.access_token_ttl ?? 60;
const resource = config.resource;
const exchange = config.token_exchange;
if (!config.issuer || !resource || !config.port) {
  throw new Error('the configuration needs issuer, port and resource');
}

function log(line) {
  process.stderr.write(`idp: ${line}\n`);
}

// The provider's own signing key (a fresh one each start; the resource server reads jwks_uri).
const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const signingJwk = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig' };
signingJwk.kid = await calculateJwkThumbprint(signingJwk);

const clients = (config.clients ?? []).map((c) => {
  const method = c.token_endpoint_auth_method ?? 'private_key_jwt';
  return {
    client_id: c.client_id,
    token_endpoint_auth_method: method,
    ...(method === 'private_key_jwt' ? { token_endpoint_auth_signing_alg: 'ES256', jwks: c.jwks } : {}),
    grant_types: c.grant_types ?? ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    ...(c.scope ? { scope: c.scope } : {}),
  };
});
// Every scope some client may get (the provider refuses a client's scope it does not know, and
// checks a requested scope against the client's only when it knows it).
const scopes = new Set(['openid']);
for (const c of clients) {
  c.scope?.split(' ').filter(Boolean).forEach((s) => scopes.add(s));
}

// The one resource server: tokens for it are JWTs with aud = `resource`, signed ES256, and carry
// only scopes the client is registered for.
function resourceServerInfo(client) {
  return {
    scope: client.scope ?? '',
    audience: resource,
    accessTokenTTL: ttl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'ES256' } },
  };
}

const provider = new Provider(config.issuer, {
  clients,
  jwks: { keys: [signingJwk] },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: [...scopes],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, indicator, client) => {
        if (indicator !== resource) {
          throw new errors.InvalidTarget(`unknown resource (this provider knows ${resource})`);
        }
        return resourceServerInfo(client);
      },
    },
  },
  ttl: {
    AccessToken: () => ttl,
    ClientCredentials: () => ttl,
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});

// RFC 8693 token exchange of a JWT (a JWT-SVID) for an access token whose sub is its subject.
const trustedKeys = exchange ? createLocalJWKSet(exchange.trusted_jwks) : undefined;
const allowedSubjects = new Set(exchange?.allowed_subjects ?? []);

function single(ctx, name) {
  const value = ctx.oidc.params[name];
  if (Array.isArray(value)) {
    if (value.length !== 1) {
      throw new errors.InvalidTarget(`only one ${name} value is supported`);
    }
    return value[0];
  }
  return value;
}

async function tokenExchange(ctx) {
  const { params, client, provider: op } = ctx.oidc;
  for (const name of ['subject_token', 'subject_token_type']) {
    if (!params[name]) {
      throw new errors.InvalidRequest(`missing required parameter '${name}'`);
    }
  }
  if (params.subject_token_type !== JWT_TYPE) {
    throw new errors.InvalidRequest(`subject_token_type must be ${JWT_TYPE}`);
  }
  if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest(`requested_token_type must be ${ACCESS_TOKEN_TYPE}`);
  }
  if (params.actor_token !== undefined) {
    throw new errors.InvalidRequest('actor_token is not supported');
  }

  let claims;
  try {
    ({ payload: claims } = await jwtVerify(params.subject_token, trustedKeys, {
      algorithms: ['ES256'],
      issuer: exchange.trusted_issuer,
      audience: exchange.audience,
      requiredClaims: ['sub', 'exp'],
    }));
  } catch (cause) {
    // The argument is the detail (logged); the description stays "grant request is invalid".
    throw new errors.InvalidGrant(`subject_token: ${cause.code ?? cause.name}: ${cause.message}`);
  }
  if (!allowedSubjects.has(claims.sub)) {
    throw new errors.InvalidGrant(`subject ${claims.sub} is not allowed`);
  }

  const target = single(ctx, 'resource') ?? single(ctx, 'audience') ?? resource;
  for (const name of ['resource', 'audience']) {
    const value = single(ctx, name);
    if (value !== undefined && value !== resource) {
      throw new errors.InvalidTarget(`unknown ${name} (this provider knows ${resource})`);
    }
  }

  const allowedScopes = new Set(client.scope?.split(' '));
  const requested = params.scope ? params.scope.split(' ').filter(Boolean) : [];
  for (const s of requested) {
    if (!allowedScopes.has(s)) {
      throw new errors.InvalidScope('requested scope is not allowed', s);
    }
  }

  const token = new op.AccessToken({
    accountId: claims.sub,
    client,
    gty: 'token_exchange',
    scope: requested.join(' ') || undefined,
  });
  token.resourceServer = new op.ResourceServer(target, resourceServerInfo(client));
  ctx.oidc.entity('AccessToken', token);
  const value = await token.save();

  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: token.tokenType,
    expires_in: token.expiration,
    ...(token.scope ? { scope: token.scope } : {}),
  };
}

provider.registerGrantType(
  TOKEN_EXCHANGE,
  tokenExchange,
  ['audience', 'resource', 'scope', 'requested_token_type', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type'],
  ['audience', 'resource'],
);

// A token exchange with no client authentication and no client_id (the shape of GCP's STS) is
// taken as coming from the public client `token_exchange.default_client_id`, when configured.
const defaultClientId = exchange?.default_client_id;
if (defaultClientId) {
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/token' && ctx.is('application/x-www-form-urlencoded')) {
      const chunks = [];
      let size = 0;
      for await (const chunk of ctx.req) {
        size += chunk.length;
        if (size > 56 * 1024) {
          ctx.throw(413);
        }
        chunks.push(chunk);
      }
      const body = Buffer.concat(chunks).toString('utf8');
      const form = new URLSearchParams(body);
      const authenticated = ['client_id', 'client_assertion', 'client_secret'].some((n) => form.has(n)) || ctx.get('authorization');
      if (form.get('grant_type') === TOKEN_EXCHANGE && !authenticated) {
        form.set('client_id', defaultClientId);
        ctx.request.body = form.toString();
      } else {
        ctx.request.body = body;
      }
    }
    await next();
  });
}

// One line per token request: grant type, client, outcome (never a token).
function claimedClient(ctx) {
  const params = ctx.oidc?.params ?? {};
  if (ctx.oidc?.client) return ctx.oidc.client.clientId;
  if (params.client_id) return params.client_id;
  try {
    if (params.client_assertion) return `${decodeJwt(params.client_assertion).sub} (claimed)`;
  } catch {
    // not a JWT: the error says so
  }
  return '-';
}

provider.on('grant.success', (ctx) => {
  const at = ctx.oidc.entities.AccessToken ?? ctx.oidc.entities.ClientCredentials;
  const sub = at?.accountId ? ` sub=${at.accountId}` : '';
  log(`token grant=${ctx.oidc.params.grant_type} client=${claimedClient(ctx)}${sub} ok scope=${at?.scope ?? ''} ttl=${at?.expiration}`);
});
provider.on('grant.error', (ctx, err) => {
  const detail = err.error_detail ? `; ${err.error_detail}` : '';
  const cause = err.cause?.message && err.cause.message !== err.error_detail ? `; ${err.cause.message}` : '';
  log(`token grant=${ctx.oidc?.params?.grant_type ?? '-'} client=${claimedClient(ctx)} error=${err.error} status=${err.statusCode}`
    + ` (${err.error_description}${detail}${cause})`);
});
provider.on('server_error', (ctx, err) => {
  log(`server_error ${ctx.method} ${ctx.path}: ${err.stack ?? err}`);
});

const server = config.tls_cert
  ? https.createServer({ cert: readFileSync(config.tls_cert), key: readFileSync(config.tls_key) }, provider.callback())
  : http.createServer(provider.callback());
server.listen(config.port, config.listen ?? '0.0.0.0', () => {
  log(`listening on ${config.listen ?? '0.0.0.0'}:${config.port}, issuer ${config.issuer}, token endpoint ${config.issuer.replace(/\/$/, '')}/token`);
  process.stdout.write('ready\n');
});

process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
process.on('SIGINT', () => process.exit(0));
