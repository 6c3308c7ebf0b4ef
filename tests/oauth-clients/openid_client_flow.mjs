// The whole OAuth flow with openid-client (npm) against a running Gatehouse.
// Env: GH_CP, GH_APP, GH_CLIENT_ID, GH_CLIENT_SECRET, GH_EMAIL, GH_PASSWORD.
import * as client from "openid-client";
import { check, signInAndConsent } from "./browser.mjs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const cp = env("GH_CP");
const app = env("GH_APP");
const redirectUri = "http://127.0.0.1:53682/callback";

// Plain HTTP is only for this local test; the library refuses it unless told.
const config = await client.discovery(new URL(cp), env("GH_CLIENT_ID"), undefined, client.ClientSecretBasic(env("GH_CLIENT_SECRET")), {
  algorithm: "oauth2",
  execute: [client.allowInsecureRequests],
});
check(config.serverMetadata().code_challenge_methods_supported.includes("S256"), "RFC 8414 metadata discovered");

const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: "hello:read",
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: "S256",
  state,
});
const callback = await signInAndConsent(cp, url.href, env("GH_EMAIL"), env("GH_PASSWORD"));
check(callback.startsWith(redirectUri + "?"), "redirected to the loopback callback");

// authorizationCodeGrant checks state and the RFC 9207 iss parameter before exchanging.
const tokens = await client.authorizationCodeGrant(config, new URL(callback), { pkceCodeVerifier: verifier, expectedState: state });
check(typeof tokens.access_token === "string" && typeof tokens.refresh_token === "string", "code exchanged for an access and a refresh token");

const who = await fetch(app + "/api/whoami", { headers: { authorization: `Bearer ${tokens.access_token}` } });
const body = await who.json();
check(who.status === 200 && body.auth === "oauth" && body.client_id === env("GH_CLIENT_ID") && body.email === env("GH_EMAIL"), "the app is called through the gateway with the token");

const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
check(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, "refresh rotates the refresh token");

const info = await client.tokenIntrospection(config, refreshed.access_token);
check(info.active === true && info.scope === "hello:read" && info.username === env("GH_EMAIL"), "introspection says active");

await client.tokenRevocation(config, refreshed.access_token);
const after = await client.tokenIntrospection(config, refreshed.access_token);
check(after.active === false, "revoked token introspects inactive");
const denied = await fetch(app + "/api/whoami", { headers: { authorization: `Bearer ${refreshed.access_token}` } });
check(denied.status === 401, "the gateway refuses the revoked token");

let reused = null;
try {
  await client.refreshTokenGrant(config, tokens.refresh_token);
} catch (e) {
  reused = e;
}
check(reused && reused.error === "invalid_grant", "a spent refresh token is refused with invalid_grant");
console.log("openid-client: all checks passed");
