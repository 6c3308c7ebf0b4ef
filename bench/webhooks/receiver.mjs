// Benchmark receiver: answers 200 at once and records, per delivery, the time from the event's commit
// (the millisecond timestamp inside its time-sortable `evt_` id) to receipt. GET /stats reports.
import http from "node:http";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const idMillis = (id) => {
  // 26 base32 characters = 130 bits, of which the top 48 (after 2 padding bits) are milliseconds.
  let v = 0n;
  for (const c of id.slice(4)) v = (v << 5n) | BigInt(ALPHABET.indexOf(c));
  return Number(v >> 80n);
};
let latencies = [];
let count = 0;
let first = 0;
let last = 0;
http
  .createServer((req, res) => {
    if (req.method === "GET") {
      const sorted = [...latencies].sort((a, b) => a - b);
      const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? null;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ count, p50_ms: q(0.5), p99_ms: q(0.99), rate: count / Math.max(0.001, (last - first) / 1000) }));
      if (req.url === "/stats?reset=1") { latencies = []; count = 0; first = 0; }
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const now = Date.now();
      const id = JSON.parse(Buffer.concat(chunks).toString()).id;
      latencies.push(now - idMillis(id));
      count += 1;
      if (!first) first = now;
      last = now;
      res.writeHead(200).end();
    });
  })
  .listen(Number(process.env.PORT), "127.0.0.1");
