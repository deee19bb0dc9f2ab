// A real OpenID Connect provider for the tests: node `oidc-provider` (certified; checks
// PKCE, redirect URIs, code replay), on 127.0.0.1.
//
//   node idp.mjs CONFIG.json
//
// CONFIG: {"port", "issuer", "modules" (the node_modules directory holding oidc-provider),
//          "users_file", "clients": [{client_id, client_secret, redirect_uris}]}
// USERS_FILE: {"<login>": {"name": "...", "email": "...", "groups": ["..."]}}, read at every
// login and userinfo request, so a test changes a person's groups by rewriting it.
// Logins use the provider's development form (any password; unknown logins fail).
// Prints "oidc-provider listening <issuer>" when ready.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { default: Provider } = await import(pathToFileURL(join(config.modules, 'oidc-provider', 'lib', 'index.js')));

function users() {
  return JSON.parse(readFileSync(config.users_file, 'utf8'));
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  })),
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  // the id_token carries every granted claim (groups too), not only the essential ones
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: [config.cookie_key] },
  async findAccount(ctx, id) {
    const u = users()[id];
    if (!u) return undefined;
    return {
      accountId: id,
      async claims() {
        const now = users()[id] || { groups: [] };
        return { sub: id, preferred_username: id, name: now.name || id, email: now.email || `${id}@example.test`, groups: now.groups || [] };
      },
    };
  },
  // first-party clients: consent is implied, every requested scope and claim granted
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
    if (!grant) {
      grant = new ctx.oidc.provider.Grant({ accountId: ctx.oidc.session.accountId, clientId: ctx.oidc.client.clientId });
    }
    grant.addOIDCScope('openid profile email groups');
    grant.addOIDCClaims(['sub', 'name', 'preferred_username', 'email', 'groups']);
    await grant.save();
    return grant;
  },
  ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
});
provider.proxy = false;

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider listening ${config.issuer}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
