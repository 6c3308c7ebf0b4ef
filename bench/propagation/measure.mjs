// Revocation propagation (SPEC §16): N times, create a key on node A, use it on every other node until
// each has it cached, revoke it on A, then poll every other node with it until it answers 401.
// Time is measured from the revoke's response (the commit) to the first 401 on each node.
// Env: NODES (comma-separated base URLs, the first is A), ADMIN (a full key), N (default 100).
// Prints one JSON line: {"n":…, "samples":…, "p50_ms":…, "p99_ms":…, "max_ms":…}.
const nodes = process.env.NODES.split(",");
const admin = process.env.ADMIN;
const n = Number(process.env.N || 100);
const [a, ...others] = nodes;

async function call(base, method, path, key, body) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body && JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

const samples = [];
for (let i = 0; i < n; i++) {
  const created = await call(a, "POST", "/v1/keys", admin, { name: `propagation ${i}` });
  if (created.status !== 200) throw new Error(`create: ${created.status} ${JSON.stringify(created.body)}`);
  const { id, secret } = created.body;
  for (const b of others) {
    const r = await call(b, "GET", "/v1/keys?limit=1", secret);
    if (r.status !== 200) throw new Error(`warm ${b}: ${r.status}`);
  }
  const revoked = await call(a, "POST", `/v1/keys/${id}/revoke`, admin);
  if (revoked.status !== 200) throw new Error(`revoke: ${revoked.status}`);
  const t0 = performance.now();
  await Promise.all(
    others.map(async (b) => {
      for (;;) {
        const r = await call(b, "GET", "/v1/keys?limit=1", secret);
        if (r.status === 401) return samples.push(performance.now() - t0);
        if (r.status !== 200) throw new Error(`poll ${b}: ${r.status}`);
        if (performance.now() - t0 > 5000) throw new Error(`${b} still accepts a key revoked 5 s ago`);
      }
    }),
  );
}
samples.sort((x, y) => x - y);
const at = (p) => samples[Math.min(samples.length - 1, Math.round((samples.length - 1) * p))];
const r = (x) => Math.round(x * 10) / 10;
console.log(JSON.stringify({ n, samples: samples.length, p50_ms: r(at(0.5)), p99_ms: r(at(0.99)), max_ms: r(samples.at(-1)) }));
