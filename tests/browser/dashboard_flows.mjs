// The dashboard's OAuth apps, webhooks, usage charts and a viewer, in a real browser, by visible labels:
// - register an OAuth app with the API guide's scopes (read_customers, write_orders), read its client
//   secret once, rotate it, then complete the guide's authorization URL as written (plus the PKCE SPEC §7
//   requires) through sign-in and consent to a code at a local redirect receiver, and exchange the code
//   for a token that introspects as active; the app's page then names the user who authorized it;
// - add a webhook endpoint pointing at a local receiver, choose events by checkbox, read the signing
//   secret once, Send test event, see the delivery with its attempt (the receiver's status code), check
//   the receiver got it signed with that secret, Resend (a second attempt), roll with an overlap and see
//   its end time;
// - send traffic through the gateway with a key and see it in the key's usage chart (allowed) and the
//   app's counts (allowed, 401, 403);
// - a viewer made in the dashboard, in a second browser context, reads keys, OAuth apps and webhooks
//   with no create or revoke controls, and a forged POST from that context is a 403 that changes nothing.
// Every page is checked with axe-core and kept as a screenshot. Run by `dashboard_flows::flows_in_chromium`
// with APP_URL, CP_URL, EMAIL and PASSWORD (the owner) set, usage flushed every second and webhooks
// allowed to loopback receivers.
import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes } from "node:crypto";
import http from "node:http";
import { launch, signIn, checkPage } from "./lib.mjs";

const { APP_URL, CP_URL, EMAIL, PASSWORD } = process.env;

/** A local HTTP server that records every request and answers `status` with a small HTML page. */
async function receiver(status = 200) {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => { body += c; });
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(status, { "content-type": "text/html; charset=utf-8" });
      res.end('<!doctype html><html lang="en"><head><title>Receiver</title></head><body><main><h1>Received</h1></main></body></html>');
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { seen, url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** Waits until `check` (reloading the page before each try) answers true, for at most `ms`. */
async function eventually(page, what, check, ms = 20_000) {
  const start = Date.now();
  for (;;) {
    if (await check()) return;
    assert.ok(Date.now() - start < ms, `${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 300));
    await page.reload();
  }
}

const b64url = (buf) => buf.toString("base64url");

async function oauthApps(browser, owner) {
  const cb = await receiver();
  try {
    await owner.getByRole("link", { name: "OAuth apps", exact: true }).click();
    await owner.waitForURL(`${CP_URL}/dashboard/oauth-apps`);
    await checkPage(owner, "oauth-apps");
    await owner.getByLabel("Name", { exact: true }).fill("Customer portal");
    await owner.getByRole("radio", { name: /Confidential/ }).check();
    await owner.getByLabel(/^Redirect URIs/).fill(`${cb.url}/callback`);
    await owner.getByLabel(/^Scopes/).fill("read_customers write_orders");
    await owner.getByRole("button", { name: "Register app" }).click();
    const first = await owner.getByLabel("Client secret").inputValue();
    assert.match(first, /^gth_cs_/, "the client secret, once");
    await checkPage(owner, "oauth-app-registered");
    const clientId = (await owner.locator("dt:text-is('Client ID') + dd code").textContent()).trim();
    assert.match(clientId, /^client_/);
    const appPage = `${CP_URL}/dashboard/oauth-apps/${clientId}`;
    await owner.goto(appPage);
    assert.ok(!(await owner.content()).includes(first), "the client secret is shown only once");

    // Rotate: a new secret once, the old one's end time shown.
    await owner.getByLabel("The old secret keeps working for").selectOption("3600");
    await owner.getByRole("button", { name: "Rotate secret" }).click();
    const secret = await owner.getByLabel("Client secret").inputValue();
    assert.match(secret, /^gth_cs_/);
    assert.notEqual(secret, first, "rotation makes a new secret");
    assert.match(await owner.getByRole("status").textContent(), /the old one keeps working until \d{4}-/);
    await checkPage(owner, "oauth-app-rotated");

    // The API guide's authorization URL as written, with PKCE (S256, required by SPEC §7), in a fresh
    // browser: sign-in, consent, and the code at the local redirect receiver.
    const verifier = b64url(randomBytes(32));
    const challenge = b64url(createHash("sha256").update(verifier).digest());
    const state = b64url(randomBytes(12));
    const redirect = `${cb.url}/callback`;
    const authorize = `${CP_URL}/oauth/authorize?response_type=code&client_id=${clientId}` +
      `&redirect_uri=${encodeURIComponent(redirect)}&scope=read_customers+write_orders&state=${state}` +
      `&code_challenge=${challenge}&code_challenge_method=S256`;
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(authorize);
    assert.equal(new URL(page.url()).pathname, "/login", "the authorization URL asks the user to sign in");
    await checkPage(page, "oauth-sign-in");
    await page.getByLabel("Email").fill(EMAIL);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Allow" }).waitFor();
    const consent = await page.textContent("body");
    assert.ok(consent.includes("Customer portal") && consent.includes("read_customers") && consent.includes("write_orders"), consent);
    await checkPage(page, "oauth-consent");
    await Promise.all([page.waitForURL((u) => u.href.startsWith(redirect)), page.getByRole("button", { name: "Allow" }).click()]);
    const back = new URL(page.url());
    assert.equal(back.searchParams.get("state"), state, "state is echoed");
    assert.equal(back.searchParams.get("iss"), CP_URL, "iss is added (RFC 9207)");
    const code = back.searchParams.get("code");
    assert.ok(code, `a code at the redirect receiver: ${page.url()}`);
    assert.ok(cb.seen.some((r) => r.url.includes(`code=${encodeURIComponent(code)}`) || r.url.includes(`code=${code}`)),
      "the receiver itself got the code");
    await ctx.close();

    // Exchange the code with the rotated secret (client_secret_basic), and prove the token works.
    const basic = "Basic " + Buffer.from(`${clientId}:${secret}`).toString("base64");
    const form = (o) => ({ method: "POST", headers: { authorization: basic, "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(o) });
    const tokenRes = await fetch(`${CP_URL}/oauth/token`, form({ grant_type: "authorization_code", code, redirect_uri: redirect, code_verifier: verifier }));
    const token = await tokenRes.json();
    assert.equal(tokenRes.status, 200, JSON.stringify(token));
    assert.equal(token.scope, "read_customers write_orders");
    const intro = await (await fetch(`${CP_URL}/oauth/introspect`, form({ token: token.access_token }))).json();
    assert.equal(intro.active, true, JSON.stringify(intro));
    assert.equal(intro.client_id, clientId);
    assert.equal(intro.scope, "read_customers write_orders");

    // The app's page names the user who authorized it, with Revoke; revoking ends the token.
    await owner.goto(appPage);
    const row = owner.getByRole("row", { name: new RegExp(EMAIL.replace(/[.]/g, "\\.")) });
    await row.waitFor();
    await checkPage(owner, "oauth-app-authorized-users");
    await Promise.all([owner.waitForURL(appPage), row.getByRole("button", { name: /^Revoke/ }).click()]);
    assert.equal(await owner.getByRole("row", { name: new RegExp(EMAIL.replace(/[.]/g, "\\.")) }).count(), 0, "the grant is gone from the list");
    const after = await (await fetch(`${CP_URL}/oauth/introspect`, form({ token: token.access_token }))).json();
    assert.equal(after.active, false, "revoking the grant ends its tokens");
    return clientId;
  } finally {
    cb.close();
  }
}

/** Checks a Standard-Webhooks-style or Gatehouse signature header against `secret`: some v1 signature matches. */
function signedWith(req, secret) {
  const id = req.headers["webhook-id"], ts = req.headers["webhook-timestamp"], sig = req.headers["webhook-signature"];
  if (!id || !ts || !sig) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = createHmac("sha256", key).update(`${id}.${ts}.${req.body}`).digest("base64");
  return sig.split(" ").some((s) => s === `v1,${expected}`);
}

async function webhooks(owner) {
  const hooks = await receiver(200);
  try {
    await owner.getByRole("link", { name: "Webhooks", exact: true }).click();
    await owner.waitForURL(/\/dashboard\/webhooks/);
    await checkPage(owner, "webhooks");
    await owner.getByLabel("Endpoint URL").fill(`${hooks.url}/hooks`);
    await owner.getByLabel("Description").fill("local receiver");
    await owner.getByLabel("key.created", { exact: true }).check();
    await owner.getByLabel("key.revoked", { exact: true }).check();
    await owner.getByLabel("Also send Standard Webhooks headers").check();
    await owner.getByRole("button", { name: "Add endpoint" }).click();
    const secret = await owner.getByLabel("Signing secret").inputValue();
    assert.match(secret, /^whsec_/, "the signing secret, once");
    await checkPage(owner, "webhook-added");
    const events = (await owner.locator("dt:text-is('Events') + dd").textContent()).trim();
    assert.equal(events, "key.created, key.revoked");
    const endpointId = (await owner.locator("dt:text-is('Endpoint ID') + dd code").textContent()).trim();
    const endpointPage = `${CP_URL}/dashboard/webhooks/${endpointId}`;
    await owner.goto(endpointPage);
    assert.ok(!(await owner.content()).includes(secret), "the signing secret is shown only once");

    // Send test event: the delivery appears with its attempt and the receiver's status code.
    await owner.getByRole("button", { name: "Send test event" }).click();
    const delivery = owner.locator("section.card").first();
    await eventually(owner, "the test delivery with an attempt", async () =>
      (await owner.locator("section.card tbody tr").count()) >= 1);
    const status = (await delivery.locator("tbody tr").first().locator("td").nth(1).textContent()).trim();
    assert.equal(status, "200", "the attempt shows the receiver's status code");
    assert.equal(hooks.seen.length, 1, "the receiver got one request");
    assert.ok(signedWith(hooks.seen[0], secret), `signed with the secret shown once: ${JSON.stringify(hooks.seen[0].headers)}`);
    const eventId = (await delivery.locator("h3 code").textContent()).trim();
    assert.ok(hooks.seen[0].body.includes(eventId), "the receiver got the event shown on the page");
    await checkPage(owner, "webhook-delivery");

    // Resend: a second attempt at the same delivery, and a second request at the receiver.
    await delivery.getByRole("button", { name: "Resend" }).click();
    await eventually(owner, "a second attempt after Resend", async () =>
      (await owner.locator("section.card").first().locator("tbody tr").count()) >= 2);
    assert.equal(hooks.seen.length, 2);
    assert.ok(hooks.seen[1].body.includes(eventId), "the same event again");

    // Roll with a one-hour overlap: the new secret once, and the overlap's end time.
    await owner.getByLabel("Both secrets sign for").selectOption("3600");
    await owner.getByRole("button", { name: "Roll secret" }).click();
    const rolled = await owner.getByLabel("Signing secret").inputValue();
    assert.match(rolled, /^whsec_/);
    assert.notEqual(rolled, secret);
    assert.match(await owner.getByRole("status").textContent(), /both secrets sign until \d{4}-\d\d-\d\dT/i);
    const until = await owner.locator("dt:text-is('Previous secret') + dd time").getAttribute("datetime");
    const left = Date.parse(until) - Date.now();
    assert.ok(left > 50 * 60_000 && left <= 3_600_000, `the overlap ends in about an hour: ${until}`);
    await checkPage(owner, "webhook-rolled");
    return endpointPage;
  } finally {
    hooks.close();
  }
}

async function usage(owner) {
  await owner.goto(`${CP_URL}/dashboard/apps/hello`);
  await owner.getByLabel("Name", { exact: true }).fill("usage key");
  await owner.getByLabel(/^Restricted key/).check();
  await owner.getByLabel("hello: Read", { exact: true }).check();
  await Promise.all([owner.waitForURL(/\/keys$/), owner.getByRole("button", { name: "Create new API key" }).click()]);
  const key = await owner.getByLabel("Secret key").inputValue();
  const call = async (method, k) => (await fetch(`${APP_URL}/api/whoami`, { method, headers: k ? { "x-space-app-key": k } : {} })).status;
  for (let i = 0; i < 3; i++) assert.equal(await call("GET", key), 200);
  for (let i = 0; i < 2; i++) assert.equal(await call("POST", key), 403);
  for (let i = 0; i < 4; i++) assert.equal(await call("GET", null), 401);

  await owner.getByRole("link", { name: "API keys", exact: true }).click();
  await owner.getByRole("link", { name: "usage key" }).click();
  const keyPage = owner.url();
  const legend = () => owner.locator("figure.chart").first().locator(".legend").textContent();
  let seen = "";
  await eventually(owner, "the key's traffic in its usage chart", async () => {
    seen = await owner.locator("figure.chart").allTextContents().then((t) => t.join(" | "));
    const text = await legend();
    return text.includes("Allowed: 3");
  }).catch((e) => { throw new Error(`${e.message}; the charts said: ${seen}`); });
  // A refusal inside verification (the key lacks the route's scope: 403; no key: 401) is counted
  // against the app, not the key: see the app's counts below.
  const text = await legend();
  assert.ok(text.includes("401: 0") && text.includes("429: 0"), `only this key's outcomes: ${text}`);
  assert.ok(await owner.locator("figure.chart svg polyline.line-allowed").count() >= 1, "the chart draws the allowed line");
  await checkPage(owner, "key-usage");
  await owner.goto(`${CP_URL}/dashboard/apps`);
  await eventually(owner, "the app's 401s and 403s in its counts", async () =>
    /\d+ allowed, 4 refused with 401, 2 with 403, 0 with 429/.test(await owner.textContent("main")));
  return keyPage;
}

async function viewerReadsOnly(browser, owner, pages) {
  const VIEWER = "reader@example.com";
  await owner.goto(`${CP_URL}/dashboard/users`);
  await owner.getByLabel("Email").fill(VIEWER);
  await owner.getByLabel("Role", { exact: true }).selectOption("viewer");
  await owner.getByLabel("Show a password once").check();
  await owner.getByRole("button", { name: "Create user" }).click();
  const password = await owner.getByLabel("Password", { exact: true }).inputValue();

  const ctx = await browser.newContext();
  const viewer = await ctx.newPage();
  await signIn(viewer, CP_URL, VIEWER, password, "/dashboard/keys");
  const nav = await viewer.getByRole("navigation").first().textContent();
  for (const link of ["API keys", "OAuth apps", "Webhooks"]) assert.ok(nav.includes(link), `${link} in ${nav}`);
  const noControls = async (what, names) => {
    for (const name of names) {
      assert.equal(await viewer.getByRole("button", { name }).count(), 0, `${what}: no ${name} control for a viewer`);
    }
  };
  const create = /^(Create|Register|Add|Revoke|Roll|Rotate|Disable|Send test event|Resend)/;
  for (const [name, url, mustShow] of [
    ["viewer-keys", `${CP_URL}/dashboard/keys`, "usage key"],
    ["viewer-key", pages.key, "usage key"],
    ["viewer-oauth-apps", `${CP_URL}/dashboard/oauth-apps`, "Customer portal"],
    ["viewer-oauth-app", pages.oauth, "Customer portal"],
    ["viewer-webhooks", `${CP_URL}/dashboard/webhooks`, "/hooks"],
    ["viewer-webhook", pages.webhook, "/hooks"],
  ]) {
    const resp = await viewer.goto(url);
    assert.equal(resp.status(), 200, `${name}: a viewer reads ${url}`);
    assert.ok((await viewer.textContent("main")).includes(mustShow), `${name}: shows ${mustShow}`);
    await noControls(name, [create]);
    await checkPage(viewer, name);
  }

  // A forged POST from the viewer's own context, with the viewer's own valid form token: 403, nothing changes.
  const csrf = await viewer.locator('input[name="csrf"]').first().inputValue();
  const before = await owner.goto(`${CP_URL}/dashboard/keys`).then(() => owner.textContent("main"));
  for (const [url, form] of [
    [`${pages.key}/revoke`, { csrf }],
    [`${CP_URL}/dashboard/keys`, { csrf, name: "forged key", kind: "sk", environment: "live" }],
    [`${pages.oauth}/disable`, { csrf }],
    [`${pages.webhook}/disable`, { csrf }],
  ]) {
    const r = await viewer.request.post(url, { form, maxRedirects: 0 });
    assert.equal(r.status(), 403, `a viewer's forged POST ${url}`);
  }
  await owner.goto(`${CP_URL}/dashboard/keys`);
  assert.equal(await owner.textContent("main"), before, "the forged POSTs changed no key");
  await owner.goto(pages.oauth);
  assert.ok((await owner.textContent("main")).includes("active"), "the OAuth app is still active");
  await owner.goto(pages.webhook);
  assert.ok((await owner.textContent("main")).includes("enabled"), "the webhook endpoint is still enabled");
  await ctx.close();
}

const browser = await launch();
try {
  const owner = await (await browser.newContext()).newPage();
  owner.on("dialog", (d) => d.accept());
  await signIn(owner, CP_URL, EMAIL, PASSWORD);
  const clientId = await oauthApps(browser, owner);
  const webhook = await webhooks(owner);
  const key = await usage(owner);
  await viewerReadsOnly(browser, owner, { key, webhook, oauth: `${CP_URL}/dashboard/oauth-apps/${clientId}` });
  console.log("dashboard flows: ok");
} finally {
  await browser.close();
}
