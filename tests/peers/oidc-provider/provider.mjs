// A certified OpenID provider (panva/node-oidc-provider) on loopback, for qlikauth's tests.
//
// Started by tests/peers/oidc_provider.py with one argument: a JSON file holding
//   { host, bind, tls: {cert, key}, admin_token, cookie_keys, keys: [private JWK...],
//     clients: [client metadata...], accounts: {username: {password, claims}} }
// It listens on a free port, then prints one line "READY <port>" on stdout.
//
// Besides the provider's own endpoints it serves
//   GET/POST /interaction/:uid         a plain login form (Chromium and requests can fill it)
//   POST /__admin/configure            replace keys / clients / accounts (key rotation), JSON body
//   POST /__admin/backchannel-logout   {client_id, sub, sid}: the provider sends a logout_token
//   POST /__admin/end-session          {sub}: end every provider session of sub, with back-channel
//                                       logout to each client (what "sign out everywhere" does)
// Admin calls need the header "x-admin-token" (random per run). Everything else is the
// library's behaviour, unchanged: the tests exercise a real provider, not our idea of one.
import { readFileSync } from 'node:fs';
import https from 'node:https';

import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tls = { cert: readFileSync(settings.tls.cert), key: readFileSync(settings.tls.key) };

// An in-memory adapter without the library's 1000-entry LRU cap (a 200-user sign-in storm
// makes more artefacts than that), shared by every Provider instance we build, so sessions
// and grants survive a key rotation exactly as they would with a database.
const storage = new Map();
const sessionsBySub = new Map(); // sub -> Set of session ids (for /__admin/end-session)
class MapAdapter {
  constructor(name) { this.name = name; }
  key(id) { return `${this.name}:${id}`; }
  async upsert(id, payload, expiresIn) {
    const exp = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    storage.set(this.key(id), { payload, exp });
    if (payload.grantId && this.name !== 'Grant') {
      const gk = `grant:${payload.grantId}`;
      const list = storage.get(gk) || { payload: [], exp };
      list.payload.push(this.key(id));
      storage.set(gk, list);
    }
    if (this.name === 'Session' && payload.accountId) {
      if (!sessionsBySub.has(payload.accountId)) sessionsBySub.set(payload.accountId, new Set());
      sessionsBySub.get(payload.accountId).add(id);
    }
    if (payload.uid && this.name === 'Session') storage.set(`sessionUid:${payload.uid}`, { payload: id, exp });
    if (payload.userCode) storage.set(`userCode:${payload.userCode}`, { payload: id, exp });
  }
  get(key) {
    const hit = storage.get(key);
    if (!hit) return undefined;
    if (hit.exp <= Date.now()) { storage.delete(key); return undefined; }
    return hit.payload;
  }
  async find(id) { return this.get(this.key(id)); }
  async findByUid(uid) { const id = this.get(`sessionUid:${uid}`); return id ? this.find(id) : undefined; }
  async findByUserCode(code) { const id = this.get(`userCode:${code}`); return id ? this.find(id) : undefined; }
  async consume(id) { const p = this.get(this.key(id)); if (p) p.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { storage.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    const gk = `grant:${grantId}`;
    for (const k of (storage.get(gk)?.payload || [])) storage.delete(k);
    storage.delete(gk);
  }
}

function html(strings, ...values) {
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return strings.reduce((out, s, i) => out + s + (i < values.length ? esc(values[i]) : ''), '');
}

function build() {
  const provider = new Provider(`https://${settings.host}:${settings.port}`, {
    adapter: MapAdapter,
    clients: settings.clients,
    jwks: { keys: settings.keys },
    cookies: { keys: settings.cookie_keys },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // Claims of the granted scopes go into the id_token too (Entra and Imprivata do this),
    // and the userinfo endpoint returns the same claims.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    responseTypes: ['code'],
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      userinfo: { enabled: true },
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256'],
      clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256'],
    },
    ttl: {
      AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600,
      Session: 3600, Grant: 3600,
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // A first-party client: consent is implied, so the grant covers what was asked.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const found = await ctx.oidc.provider.Grant.find(grantId);
        if (found) return found;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile groups');
      await grant.save();
      return grant;
    },
    async findAccount(ctx, sub) {
      const entry = Object.entries(settings.accounts).find(([, a]) => a.claims.sub === sub);
      if (!entry) return undefined;
      return { accountId: sub, async claims() { return { ...entry[1].claims } } };
    },
    // The provider refuses to call special-use addresses (SSRF protection); the relying party
    // under test lives on loopback, so back-channel logout goes through the plain fetch.
    fetch: (url, options) => { delete options.dispatcher; return globalThis.fetch(url, options); },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  provider.on('backchannel.error', (client, err) => console.error('backchannel.error', client.clientId, err.message));
  provider.on('backchannel.success', (client) => console.error('backchannel.success', client.clientId));
  return provider;
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res, status, body, type = 'text/html; charset=utf-8') {
  res.statusCode = status;
  res.setHeader('content-type', type);
  res.setHeader('cache-control', 'no-store');
  res.end(body);
}

function loginPage(uid, clientId, error) {
  return html`<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign in - test OpenID provider</title></head>
<body><h1>Sign in</h1><p>to <span id="client">${clientId}</span></p>
${error ? html`<p id="error" role="alert">${error}</p>` : ''}
<form id="login" method="post" action="/interaction/${uid}/login">
<label>User name <input name="username" id="username" autocomplete="username"></label>
<label>Password <input name="password" id="password" type="password"></label>
<button type="submit" id="submit">Sign in</button></form></body></html>`;
}

let provider; // built once the port (part of the issuer) is known

async function admin(req, res, path) {
  if (req.method !== 'POST' || req.headers['x-admin-token'] !== settings.admin_token) {
    return send(res, 403, 'forbidden', 'text/plain');
  }
  const body = JSON.parse((await readBody(req)) || '{}');
  if (path === '/__admin/configure') {
    for (const k of ['keys', 'clients', 'accounts']) if (body[k]) settings[k] = body[k];
    provider = build();
    return send(res, 200, JSON.stringify({ ok: true }), 'application/json');
  }
  if (path === '/__admin/backchannel-logout') {
    const client = await provider.Client.find(body.client_id);
    if (!client) return send(res, 404, 'no such client', 'text/plain');
    try {
      await client.backchannelLogout(body.sub, body.sid);
    } catch (err) {
      return send(res, 502, JSON.stringify({ ok: false, error: err.message }), 'application/json');
    }
    return send(res, 200, JSON.stringify({ ok: true }), 'application/json');
  }
  if (path === '/__admin/end-session') {
    const results = [];
    for (const id of sessionsBySub.get(body.sub) || []) {
      const session = await provider.Session.find(id);
      if (!session) continue;
      for (const clientId of Object.keys(session.authorizations || {})) {
        const client = await provider.Client.find(clientId);
        if (!client?.backchannelLogoutUri) continue;
        try {
          await client.backchannelLogout(body.sub, session.sidFor(clientId));
          results.push({ client_id: clientId, ok: true });
        } catch (err) {
          results.push({ client_id: clientId, ok: false, error: err.message });
        }
      }
      await session.destroy();
    }
    sessionsBySub.delete(body.sub);
    return send(res, 200, JSON.stringify({ results }), 'application/json');
  }
  return send(res, 404, 'unknown admin call', 'text/plain');
}

async function interaction(req, res, path) {
  const [, , uid, action] = path.split('/');
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, html`<p>interaction expired or unknown: ${err.message}</p>`);
  }
  if (details.uid !== uid) return send(res, 400, 'interaction mismatch', 'text/plain');
  if (req.method === 'GET' && !action) {
    return send(res, 200, loginPage(uid, details.params.client_id));
  }
  if (req.method === 'POST' && action === 'login') {
    const form = new URLSearchParams(await readBody(req));
    const account = settings.accounts[form.get('username') || ''];
    if (!account || account.password !== form.get('password')) {
      return send(res, 200, loginPage(uid, details.params.client_id, 'Wrong user name or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: account.claims.sub } },
      { mergeWithLastSubmission: false });
  }
  return send(res, 405, 'method not allowed', 'text/plain');
}

const server = https.createServer(tls, (req, res) => {
  const path = new URL(req.url, 'https://x').pathname;
  const handle = path.startsWith('/__admin/') ? admin(req, res, path)
    : path.startsWith('/interaction/') ? interaction(req, res, path)
      : Promise.resolve(provider.callback()(req, res));
  handle.catch((err) => {
    console.error('peer error', err);
    if (!res.headersSent) send(res, 500, 'internal error', 'text/plain');
  });
});

server.listen(0, settings.bind, () => {
  settings.port = server.address().port;
  provider = build();
  process.stdout.write(`READY ${settings.port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
