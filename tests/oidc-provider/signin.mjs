// Sign-in through the identity provider in headless Chromium: open a private app page, be sent to
// Gatehouse's sign-in page, click `Continue with …`, sign in at the provider (its development login
// form) as LOGIN, consent, and either land on the page asked for (EXPECT=in) or on Gatehouse's refusal
// page saying EXPECT, or (EXPECT=forbidden:WORDS) on the app's 403 page of its access policy.
// Run by crates/gatehouse/tests/it/sso.rs with APP_URL, CP_URL, BUTTON, LOGIN, EMAIL
// and EXPECT set; with SIGN_OUT=1 it then signs out on the control plane and, through the provider's
// end-session page, comes back signed out of both. Exits non-zero with a reason on any failure.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const { APP_URL, CP_URL, BUTTON, LOGIN, EMAIL, EXPECT, SIGN_OUT } = process.env;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const page = await (await browser.newContext()).newPage();
  const wanted = `${APP_URL}/reports?month=11`;
  // 1. A private page sends the browser to Gatehouse's sign-in page, which offers the provider.
  await page.goto(wanted);
  assert.ok(page.url().startsWith(`${CP_URL}/login?return_to=`), `expected the sign-in page, got ${page.url()}`);
  // 2. Continue with the provider: its login form.
  await Promise.all([page.waitForSelector('input[name="login"]'), page.getByRole("link", { name: BUTTON }).click()]);
  assert.ok(!page.url().startsWith(CP_URL), `expected the provider's page, got ${page.url()}`);
  await page.fill('input[name="login"]', LOGIN);
  await page.fill('input[name="password"]', "any password");
  await Promise.all([page.waitForLoadState("load"), page.getByRole("button", { name: "Sign-in" }).click()]);
  // 3. Consent, the first time this account meets Gatehouse.
  const consent = page.getByRole("button", { name: "Continue" });
  if (!page.url().startsWith(CP_URL) && !page.url().startsWith(APP_URL)) {
    await consent.waitFor({ timeout: 10_000 });
    await consent.click();
  }
  await page.waitForURL((u) => u.href.startsWith(CP_URL) || u.href.startsWith(APP_URL), { timeout: 15_000 });
  await page.waitForLoadState("load");
  const body = await page.textContent("body");
  if (EXPECT === "in") {
    // 4a. Signed in: the page asked for, as the user the provider's account is.
    await page.waitForURL(wanted, { timeout: 15_000 });
    const text = await page.textContent("body");
    assert.ok(text.includes(`You are signed in as ${EMAIL}`), text);
    console.log(`signed in through the provider as ${EMAIL}: ok`);
    if (SIGN_OUT === "1") {
      // 5. Sign out on the control plane: the provider's end-session page, then back to Gatehouse.
      await page.goto(`${CP_URL}/dashboard/account`);
      await Promise.all([page.waitForURL((u) => !u.href.startsWith(`${CP_URL}/dashboard`)), page.getByRole("button", { name: "Sign out", exact: true }).click()]);
      await page.waitForLoadState("load");
      assert.ok(!page.url().startsWith(CP_URL), `expected the provider's sign-out page, got ${page.url()}: ${await page.textContent("body")}`);
      await Promise.all([page.waitForURL(`${CP_URL}/login`), page.getByRole("button", { name: "Yes, sign me out" }).click()]);
      await page.goto(wanted);
      assert.ok(page.url().startsWith(`${CP_URL}/login`), `expected to be signed out, got ${page.url()}`);
      console.log("signed out at Gatehouse and at the provider: ok");
    }
  } else if (EXPECT.startsWith("forbidden:")) {
    // 4c. Signed in, but the app's access policy refuses the account: the 403 page names it.
    await page.waitForURL(wanted, { timeout: 15_000 });
    const again = await page.reload();
    assert.equal(again.status(), 403, `expected 403 from the app host, got ${again.status()}`);
    const text = await page.textContent("body");
    assert.ok(text.includes(EXPECT.slice("forbidden:".length)), text);
    assert.ok(text.includes(`You are signed in as ${EMAIL}`), text);
    assert.ok(await page.getByRole("button", { name: "Switch account" }).isVisible(), "a way to switch account");
    console.log(`refused by the app's access policy as ${EMAIL}: ok`);
  } else {
    // 4b. Refused, on Gatehouse's page, with no session: the private page still asks to sign in.
    assert.ok(page.url().startsWith(`${CP_URL}/login/`), `expected Gatehouse's refusal page, got ${page.url()}`);
    assert.ok(body.includes(EXPECT), `expected "${EXPECT}" in: ${body}`);
    assert.ok(!body.includes("code=") && !body.includes("eyJ"), `no code or token on the page: ${body}`);
    await page.goto(wanted);
    assert.ok(page.url().startsWith(`${CP_URL}/login`), `expected to be signed out, got ${page.url()}`);
    console.log(`refused through the provider as ${LOGIN}: ok`);
  }
} finally {
  await browser.close();
}
