// A webhook receiver that verifies every delivery with Stripe's official SDK
// (stripe.webhooks.constructEvent) — once per secret in SECRETS_FILE, each secret alone — and, when the
// delivery carries them, with the standardwebhooks package. Prints "listening <port>", then one JSON
// line per delivery. Answers 200 only when every check passed.
import http from "node:http";
import { readFileSync } from "node:fs";
import Stripe from "stripe";
import { Webhook } from "standardwebhooks";

const stripe = new Stripe("sk_test_unused_no_api_calls_are_made");
const secretsFile = process.env.SECRETS_FILE;

http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const secrets = readFileSync(secretsFile, "utf8").split("\n").filter(Boolean);
      const out = { receiver: "node", id: null, stripe_verified: 0, standard_verified: 0, errors: [] };
      for (const secret of secrets) {
        try {
          const event = stripe.webhooks.constructEvent(raw, req.headers["gatehouse-signature"], secret);
          out.id = event.id;
          out.stripe_verified += 1;
        } catch (e) {
          out.errors.push(`stripe: ${e.message}`);
        }
        if (req.headers["webhook-signature"]) {
          try {
            new Webhook(secret).verify(raw.toString("utf8"), {
              "webhook-id": req.headers["webhook-id"],
              "webhook-timestamp": req.headers["webhook-timestamp"],
              "webhook-signature": req.headers["webhook-signature"],
            });
            out.standard_verified += 1;
          } catch (e) {
            out.errors.push(`standardwebhooks: ${e.message}`);
          }
        }
      }
      console.log(JSON.stringify(out));
      res.writeHead(out.errors.length === 0 ? 200 : 400).end();
    });
  })
  .listen(0, "127.0.0.1", function () {
    console.log(`listening ${this.address().port}`);
  });
