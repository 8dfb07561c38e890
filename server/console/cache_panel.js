// The Cache panel: polls /metrics every few seconds and shows the chunk-KV store's hit rate, bytes
// stored and evictions per tier, and the recomputed share of cached prompt tokens, as numbers and as
// small time series.

import { ApiError, apiFetch, errorMessage } from "./api.js";
import { drawChart } from "./chart.js";
import { el, fillStats, formatBytes, formatPercent } from "./dom.js";
import { parsePrometheus, summarize } from "./metrics.js";

const HISTORY = 60;

export class CachePanel {
  constructor(pollMs) {
    this.pollMs = pollMs;
    this.section = document.getElementById("cache-panel");
    this.status = document.getElementById("cache-status");
    this.body = document.querySelector("#cache-tiers tbody");
    this.tokens = document.getElementById("cache-tokens");
    this.history = [];
    this.timer = null;
    this.samples = 0;
  }

  start() {
    const tick = async () => {
      if (document.visibilityState !== "hidden") await this.poll();
      this.timer = setTimeout(tick, this.pollMs);
    };
    tick();
  }

  // Read /metrics now (also called after each answer, so its effect shows without waiting).
  async poll() {
    let text;
    try {
      // A background poll never opens the key dialog by itself; the other panels do.
      const response = await apiFetch("/metrics", {}, { prompt: false });
      if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
      text = await response.text();
    } catch (err) {
      const needsKey = err.status === 401 ? " Enter an API key to see the cache." : "";
      this.status.textContent = `Could not read /metrics: ${err.message}.${needsKey}`;
      return;
    }
    const summary = summarize(parsePrometheus(text));
    this.history.push(summary);
    if (this.history.length > HISTORY) this.history.shift();
    this.samples += 1;
    this.section.dataset.samples = String(this.samples);
    this.render(summary);
    const secs = (this.pollMs / 1000).toFixed(this.pollMs % 1000 ? 1 : 0);
    this.status.textContent = `Updated ${new Date().toLocaleTimeString()}; read every ${secs} s.`;
  }

  render(s) {
    this.body.replaceChildren(
      ...s.tiers.map((t) => {
        const cell = (key, text) => el("td", { "data-key": key }, [text]);
        return el("tr", { "data-tier": t.tier }, [
          el("th", { scope: "row" }, [t.tier]),
          cell("hit_rate", formatPercent(t.hitRate)),
          cell("hits", String(t.hits)),
          cell("misses", String(t.misses)),
          cell("bytes_used", formatBytes(t.bytesUsed ?? NaN)),
          cell("entries", t.entries === null || t.entries < 0 ? "—" : String(t.entries)),
          cell("evictions", String(t.evictions)),
        ]);
      }),
    );
    const count = (v) => (v === null ? "—" : String(v));
    fillStats(this.tokens, [
      ["Prompt tokens served", count(s.promptTokens), "prompt_tokens"],
      ["From chunk caches", `${count(s.cachedTokens)} (${formatPercent(s.cachedShare)})`, "cached_tokens"],
      ["Of those recomputed", `${count(s.recomputedTokens)} (${formatPercent(s.recomputedShare)})`, "recomputed"],
    ]);
    this.drawCharts(s);
  }

  drawCharts(latest) {
    const tiers = latest.tiers.map((t) => t.tier);
    const series = (pick) =>
      tiers.map((tier) => ({
        name: tier,
        values: this.history.map((h) => pick(h.tiers.find((t) => t.tier === tier))),
      }));
    const rates = series((t) => (t && t.hitRate !== null ? t.hitRate * 100 : null)).map((r) => ({
      ...r,
      name: `${r.name} hit rate`,
    }));
    rates.push({
      name: "recomputed share",
      values: this.history.map((h) => (h.recomputedShare === null ? null : h.recomputedShare * 100)),
    });
    const describeLatest = (fmt, pick) =>
      latest.tiers.map((t) => `${t.tier} ${fmt(pick(t))}`).join(", ");
    drawChart(document.getElementById("chart-rates"), rates, {
      yMax: 100,
      format: (v) => `${v} %`,
      describe: `Hit rate now: ${describeLatest(formatPercent, (t) => t.hitRate)}; recomputed share ${formatPercent(latest.recomputedShare)}`,
    });
    drawChart(
      document.getElementById("chart-bytes"),
      series((t) => (t && t.bytesUsed !== null && t.bytesUsed >= 0 ? t.bytesUsed : null)),
      {
        format: formatBytes,
        describe: `Bytes stored now: ${describeLatest(formatBytes, (t) => t.bytesUsed ?? NaN)}`,
      },
    );
    drawChart(
      document.getElementById("chart-evictions"),
      series((t) => (t ? t.evictions : null)),
      { format: (v) => String(Math.round(v)), describe: `Evictions so far: ${describeLatest(String, (t) => t.evictions)}` },
    );
  }
}
