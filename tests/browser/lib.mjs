// Shared pieces of the dashboard's browser tests: launching Debian's Chromium, signing in, checking a
// page with axe-core (no critical or serious violations) and keeping a screenshot of it.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

const require = createRequire(import.meta.url);
const AXE_SOURCE = require("node:fs").readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** Launches the system Chromium (never a downloaded browser). */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run"],
  });
}

/** Signs in on the control plane's login form and waits to leave it. */
export async function signIn(page, cpUrl, email, password, returnTo = "/dashboard") {
  await page.goto(`${cpUrl}/login?return_to=${encodeURIComponent(returnTo)}`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith("/login")), page.getByRole("button", { name: "Sign in" }).click()]);
}

/**
 * Checks the current page with axe-core: fails on any critical or serious violation, naming the rule
 * and the elements. Then keeps a screenshot named `name` in SCREENSHOT_DIR (a test artefact).
 * Pages whose script is off (javaScriptEnabled: false) cannot run axe; they get only the screenshot.
 */
export async function checkPage(page, name, { axe = true } = {}) {
  if (axe) {
    // Evaluated through the DevTools protocol, so the page's strict CSP (no inline script) does not block it.
    await page.evaluate(AXE_SOURCE);
    const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
    const bad = result.violations.filter((v) => v.impact === "critical" || v.impact === "serious");
    assert.equal(bad.length, 0, `${name}: axe-core violations:\n` +
      bad.map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`).join("\n"));
  }
  const dir = process.env.SCREENSHOT_DIR || path.resolve("../../target/screenshots");
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
}
