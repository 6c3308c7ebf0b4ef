// The peer of the OAuth benchmark: oidc-provider with an in-memory Map store, configured for the same
// grants as Gatehouse (client_credentials; refresh_token with rotation on every use; introspection).
// Env: PORT; N_REFRESH refresh tokens are minted at start and written, one per line, to REFRESH_OUT.
import { writeFileSync } from "node:fs";
import Provider from "oidc-provider";

// The bundled development adapter is an LRU of 1000 entries: under load it evicts live grants and
// refresh tokens and answers invalid_grant. This one keeps everything in plain Maps (no eviction, no
// persistence), which can only flatter the peer.
const stores = new Map();
const grants = new Map();
class MapAdapter {
  constructor(name) {
    this.name = name;
    if (!stores.has(name)) stores.set(name, new Map());
    this.items = stores.get(name);
  }
  async upsert(id, payload, expiresIn) {
    this.items.set(id, { payload, exp: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    if (payload.grantId) {
      if (!grants.has(payload.grantId)) grants.set(payload.grantId, []);
      grants.get(payload.grantId).push([this.name, id]);
    }
  }
  async find(id) {
    const e = this.items.get(id);
    if (!e) return undefined;
    if (e.exp < Date.now()) {
      this.items.delete(id);
      return undefined;
    }
    return e.payload;
  }
  async findByUserCode() { return undefined; }
  async findByUid(uid) {
    for (const e of this.items.values()) if (e.payload.uid === uid) return e.payload;
    return undefined;
  }
  async consume(id) {
    const e = this.items.get(id);
    if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id) { this.items.delete(id); }
  async revokeByGrantId(grantId) {
    for (const [name, id] of grants.get(grantId) || []) stores.get(name)?.delete(id);
    grants.delete(grantId);
  }
}

const port = Number(process.env.PORT || 3000);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients: [
    {
      client_id: "bench",
      client_secret: "bench-secret-0123456789abcdef",
      grant_types: ["client_credentials", "authorization_code", "refresh_token"],
      redirect_uris: ["http://127.0.0.1/cb"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  scopes: ["openid", "offline_access", "api:read"],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    devInteractions: { enabled: false },
  },
  rotateRefreshToken: true,
  cookies: { keys: ["bench-cookie-key"] },
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  ttl: { AccessToken: 3600, ClientCredentials: 3600, RefreshToken: 30 * 86400, Grant: 30 * 86400 },
});
provider.on("server_error", (_ctx, err) => console.error("server_error", err));

const n = Number(process.env.N_REFRESH || 0);
if (n > 0) {
  const client = await provider.Client.find("bench");
  const now = Math.floor(Date.now() / 1000);
  const tokens = [];
  for (let i = 0; i < n; i++) {
    const accountId = `user${i}`;
    const grant = new provider.Grant({ accountId, clientId: "bench" });
    grant.addOIDCScope("offline_access api:read");
    const grantId = await grant.save();
    const rt = new provider.RefreshToken({ accountId, client, grantId, scope: "offline_access api:read", gty: "authorization_code", authTime: now, iiat: now });
    tokens.push(await rt.save());
  }
  writeFileSync(process.env.REFRESH_OUT, tokens.join("\n") + "\n");
}
provider.listen(port, "127.0.0.1", () => console.log(`oidc-provider listening on ${issuer}`));
