// A SAML identity provider on another stack (samlify + xml-crypto, Node), for qlikauth's SP tests.
//
//   node idp.js CONFIG.json        (prints "listening PORT" when ready; loopback only)
//
// CONFIG: {"port": 0, "key": "idp.key", "cert": "idp.crt", "entity_id": "...", "sp_metadata": "sp.xml",
//          "users": {"alice": {"name_id": "...", "claims": {"name": ["v1", "v2"]}}}}
// A JSON API instead of a login page (the browser tests use the pysaml2 IdP's page):
//   GET  /metadata                      the IdP's metadata
//   POST /login   {location, user}      the SP's AuthnRequest (Redirect URL) -> {SAMLResponse, RelayState, acs, sessionIndex}
//   POST /logout  {user, sessionIndex}  an IdP-initiated, signed LogoutRequest -> {url}
//   POST /slo     {location}            the SP's LogoutRequest (Redirect URL) -> {url} of the LogoutResponse
'use strict';

const fs = require('fs');
const http = require('http');
const crypto = require('crypto');
const { URL } = require('url');
const samlify = require('samlify');
const validator = require('@authenio/samlify-node-xmllint');

samlify.setSchemaValidator(validator);

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const base = () => `http://127.0.0.1:${server.address().port}`;
let idp = null;
let sp = null;
const sessions = {};

function escapeXml(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function build() {
  idp = samlify.IdentityProvider({
    entityID: config.entity_id || `${base()}/metadata`,
    privateKey: fs.readFileSync(config.key),
    signingCert: fs.readFileSync(config.cert),
    isAssertionEncrypted: false,
    requestSignatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    nameIDFormat: ['urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress'],
    singleSignOnService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: `${base()}/sso` }],
    singleLogoutService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: `${base()}/slo` }],
  });
  sp = samlify.ServiceProvider({
    metadata: fs.readFileSync(config.sp_metadata),
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
    wantMessageSigned: !!config.sign_message,
  });
}

function queryOf(location) {
  const u = new URL(location);
  const query = {};
  for (const [k, v] of u.searchParams) query[k] = v;
  return { query, octetString: u.search.slice(1) };
}

function attributeStatement(claims) {
  const attrs = Object.entries(claims).map(([name, values]) =>
    `<saml:Attribute Name="${escapeXml(name)}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">` +
    values.map((v) => `<saml:AttributeValue xsi:type="xs:string">${escapeXml(v)}</saml:AttributeValue>`).join('') +
    '</saml:Attribute>').join('');
  return `<saml:AttributeStatement>${attrs}</saml:AttributeStatement>`;
}

async function login(body) {
  const user = config.users[body.user];
  if (!user) throw new Error(`unknown user ${body.user}`);
  const { query, octetString } = queryOf(body.location);
  const request = await idp.parseLoginRequest(sp, 'redirect', { query, octetString });
  const sessionIndex = '_' + crypto.randomBytes(16).toString('hex');
  sessions[sessionIndex] = { user: body.user, nameId: user.name_id };
  const now = new Date();
  const later = new Date(now.getTime() + 5 * 60 * 1000);
  const acs = sp.entityMeta.getAssertionConsumerService('post');
  const result = await idp.createLoginResponse(sp, request, 'post', { email: user.name_id }, {
    relayState: query.RelayState,
    customTagReplacement: (template) => {
      const id = '_' + crypto.randomUUID();
      const withStatements = template
        .replace('{AuthnStatement}',
          `<saml:AuthnStatement AuthnInstant="${now.toISOString()}" SessionIndex="${sessionIndex}">` +
          '<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport' +
          '</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>')
        .replace('{AttributeStatement}', attributeStatement(user.claims || {}));
      const context = samlify.SamlLib.replaceTagsByValue(withStatements, {
        ID: id,
        AssertionID: '_' + crypto.randomUUID(),
        Destination: acs,
        Audience: sp.entityMeta.getEntityID(),
        SubjectRecipient: acs,
        Issuer: idp.entityMeta.getEntityID(),
        IssueInstant: now.toISOString(),
        StatusCode: 'urn:oasis:names:tc:SAML:2.0:status:Success',
        ConditionsNotBefore: now.toISOString(),
        ConditionsNotOnOrAfter: later.toISOString(),
        SubjectConfirmationDataNotOnOrAfter: later.toISOString(),
        NameIDFormat: 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
        NameID: user.name_id,
        InResponseTo: request.extract.request.id,
      });
      return { id, context };
    },
  });
  return { SAMLResponse: result.context, RelayState: query.RelayState || null, acs, sessionIndex };
}

function logout(body) {
  const s = sessions[body.sessionIndex];
  if (!s) throw new Error('unknown session');
  delete sessions[body.sessionIndex];
  const { context } = idp.createLogoutRequest(sp, 'redirect', { logoutNameID: s.nameId, sessionIndex: body.sessionIndex },
    body.relayState ? { relayState: body.relayState } : undefined);
  return { url: context };
}

async function slo(body) {
  const { query, octetString } = queryOf(body.location);
  const request = await idp.parseLogoutRequest(sp, 'redirect', { query, octetString });
  for (const [k, s] of Object.entries(sessions)) {
    if (s.nameId === request.extract.nameID) delete sessions[k];
  }
  const { context } = idp.createLogoutResponse(sp, request, 'redirect', query.RelayState || '');
  return { url: context, nameId: request.extract.nameID };
}

const routes = { '/login': login, '/logout': logout, '/slo': slo };

const server = http.createServer((req, res) => {
  const send = (status, type, body) => {
    res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
    res.end(body);
  };
  if (req.method === 'GET' && req.url === '/metadata') {
    send(200, 'application/samlmetadata+xml', idp.getMetadata());
    return;
  }
  const handler = req.method === 'POST' ? routes[req.url] : undefined;
  if (!handler) {
    send(404, 'text/plain', 'not found');
    return;
  }
  let data = '';
  req.on('data', (chunk) => { data += chunk; });
  req.on('end', async () => {
    try {
      const out = await handler(JSON.parse(data || '{}'));
      send(200, 'application/json', JSON.stringify(out));
    } catch (err) {
      send(400, 'application/json', JSON.stringify({ error: String(err && err.message ? err.message : err) }));
    }
  });
});

server.listen(config.port || 0, '127.0.0.1', () => {
  build();
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
