// The Deta guide's first Spacefile: every route of the Express app is private, and a person signed in
// in the browser reaches it. Open `/`, get the login form, sign in, and see the app's own answer on `/`
// and on `/ping`. Run by the Rust test in crates/gatehouse/tests/it/guides.rs with APP_URL, CP_URL,
// EMAIL and PASSWORD set; exits non-zero with a reason on any failure.
import assert from "node:assert/strict";
import { launch } from "./lib.mjs";

const { APP_URL, CP_URL, EMAIL, PASSWORD } = process.env;
const browser = await launch();
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${APP_URL}/ping`);
  assert.ok(page.url().startsWith(`${CP_URL}/login?return_to=`), `even /ping is private: expected the login page, got ${page.url()}`);
  await page.waitForSelector('input[name="email"]');
  await page.fill('input[name="email"]', EMAIL);
  await page.fill('input[name="password"]', PASSWORD);
  await Promise.all([page.waitForURL(`${APP_URL}/ping`), page.click('button[type="submit"]')]);
  assert.equal((await page.textContent("body")).trim(), "pong");
  await page.goto(`${APP_URL}/`);
  assert.equal((await page.textContent("body")).trim(), "Hello world using Express.");
  console.log("the private Express app, signed in: ok");
} finally {
  await browser.close();
}
