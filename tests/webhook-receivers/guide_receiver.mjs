// The API guide's receiver snippet, as a user pastes it: `verify` below is the guide's function with
// only its TypeScript annotations removed (`: string`), its logic unchanged — it keeps the LAST `v1` of
// the header (Object.fromEntries), checks the age, and compares in constant time. The server around
// it answers 200 when `verify` returns true and 400 when it returns false or throws, as a handler
// built on the guide would. The secret is read from SECRET_FILE on every delivery, so a test switches
// the receiver to a new secret by rewriting the file. Prints "listening <port>", then one JSON line
// per delivery: {"receiver": "guide", "id", "verified", "error"}. With VERIFY=every-v1 it runs
// `verifyEveryV1` instead: the same function with README's one-line change, which checks every `v1`.
import crypto from "node:crypto";
import http from "node:http";
import { readFileSync } from "node:fs";

export function verify(rawBody, header, secret) {
const parts = Object.fromEntries(header.split(",").map((p) => p.split("=")));
const age = Date.now() / 1000 - Number(parts.t);
if (age > 300) throw new Error("Signature too old");
const expected = crypto
.createHmac("sha256", secret)
.update(`${parts.t}.${rawBody}`)
.digest("hex");
return crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(parts.v1));
}

// README.md ("Rotating a signing secret"): the guide's function with its last line changed.
export function verifyEveryV1(rawBody, header, secret) {
const parts = Object.fromEntries(header.split(",").map((p) => p.split("=")));
const age = Date.now() / 1000 - Number(parts.t);
if (age > 300) throw new Error("Signature too old");
const expected = crypto
.createHmac("sha256", secret)
.update(`${parts.t}.${rawBody}`)
.digest("hex");
return header.split(",").some((p) => p.startsWith("v1=") && p.length === 67 && crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(p.slice(3))));
}

const check = process.env.VERIFY === "every-v1" ? verifyEveryV1 : verify;
const secretFile = process.env.SECRET_FILE;

http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const secret = readFileSync(secretFile, "utf8").trim();
      const out = { receiver: "guide", id: null, verified: false, error: null };
      try {
        out.verified = check(raw, req.headers["gatehouse-signature"] ?? "", secret);
        if (out.verified) out.id = JSON.parse(raw).id;
      } catch (e) {
        out.error = e.message;
      }
      console.log(JSON.stringify(out));
      res.writeHead(out.verified ? 200 : 400).end();
    });
  })
  .listen(0, "127.0.0.1", function () {
    console.log(`listening ${this.address().port}`);
  });
