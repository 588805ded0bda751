// A real OpenID provider (panva's oidc-provider) on loopback, for hoist's
// sign-in tests. Usage: node server.mjs --port N [--stop-on-stdin-eof]
//   [--mount /TENANT/v2.0] [--graph URL] [--device-ttl SECS]
//
// A device code lives --device-ttl seconds (default 600).
//
// With --mount the provider lives under that path, as an Entra tenant's
// authority does (`{authority}/{tenant}/v2.0`), and names it in its issuer.
// With --graph it also issues JWT access tokens for that resource, as Entra
// does for Microsoft Graph: `aud` the resource, `scp` the granted scopes
// by their short names, `upn` and `name`, and `acrs` when the sign-in asked
// for an authentication context with a `claims` parameter.
//
// Workloads: clients `deploy-bot`, `other-bot` and `k8s-deployer` (secret
// `workload-secret`, client_secret_post) get JWT access tokens with the
// client credentials grant, as a CI system or a cluster mints workload
// identity tokens: `sub` the client id, `aud` the `resource` asked for
// (any https URL under `https://hoist.test/`), a fresh `jti`, and the claims
// given as JSON in the `workload_claims` parameter (repository, ref, run_id,
// ...); `workload_ttl` sets the token's life in seconds. `"jti": null` in
// those claims leaves the token without a `jti`, as some issuers do.
//
// A test changes someone's groups as an administrator would at the
// provider: PUT /_directory/NAME with a JSON array of group names, at the
// origin (outside any mount). Tokens issued after it carry the new groups.
//
// A test makes the token endpoint busy, as a proxy in front of a provider
// in trouble would: PUT /_outage/STATUS (503, 429, ...) answers every token
// request with that status and an HTML page; PUT /_outage/0 ends it.
// PUT /_device_outage/STATUS does the same to device authorization requests.
//
// A test slows the token endpoint's answers: PUT /_slow/MS holds each
// token response for MS milliseconds after the provider made it (a refresh
// token is spent by then, as it is when the answer is lost on the way);
// PUT /_slow/0 ends it.
//
// A test decides whether a refresh's answer carries an ID token, which
// OpenID Connect leaves to the provider: PUT /_refresh_id_token/always (as
// oidc-provider does, the default), /asked (only when the refresh names
// `openid` in its scope, as some providers do), /never, or /away (as
// /asked, but a refresh that names `openid` is answered 503, its refresh
// token spent: a provider lost mid-renewal).
//
// GET /_token_requests answers how many token requests it has had.
// GET /_refresh_tokens answers the refresh tokens it has issued, in order.
//
// Prints exactly one line, `READY http://127.0.0.1:N`, to stdout once it is
// listening; everything else goes to stderr so a harness can read the port.

import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

// oidc-provider's notices use console.info; keep stdout for the READY line.
console.log = console.error;
console.info = console.error;

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    mount: { type: 'string', default: '' },
    graph: { type: 'string', default: '' },
    'device-ttl': { type: 'string', default: '600' },
    'stop-on-stdin-eof': { type: 'boolean', default: false },
  },
});

const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`server.mjs: --port must be 0..65535, got ${args.port}`);
  process.exit(2);
}

const deviceTtl = Number(args['device-ttl']);
if (!Number.isInteger(deviceTtl) || deviceTtl <= 0) {
  console.error(`server.mjs: --device-ttl must be a positive integer, got ${args['device-ttl']}`);
  process.exit(2);
}

const tokenTtl = Number(process.env.OIDC_TOKEN_TTL ?? '300');
if (!Number.isInteger(tokenTtl) || tokenTtl <= 0) {
  console.error(`server.mjs: OIDC_TOKEN_TTL must be a positive integer, got ${process.env.OIDC_TOKEN_TTL}`);
  process.exit(2);
}

// The directory behind the test accounts: any login name signs in, and these
// names carry the groups that hoist's policies are written against.
const GROUPS = {
  alice: ['engineers'],
  bob: ['engineers', 'prod-approvers'],
  carol: ['engineers', 'oncall'],
  dave: ['engineers', 'prod-approvers'],
  erin: ['auditors'],
};

// A login `name#anything` is someone else who calls themselves `name`: the
// whole login is their `sub`, and `name` their user name and groups. The
// broker's tests sign in so to claim another person's name.
function account(login) {
  const name = login.split('#')[0];
  return {
    accountId: login,
    async claims() {
      return {
        sub: login,
        preferred_username: name,
        groups: GROUPS[name] ?? [],
      };
    },
  };
}

const client = (clientId) => ({
  client_id: clientId,
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  grant_types: [
    'urn:ietf:params:oauth:grant-type:device_code',
    'authorization_code',
    'refresh_token',
  ],
  response_types: ['code'],
  // Every ID token says when the person signed in, as the providers hoist
  // meets do, so a role's step-up can weigh it.
  require_auth_time: true,
  // Native loopback redirects match on any port (RFC 8252 section 7.3).
  redirect_uris: ['http://127.0.0.1/callback'],
});

// A fresh signing key per process: a token from one provider never verifies
// against another's JWKS. Generated as PEM and exported to JWK from a key
// object of its own: on Node 20, exporting the generated key object itself
// deadlocks now and then (the export holds the key's lock while a garbage
// collection destroys the generation job, which takes the same lock).
const { privateKey: pem } = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});
const signingKey = { ...createPrivateKey(pem).export({ format: 'jwk' }), use: 'sig', alg: 'RS256' };

const mount = args.mount.replace(/\/+$/, '');
if (mount && !/^(\/[A-Za-z0-9._-]+)+$/.test(mount)) {
  console.error(`server.mjs: --mount must be a path such as /contoso.example/v2.0, got ${args.mount}`);
  process.exit(2);
}
const graph = args.graph.replace(/\/+$/, '');

// The delegated Graph scopes an Entra app registration can be granted, as
// the client asks for them: prefixed with the resource.
const GRAPH_SCOPES = [
  'User.Read',
  'RoleEligibilitySchedule.Read.Directory',
  'RoleAssignmentSchedule.ReadWrite.Directory',
  'RoleManagementPolicy.Read.Directory',
  'PrivilegedEligibilitySchedule.Read.AzureADGroup',
  'PrivilegedAssignmentSchedule.ReadWrite.AzureADGroup',
  'RoleManagementPolicy.Read.AzureADGroup',
];

// The `acrs` values a `claims` request asks for in the access token.
function requestedAcrs(claims) {
  try {
    const acrs = JSON.parse(claims)?.access_token?.acrs;
    if (!acrs) return [];
    return [acrs.value, ...(acrs.values ?? [])].filter((v) => typeof v === 'string');
  } catch {
    return [];
  }
}

const resourceIndicators = {
  enabled: true,
  defaultResource: () => graph || undefined,
  useGrantedResource: () => Boolean(graph),
  getResourceServerInfo: (ctx, resource, oidcClient) => {
    if (graph && resource === graph) {
      return {
        scope: GRAPH_SCOPES.map((s) => `${graph}/${s}`).join(' '),
        audience: graph,
        accessTokenFormat: 'jwt',
        accessTokenTTL: tokenTtl,
        jwt: { sign: { alg: 'RS256' } },
      };
    }
    if (resource.startsWith(WORKLOAD_RESOURCES) && oidcClient.grantTypeAllowed('client_credentials')) {
      return {
        scope: '',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: workloadTtl(ctx),
        jwt: { sign: { alg: 'RS256' } },
      };
    }
    throw new Error(`unknown resource ${resource}`);
  },
};


const workloadClient = (clientId) => ({
  client_id: clientId,
  client_secret: 'workload-secret',
  token_endpoint_auth_method: 'client_secret_post',
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
});

const WORKLOAD_RESOURCES = 'https://hoist.test/';

// The token endpoint's own parameters, from the form itself: the provider
// keeps only those it knows in `params`.
const workloadParam = (ctx, name) => ctx?.oidc?.params?.[name] ?? ctx?.oidc?.body?.[name];

function workloadTtl(ctx) {
  const ttl = Number(workloadParam(ctx, 'workload_ttl') ?? '');
  return Number.isInteger(ttl) && ttl > 0 ? ttl : tokenTtl;
}

function workloadClaims(ctx) {
  try {
    const claims = JSON.parse(workloadParam(ctx, 'workload_claims') ?? '{}');
    return claims && typeof claims === 'object' && !Array.isArray(claims) ? claims : {};
  } catch {
    return {};
  }
}

const configuration = {
  clients: [
    client('hoist'),
    client('other-app'),
    workloadClient('deploy-bot'),
    workloadClient('other-bot'),
    workloadClient('k8s-deployer'),
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },

  async findAccount(_ctx, sub) {
    return account(sub);
  },

  // `openid` alone carries the identity claims, so they land in every
  // ID token whatever else the client asks for; `profile` and `groups` are
  // accepted too for clients that ask the conventional way.
  claims: {
    openid: ['sub', 'preferred_username', 'groups'],
    profile: ['preferred_username'],
    groups: ['groups'],
  },
  // Without this the ID token would hold only `sub` whenever an access token
  // is issued too, the rest being left to the userinfo endpoint.
  conformIdTokenClaims: false,

  // A refresh token for every grant of a client allowed to refresh, whether
  // or not it asked for offline_access (which oidc-provider drops from an
  // authorization request whose prompt lacks consent).
  async issueRefreshToken(_ctx, oidcClient) {
    return oidcClient.grantTypeAllowed('refresh_token');
  },
  // Tokens outlive the browser session that approved them, as a device's do.
  async expiresWithSession() {
    return false;
  },

  pkce: { required: () => true },

  extraParams: ['claims', 'workload_claims', 'workload_ttl'],
  formats: {
    customizers: {
      jwt(ctx, token, jwt) {
        if (token.kind === 'ClientCredentials' && workloadClaims(ctx).jti === null) {
          delete jwt.payload.jti;
        }
      },
    },
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind === 'ClientCredentials') return workloadClaims(ctx);
    if (!graph || token.kind !== 'AccessToken') return undefined;
    {
      const name = String(token.accountId).split('#')[0];
      const code = ctx.oidc.entities.DeviceCode ?? ctx.oidc.entities.AuthorizationCode;
      const acrs = requestedAcrs(code?.params?.claims ?? '');
      const scp = [...(token.scopes ?? [])]
        .filter((s) => s.startsWith(`${graph}/`))
        .map((s) => s.slice(graph.length + 1));
      return {
        scp: scp.join(' '),
        upn: `${name}@contoso.example`,
        name: name.charAt(0).toUpperCase() + name.slice(1),
        ...(acrs.length ? { acrs } : {}),
      };
    }
  },

  features: {
    resourceIndicators,
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
  },

  ttl: {
    AccessToken: tokenTtl,
    IdToken: tokenTtl,
    AuthorizationCode: 60,
    DeviceCode: deviceTtl,
    RefreshToken: 24 * 60 * 60,
    Interaction: 600,
    Session: 24 * 60 * 60,
    Grant: 24 * 60 * 60,
  },
};

// Listen first, so the issuer can name the port the kernel picked.
const server = createServer();
server.on('error', (error) => {
  console.error(`server.mjs: ${error.message}`);
  process.exit(1);
});
await new Promise((resolve) => { server.listen(port, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}${mount}`;

const provider = new Provider(issuer, configuration);
provider.on('server_error', (_ctx, error) => console.error('server.mjs: server_error', error));
const callback = provider.callback();

// PUT /_directory/NAME: sets NAME's groups (see the top of this file).
function setGroups(req, res) {
  const name = decodeURIComponent(req.url.slice('/_directory/'.length));
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    let groups;
    try {
      groups = JSON.parse(body);
    } catch {
      groups = undefined;
    }
    if (!/^[A-Za-z0-9._-]+$/.test(name) || !Array.isArray(groups)
        || !groups.every((g) => typeof g === 'string')) {
      res.statusCode = 400;
      res.end('a name, and a JSON array of group names\n');
      return;
    }
    GROUPS[name] = groups;
    res.statusCode = 204;
    res.end();
  });
}

let outage = 0;
let deviceOutage = 0;
let slow = 0;
let refreshIdToken = 'always';
let tokenRequests = 0;
const refreshTokens = [];

provider.on('grant.success', (ctx) => {
  if (ctx.body?.refresh_token) refreshTokens.push(ctx.body.refresh_token);
  if (ctx.oidc.params.grant_type !== 'refresh_token' || !ctx.body) return;
  const asked = String(ctx.oidc.params.scope ?? '').split(' ').includes('openid');
  if (refreshIdToken === 'away' && asked) {
    ctx.status = 503;
    ctx.type = 'text/html';
    ctx.body = '<html><body>Service Unavailable</body></html>\n';
    return;
  }
  if (refreshIdToken === 'never' || (refreshIdToken !== 'always' && !asked)) {
    delete ctx.body.id_token;
  }
});

server.on('request', (req, res) => {
  if (req.method === 'PUT' && req.url.startsWith('/_directory/')) return setGroups(req, res);
  if (req.method === 'PUT' && req.url.startsWith('/_device_outage/')) {
    deviceOutage = Number.parseInt(req.url.slice('/_device_outage/'.length), 10) || 0;
    res.statusCode = 204;
    res.end();
    return undefined;
  }
  if (req.method === 'PUT' && req.url.startsWith('/_slow/')) {
    slow = Number.parseInt(req.url.slice('/_slow/'.length), 10) || 0;
    res.statusCode = 204;
    res.end();
    return undefined;
  }
  if (req.method === 'GET' && req.url === '/_token_requests') {
    res.setHeader('content-type', 'application/json');
    res.end(`${tokenRequests}\n`);
    return undefined;
  }
  if (req.method === 'GET' && req.url === '/_refresh_tokens') {
    res.setHeader('content-type', 'application/json');
    res.end(`${JSON.stringify(refreshTokens)}\n`);
    return undefined;
  }
  if (req.method === 'POST' && /\/token(\?|$)/.test(req.url)) tokenRequests += 1;
  if (req.method === 'PUT' && req.url.startsWith('/_refresh_id_token/')) {
    const mode = req.url.slice('/_refresh_id_token/'.length);
    if (!['always', 'asked', 'never', 'away'].includes(mode)) {
      res.statusCode = 400;
      res.end('always, asked, never or away\n');
      return undefined;
    }
    refreshIdToken = mode;
    res.statusCode = 204;
    res.end();
    return undefined;
  }
  if (req.method === 'PUT' && req.url.startsWith('/_outage/')) {
    outage = Number.parseInt(req.url.slice('/_outage/'.length), 10) || 0;
    res.statusCode = 204;
    res.end();
    return undefined;
  }
  const busy = req.method !== 'POST' ? 0
    : /\/token(\?|$)/.test(req.url) ? outage
      : /\/device\/auth(\?|$)/.test(req.url) ? deviceOutage : 0;
  if (slow && req.method === 'POST' && /\/token(\?|$)/.test(req.url)) {
    const end = res.end.bind(res);
    const delay = slow;
    res.end = (...args) => {
      setTimeout(() => end(...args), delay);
      return res;
    };
  }
  if (busy) {
    res.statusCode = busy;
    res.setHeader('content-type', 'text/html');
    res.end('<html><body>Service Unavailable</body></html>\n');
    return undefined;
  }
  if (!mount) return callback(req, res);
  // Mounted as a connect-style app would be: the provider sees the path
  // below the mount; anything outside it is not the provider's.
  if (req.url === mount || req.url.startsWith(`${mount}/`) || req.url.startsWith(`${mount}?`)) {
    req.originalUrl = req.url;
    req.url = req.url.slice(mount.length) || '/';
    return callback(req, res);
  }
  res.statusCode = 404;
  res.end();
});

if (args['stop-on-stdin-eof']) {
  // The harness holds our stdin open; if it dies without killing us, we go too.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}

process.stdout.write(`READY ${issuer}\n`);
