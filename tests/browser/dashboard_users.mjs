// The Users page in a real browser: the owner creates a viewer (reading the password from its field),
// then in a second browser context the viewer signs in, reads the Users page without any create or
// change controls, and a forged POST with the viewer's own cookies and form token answers 403.
// axe-core runs on every page; screenshots are kept. Run by `dashboard_users::users_in_chromium`
// with CP_URL, EMAIL and PASSWORD (the owner) set.
import assert from "node:assert/strict";
import { launch, signIn, checkPage } from "./lib.mjs";

const { CP_URL, EMAIL, PASSWORD } = process.env;
const VIEWER = "viewer@example.com";
const browser = await launch();
try {
  // The owner.
  const owner = await (await browser.newContext()).newPage();
  await signIn(owner, CP_URL, EMAIL, PASSWORD, "/dashboard/users");
  assert.equal(new URL(owner.url()).pathname, "/dashboard/users");
  await checkPage(owner, "users-owner");
  await owner.getByLabel("Email").fill(VIEWER);
  await owner.getByLabel("Role", { exact: true }).selectOption("viewer");
  await owner.getByLabel("Show a password once").check();
  await owner.getByRole("button", { name: "Create user" }).click();
  const field = owner.getByLabel("Password", { exact: true });
  await field.waitFor();
  assert.equal(await field.getAttribute("readonly"), "");
  const password = await field.inputValue();
  assert.equal(password.length, 24);
  assert.ok(await owner.getByRole("button", { name: "Copy" }).isVisible(), "the copy button is shown with script on");
  await checkPage(owner, "users-password-shown-once");
  await owner.goto(`${CP_URL}/dashboard/account`);
  await checkPage(owner, "account-owner");

  // The viewer, in another browser context.
  const viewer = await (await browser.newContext()).newPage();
  await signIn(viewer, CP_URL, VIEWER, password, "/dashboard/users");
  assert.equal(new URL(viewer.url()).pathname, "/dashboard/users");
  const body = await viewer.textContent("main");
  assert.ok(body.includes(EMAIL) && body.includes(VIEWER), body);
  assert.equal(await viewer.getByRole("button", { name: "Create user" }).count(), 0, "no create control");
  assert.equal(await viewer.getByRole("button", { name: "Change role" }).count(), 0, "no change controls");
  assert.equal(await viewer.getByRole("button", { name: /^Disable / }).count(), 0, "no disable controls");
  await checkPage(viewer, "users-viewer");
  // A forged POST with the viewer's own cookies and token: 403, and nobody is created.
  const csrf = await viewer.locator('input[name="csrf"]').first().inputValue();
  const forged = await viewer.request.post(`${CP_URL}/dashboard/users`, {
    form: { csrf, email: "forged@example.com", role: "admin", delivery: "password" },
    maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);
  await owner.goto(`${CP_URL}/dashboard/users`);
  assert.ok(!(await owner.textContent("main")).includes("forged@example.com"), "the forged POST created nobody");
  await viewer.goto(`${CP_URL}/dashboard/account`);
  assert.ok((await viewer.textContent("main")).includes(VIEWER));
  await checkPage(viewer, "account-viewer");
  console.log("dashboard users flow: ok");
} finally {
  await browser.close();
}
