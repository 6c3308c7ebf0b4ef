// Mints N refresh tokens from a running Gatehouse the way a client would: sign in and consent once,
// then N authorization-code exchanges with PKCE (consent is remembered). Prints one token per line.
// Env: GH_CP, GH_CLIENT_ID, GH_CLIENT_SECRET, GH_EMAIL, GH_PASSWORD, N.
import { createHash, randomBytes } from "node:crypto";
import { FormBrowser, hiddenFields } from "../../tests/oauth-clients/browser.mjs";

const { GH_CP: cp, GH_CLIENT_ID: id, GH_CLIENT_SECRET: secret, GH_EMAIL: email, GH_PASSWORD: password } = process.env;
const n = Number(process.env.N || 1);
const b64 = (buf) => buf.toString("base64url");
const basic = "Basic " + Buffer.from(`${id}:${secret}`).toString("base64");
const browser = new FormBrowser();

async function code() {
  const verifier = b64(randomBytes(32));
  const challenge = b64(createHash("sha256").update(verifier).digest());
  const q = new URLSearchParams({ response_type: "code", client_id: id, redirect_uri: "http://127.0.0.1/cb", scope: "api:read", code_challenge: challenge, code_challenge_method: "S256", state: "s" });
  let r = await browser.get(`${cp}/oauth/authorize?${q}`);
  if (r.location && r.location.startsWith("/login")) {
    const login = hiddenFields((await browser.get(cp + r.location)).body);
    r = await browser.post(cp + "/login", { email, password, csrf: login.csrf, return_to: login.return_to });
    r = await browser.get(cp + r.location);
  }
  if (r.status === 200) {
    r = await browser.post(cp + "/oauth/authorize", { ...hiddenFields(r.body), decision: "allow" });
  }
  return { code: new URL(r.location).searchParams.get("code"), verifier };
}

const out = [];
for (let i = 0; i < n; i++) {
  const { code: c, verifier } = await code();
  const res = await fetch(`${cp}/oauth/token`, {
    method: "POST",
    headers: { authorization: basic, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", code: c, redirect_uri: "http://127.0.0.1/cb", code_verifier: verifier }),
  });
  const t = await res.json();
  if (!t.refresh_token) throw new Error(`no refresh token: ${JSON.stringify(t)}`);
  out.push(t.refresh_token);
}
console.log(out.join("\n"));
