"""A webhook receiver that verifies every delivery with Stripe's official SDK
(stripe.WebhookSignature.verify_header) — once per secret in SECRETS_FILE, each secret alone — and,
when the delivery carries them, with the standardwebhooks package. Prints "listening <port>", then one
JSON line per delivery. Answers 200 only when every check passed."""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import stripe
from standardwebhooks.webhooks import Webhook

OUTPUT = threading.Lock()  # deliveries arrive concurrently; one whole line each


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length", "0")))
        with open(os.environ["SECRETS_FILE"]) as f:
            secrets = [s for s in f.read().split("\n") if s]
        out = {"receiver": "python", "id": None, "stripe_verified": 0, "standard_verified": 0, "errors": []}
        for secret in secrets:
            try:
                stripe.WebhookSignature.verify_header(raw.decode("utf-8"), self.headers["gatehouse-signature"], secret, tolerance=300)
                out["id"] = json.loads(raw)["id"]
                out["stripe_verified"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                out["errors"].append(f"stripe: {e}")
            if self.headers.get("webhook-signature"):
                try:
                    Webhook(secret).verify(raw, {k: self.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")})
                    out["standard_verified"] += 1
                except Exception as e:  # noqa: BLE001
                    out["errors"].append(f"standardwebhooks: {e}")
        with OUTPUT:
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
        self.send_response(200 if not out["errors"] else 400)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
sys.stdout.flush()
server.serve_forever()
