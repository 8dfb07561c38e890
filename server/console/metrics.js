// Reading the server's /metrics (Prometheus text exposition format) into the numbers the Cache panel
// shows: per-tier hits, misses, bytes and evictions of the chunk-KV store (ragblend_kv_*), and the
// prompt-token counters of finished generations.

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(value) {
  return value.replace(/\\(["\\n])/g, (_, c) => (c === "n" ? "\n" : c));
}

function parseValue(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text); // NaN stays NaN
}

// Every sample as {name, labels, value}; comment lines and lines that do not parse are skipped.
export function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, key, value] of (m[2] || "").matchAll(LABEL)) labels[key] = unescapeLabel(value);
    samples.push({ name: m[1], labels, value: parseValue(m[3]) });
  }
  return samples;
}

function byTier(samples, name) {
  const out = new Map();
  for (const s of samples) if (s.name === name && s.labels.tier) out.set(s.labels.tier, s.value);
  return out;
}

function total(samples, name) {
  const values = samples.filter((s) => s.name === name).map((s) => s.value);
  return values.length ? values.reduce((a, b) => a + b, 0) : null;
}

// The cache panel's view of one scrape. Counters are cumulative since the server started.
export function summarize(samples) {
  const hits = byTier(samples, "ragblend_kv_hits_total");
  const misses = byTier(samples, "ragblend_kv_misses_total");
  const used = byTier(samples, "ragblend_kv_bytes_used");
  const entries = byTier(samples, "ragblend_kv_entries");
  const evictions = byTier(samples, "ragblend_kv_evictions_total");
  const tiers = [...new Set([...hits.keys(), ...misses.keys(), ...used.keys()])].map((tier) => {
    const h = hits.get(tier) ?? 0;
    const m = misses.get(tier) ?? 0;
    return {
      tier,
      hits: h,
      misses: m,
      hitRate: h + m > 0 ? h / (h + m) : null,
      bytesUsed: used.get(tier) ?? null,
      entries: entries.get(tier) ?? null,
      evictions: evictions.get(tier) ?? 0,
    };
  });
  const prompt = total(samples, "ragblend_prompt_tokens_total");
  const cached = total(samples, "ragblend_cached_prompt_tokens_total");
  const recomputed = total(samples, "ragblend_recomputed_prompt_tokens_total");
  return {
    tiers,
    promptTokens: prompt,
    cachedTokens: cached,
    recomputedTokens: recomputed,
    // Of the prompt tokens whose K/V came from the store, the share that was recomputed anyway.
    recomputedShare: cached && recomputed !== null ? recomputed / cached : null,
    cachedShare: prompt ? cached / prompt : null,
  };
}
