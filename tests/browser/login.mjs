// Sign-in in a real browser: open a private page, get the login form, sign in, land on the page
// asked for, sign out, and be locked out again. Run by the Rust test `browser_login_in_chromium`
// with APP_URL, CP_URL, EMAIL and PASSWORD set; exits non-zero with a reason on any failure.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const { APP_URL, CP_URL, EMAIL, PASSWORD } = process.env;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const page = await (await browser.newContext()).newPage();
  // 1. A private page sends the browser to the control plane's login form.
  await page.goto(`${APP_URL}/reports?month=11`);
  assert.ok(page.url().startsWith(`${CP_URL}/login?return_to=`), `expected the login page, got ${page.url()}`);
  await page.waitForSelector('input[name="email"]');
  // 2. Sign in.
  await page.fill('input[name="email"]', EMAIL);
  await page.fill('input[name="password"]', PASSWORD);
  await Promise.all([page.waitForURL(`${APP_URL}/reports?month=11`), page.click('button[type="submit"]')]);
  // 3. The page asked for, as the signed-in user.
  const body = await page.textContent("body");
  assert.match(body, new RegExp(`signed in as ${EMAIL.replace(".", "\\.")}`), body);
  // 4. Sign out from the app.
  await page.click('a[href="/__gatehouse/logout"]');
  await Promise.all([page.waitForURL(`${APP_URL}/`), page.click('button[type="submit"]')]).catch(() => {});
  // 5. Locked out again: the private page asks for the password.
  await page.goto(`${APP_URL}/reports`);
  assert.ok(page.url().startsWith(`${CP_URL}/login`), `expected to be signed out, got ${page.url()}`);
  await page.waitForSelector('input[name="password"]');
  console.log("browser login flow: ok");
} finally {
  await browser.close();
}
