// The baseline: what an app developer would write by hand in JavaScript for the same job
// (HS256 check with WebCrypto, a per-user Durable Object counter, the key injected, the
// upstream body streamed through). No JWKS, no policy, no budgets, no metering.
export class Counter {
  constructor(state) {
    this.state = state;
  }
  async fetch() {
    const count = ((await this.state.storage.get("count")) ?? 0) + 1;
    await this.state.storage.put("count", count);
    return new Response(String(count));
  }
}

const encoder = new TextEncoder();
const base64url = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

// Bench-only, like the proxy's: requests served and Durable Object calls made, readable at
// /__bench/counters when BENCH_COUNTERS is "true" (not part of what one would write by hand).
const counted = { requests: 0, object_calls: { COUNTER: 0 } };

export default {
  async fetch(request, env) {
    if (env.BENCH_COUNTERS === "true" && new URL(request.url).pathname === "/__bench/counters") return Response.json(counted);
    counted.requests++;
    const [header, payload, signature] = (request.headers.get("authorization") ?? "").replace(/^Bearer /, "").split(".");
    if (!signature) return new Response("unauthorized", { status: 401 });
    const key = await crypto.subtle.importKey("raw", encoder.encode(env.JWT_SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    const valid = await crypto.subtle.verify("HMAC", key, base64url(signature), encoder.encode(`${header}.${payload}`));
    const claims = valid ? JSON.parse(new TextDecoder().decode(base64url(payload))) : null;
    if (!claims || claims.exp <= Date.now() / 1000) return new Response("unauthorized", { status: 401 });

    const counter = env.COUNTER.get(env.COUNTER.idFromName(claims.sub));
    counted.object_calls.COUNTER++;
    if (Number(await (await counter.fetch("https://counter/")).text()) > Number(env.LIMIT)) {
      return new Response("rate limited", { status: 429 });
    }
    const upstream = await fetch(`${env.UPSTREAM_BASE_URL}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${env.OPENAI_API_KEY}`, "content-type": "application/json" },
      body: request.body,
    });
    return new Response(upstream.body, { status: upstream.status, headers: { "content-type": upstream.headers.get("content-type") } });
  },
};
