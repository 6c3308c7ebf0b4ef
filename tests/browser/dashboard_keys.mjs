// The Deta way to an API key, in a real browser: sign in, Apps → the app → Configuration, Create new
// API key, read it from the `Secret key` field, call the app with it, find it nowhere after a reload,
// revoke it and see the gateway refuse it within a second; a restricted key with one Read scope; and
// the same creation with JavaScript off. Every page is checked with axe-core and kept as a screenshot.
// Run by the Rust test `dashboard_keys::browser_keys_in_chromium` with APP_URL, CP_URL, EMAIL and PASSWORD.
import assert from "node:assert/strict";
import { launch, signIn, checkPage } from "./lib.mjs";

const { APP_URL, CP_URL, EMAIL, PASSWORD } = process.env;

async function call(method, key) {
  const r = await fetch(`${APP_URL}/api/whoami`, { method, headers: { "x-space-app-key": key } });
  return r.status;
}

/** From the dashboard's first page: Apps → hello → Configuration. */
async function openConfiguration(page, shot) {
  await page.getByRole("link", { name: "Apps", exact: true }).click();
  await page.waitForURL(`${CP_URL}/dashboard/apps`);
  if (shot) await checkPage(page, "apps");
  await page.getByRole("link", { name: /^Configuration/ }).first().click();
  await page.waitForURL(/\/dashboard\/apps\/hello$/);
}

async function createKey(page, name, restricted) {
  await page.getByLabel("Name", { exact: true }).fill(name);
  if (restricted) {
    await page.getByLabel(/^Restricted key/).check();
    await page.getByLabel("hello: Read", { exact: true }).check();
  }
  await Promise.all([page.waitForURL(/\/keys$/), page.getByRole("button", { name: "Create new API key" }).click()]);
  const secret = await page.getByLabel("Secret key").inputValue();
  assert.match(secret, /^gth_(sk|rk)_live_/, `a key in the Secret key field, got ${secret}`);
  return secret;
}

const browser = await launch();
try {
  const page = await (await browser.newContext()).newPage();
  page.on("dialog", (d) => d.accept());
  await signIn(page, CP_URL, EMAIL, PASSWORD);
  await openConfiguration(page, true);
  await checkPage(page, "app-configuration");

  // Create new API key, copy it once, use it.
  const secret = await createKey(page, "deta key", false);
  await checkPage(page, "key-created");
  assert.equal(await call("GET", secret), 200, "the new key opens the app");

  // Reload the Configuration page: the key is listed, its secret is nowhere.
  await page.goto(`${CP_URL}/dashboard/apps/hello`);
  assert.ok(!(await page.content()).includes(secret), "the secret is shown only once");
  assert.ok((await page.content()).includes(secret.slice(-4)), "the key is listed by its last four");

  // The API keys page, the key's page, and revoke with confirmation.
  await page.getByRole("link", { name: "API keys", exact: true }).click();
  await checkPage(page, "keys");
  await page.getByRole("link", { name: "deta key" }).click();
  await checkPage(page, "key");
  await Promise.all([page.waitForURL(/\/dashboard\/keys\/key_/), page.getByRole("button", { name: "Revoke key" }).click()]);
  const revokedAt = Date.now();
  let status = await call("GET", secret);
  while (status !== 401 && Date.now() - revokedAt < 1000) {
    await new Promise((r) => setTimeout(r, 50));
    status = await call("GET", secret);
  }
  assert.equal(status, 401, "revoked in the dashboard, refused by the gateway within a second");
  assert.ok((await page.content()).includes("revoked"), "the key's page says revoked");
  await checkPage(page, "key-revoked");

  // A restricted key with one Read scope: reads pass, writes are refused.
  await page.goto(`${CP_URL}/dashboard/apps/hello`);
  const reader = await createKey(page, "reader", true);
  assert.equal(await call("GET", reader), 200, "hello:read may GET /api/…");
  assert.equal(await call("POST", reader), 403, "hello:read may not POST /api/…");

  // The same creation with JavaScript off: plain forms all the way.
  const plain = await browser.newContext({ javaScriptEnabled: false });
  const p2 = await plain.newPage();
  await signIn(p2, CP_URL, EMAIL, PASSWORD);
  await openConfiguration(p2, false);
  const noJs = await createKey(p2, "no script", false);
  await checkPage(p2, "key-created-no-js", { axe: false });
  assert.equal(await call("GET", noJs), 200, "a key made without JavaScript opens the app");
  console.log("browser key flow: ok");
} finally {
  await browser.close();
}
