// A real OpenID Connect provider for the console's single sign-on tests: panva's
// certified oidc-provider, configured from a JSON file (the path is the argument):
// {port, issuer, client: {client_id, client_secret, redirect_uris,
// post_logout_redirect_uris}, jwks: {keys: [private JWKs, the first signs]},
// people: {"<email>": {name, roles}}}. Its development login screens take any
// login (here: the person's e-mail) and any password, then ask for consent.
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));

const provider = new Provider(config.issuer, {
  clients: [
    {
      ...config.client,
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  jwks: config.jwks,
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "roles"],
  },
  // the e-mail and name go into the ID token itself, as Entra ID and Keycloak do
  conformIdTokenClaims: false,
  cookies: { keys: ["gatekeeper-test-provider-cookies"] },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(ctx, sub) {
    const person = config.people[sub] ?? {};
    return {
      accountId: sub,
      async claims() {
        return { sub, email: sub, email_verified: true, name: person.name ?? sub, roles: person.roles };
      },
    };
  },
});
provider.proxy = false;

provider.listen(config.port, () => {
  console.log(`oidc-provider listening on ${config.issuer}`);
});
