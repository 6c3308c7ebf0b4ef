// A real OpenID Provider for Gatehouse's sign-in tests (crates/gatehouse/tests/it/sso.rs): oidc-provider
// with one confidential client for Gatehouse, a few test accounts, its development login and consent
// pages, and key rotation on request. Everything it needs comes from the environment:
//   PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, POST_LOGOUT_REDIRECT_URI
// It prints `listening <issuer>` once it accepts connections. `POST /__test/rotate` makes a new
// signing key and publishes it first (`?retire=1`: the old ones are dropped), answering the new key id.
import http from "node:http";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import Provider from "oidc-provider";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};
const port = Number(env("PORT"));
const issuer = `http://127.0.0.1:${port}`;

// Test accounts: the login name is the account id (any password is accepted by the development pages).
const ACCOUNTS = {
  alice: { email: "alice@example.com", email_verified: true, name: "Alice", groups: ["eng", "ops"] },
  bob: { email: "bob@example.com", email_verified: false, name: "Bob (unverified email)", groups: [] },
  carol: { email: "carol@example.com", email_verified: true, name: "Carol", groups: ["eng"] },
  dave: { email: "dave@example.com", email_verified: true, name: "Dave", groups: ["sales"] },
};

function newKey() {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { ...privateKey.export({ format: "jwk" }), kid: randomUUID(), alg: "RS256", use: "sig" };
}

let keys = [newKey()];

function makeProvider() {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: env("CLIENT_ID"),
      client_secret: env("CLIENT_SECRET"),
      redirect_uris: [env("REDIRECT_URI")],
      post_logout_redirect_uris: [env("POST_LOGOUT_REDIRECT_URI")],
      response_types: ["code"],
      grant_types: ["authorization_code"],
      token_endpoint_auth_method: "client_secret_basic",
    }],
    jwks: { keys },
    cookies: { keys: ["gatehouse-test-cookie-key"] },
    claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"], groups: ["groups"] },
    // The ID token carries the scope's claims (as Google's, Okta's and Keycloak's do); Gatehouse reads
    // no userinfo endpoint.
    conformIdTokenClaims: false,
    scopes: ["openid", "email", "profile", "groups"],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    async findAccount(ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...account }; } };
    },
  });
  provider.on("server_error", (ctx, err) => console.error("server_error", err));
  return provider;
}

let provider = makeProvider();

const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url.startsWith("/__test/rotate")) {
    const key = newKey();
    keys = req.url.includes("retire=1") ? [key] : [key, ...keys];
    provider = makeProvider();
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ kid: key.kid, keys: keys.map((k) => k.kid) }));
    return;
  }
  provider.callback()(req, res);
});
server.listen(port, "127.0.0.1", () => console.log(`listening ${issuer}`));
