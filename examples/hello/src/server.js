// A tiny app that shows what Gatehouse tells it about each request.
const http = require("node:http");

const port = parseInt(process.env.PORT, 10) || 8080;
const greeting = process.env.GREETING || "Hello";

function identity(req) {
  const pick = (name) => req.headers[name] || null;
  return {
    auth: pick("x-gatehouse-auth"),
    user: pick("x-gatehouse-user"),
    email: pick("x-gatehouse-email"),
    key_id: pick("x-gatehouse-key-id"),
    client_id: pick("x-gatehouse-client-id"),
    scopes: pick("x-gatehouse-scopes"),
    environment: pick("x-gatehouse-environment"),
    client_ip: pick("x-real-ip"),
    has_assertion: Boolean(pick("x-gatehouse-jwt-assertion")),
  };
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

http
  .createServer((req, res) => {
    const url = new URL(req.url, "http://local");
    if (url.pathname === "/ping") {
      res.writeHead(200, { "content-type": "text/plain" });
      return res.end("pong");
    }
    if (url.pathname === "/api/whoami") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify(identity(req)));
    }
    const who = identity(req);
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><meta charset="utf-8"><title>hello</title>
<h1>${escape(greeting)}</h1>
<p>You are signed in as <strong>${escape(who.email || who.key_id || "?")}</strong> (${escape(who.auth)}).</p>
<p><a href="/__gatehouse/logout">Sign out</a></p>`);
  })
  .listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
