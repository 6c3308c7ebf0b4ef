// Creates API keys (one key.created event each) at RATE per second for SECS seconds, or as fast as
// CONCURRENCY connections allow when RATE=0. Env: URL (control plane), KEY (admin key).
const { URL: base, KEY: key } = process.env;
const rate = Number(process.env.RATE || 0);
const secs = Number(process.env.SECS || 10);
const conc = Number(process.env.CONCURRENCY || 32);
let sent = 0, ok = 0, failed = 0, inflight = 0;
const end = Date.now() + secs * 1000;
const one = async () => {
  inflight++;
  sent++;
  try {
    const r = await fetch(`${base}/v1/keys`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: '{"name":"bench"}' });
    await r.arrayBuffer();
    r.status === 200 ? ok++ : failed++;
  } catch { failed++; }
  inflight--;
};
const start = Date.now();
if (rate > 0) {
  while (Date.now() < end) {
    const due = Math.floor(((Date.now() - start) / 1000) * rate);
    while (sent < due && inflight < 512) one();
    await new Promise((r) => setTimeout(r, 2));
  }
} else {
  await Promise.all(Array.from({ length: conc }, async () => { while (Date.now() < end) await one(); }));
}
while (inflight > 0) await new Promise((r) => setTimeout(r, 10));
console.log(JSON.stringify({ sent, ok, failed, secs: (Date.now() - start) / 1000 }));
