// A scripted browser for the sign-in and consent forms: fetch with manual redirects and a cookie jar.
// Shared by the OAuth client checks; it submits the same HTML forms a person would.

export class FormBrowser {
  constructor() {
    this.jar = new Map();
  }

  cookieHeader() {
    return [...this.jar].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  keep(res) {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const i = pair.indexOf("=");
      this.jar.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
    }
  }

  async get(url) {
    const res = await fetch(url, { redirect: "manual", headers: { cookie: this.cookieHeader(), accept: "text/html" } });
    this.keep(res);
    return { status: res.status, location: res.headers.get("location"), body: await res.text() };
  }

  async post(url, fields) {
    const res = await fetch(url, {
      method: "POST",
      redirect: "manual",
      headers: { cookie: this.cookieHeader(), "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields).toString(),
    });
    this.keep(res);
    return { status: res.status, location: res.headers.get("location"), body: await res.text() };
  }
}

/** The hidden inputs of a form, HTML entities decoded. */
export function hiddenFields(html) {
  const out = {};
  const re = /<input type="hidden" name="([^"]+)" value="([^"]*)">/g;
  for (const m of html.matchAll(re)) {
    // One pass over named and numeric references (a template may write either), as a browser reads them.
    const named = { quot: '"', lt: "<", gt: ">", amp: "&", apos: "'" };
    out[m[1]] = m[2].replace(/&(#\d+|quot|lt|gt|amp|apos);/g, (_, r) =>
      r.startsWith("#") ? String.fromCodePoint(Number(r.slice(1))) : named[r]);
  }
  return out;
}

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

/** Signs in and allows the consent screen; returns the redirect to the client's callback. */
export async function signInAndConsent(cp, authorizeUrl, email, password) {
  const b = new FormBrowser();
  let r = await b.get(authorizeUrl);
  check(r.status === 302 && r.location.startsWith("/login?return_to="), "authorize sends a signed-out browser to the login page");
  r = await b.get(cp + r.location);
  const login = hiddenFields(r.body);
  r = await b.post(cp + "/login", { email, password, csrf: login.csrf, return_to: login.return_to });
  check(r.status === 303 && r.location.startsWith("/oauth/authorize?"), "signing in returns to the authorization request");
  r = await b.get(cp + r.location);
  check(r.status === 200 && r.body.includes("wants to act for"), "the consent screen is shown");
  const consent = hiddenFields(r.body);
  r = await b.post(cp + "/oauth/authorize", { ...consent, decision: "allow" });
  check(r.status === 303, "allowing redirects to the client");
  return r.location;
}
