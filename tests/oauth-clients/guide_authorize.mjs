// The API guide's authorization URL, as written (`scope=read_customers+write_orders`, `state`, PKCE S256,
// the guide's own redirect URI), against a running Gatehouse with a client registered for it: sign-in
// and consent through the HTML forms, then the code exchanged at the token endpoint.
// Env: GH_CP, GH_CLIENT_ID, GH_CLIENT_SECRET, GH_EMAIL, GH_PASSWORD.
import crypto from "node:crypto";
import { check, signInAndConsent } from "./browser.mjs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const cp = env("GH_CP");
const verifier = crypto.randomBytes(32).toString("base64url");
const challenge = crypto.createHash("sha256").update(verifier).digest("base64url");

// The guide's URL, line for line, with this server in place of auth.spalce.dev and the registered
// client's id in place of acme_app_123.
const url = `${cp}/oauth/authorize
?response_type=code
&client_id=${env("GH_CLIENT_ID")}
&redirect_uri=https://acme.com/callback
&scope=read_customers+write_orders
&state=random_csrf_token
&code_challenge=${challenge}
&code_challenge_method=S256`.replace(/\n/g, "");

const callback = new URL(await signInAndConsent(cp, url, env("GH_EMAIL"), env("GH_PASSWORD")));
check(callback.origin + callback.pathname === "https://acme.com/callback", "redirected to the guide's redirect URI");
check(callback.searchParams.get("state") === "random_csrf_token", "state echoed");
const code = callback.searchParams.get("code");
check(typeof code === "string" && code.length > 20, "an authorization code");

const res = await fetch(cp + "/oauth/token", {
  method: "POST",
  headers: {
    "content-type": "application/x-www-form-urlencoded",
    authorization: "Basic " + Buffer.from(`${env("GH_CLIENT_ID")}:${env("GH_CLIENT_SECRET")}`).toString("base64"),
  },
  body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: "https://acme.com/callback", code_verifier: verifier }),
});
const tokens = await res.json();
check(res.status === 200 && typeof tokens.access_token === "string", `code exchanged for a token (${res.status})`);
check(tokens.scope === "read_customers write_orders", `the token holds the guide's scopes (${tokens.scope})`);
console.log("all checks passed");
