// One answer as it streams in: its text, its sources (citations) and its usage and timings.

import { el, fillStats, formatMs, pageLabel } from "./dom.js";

// Timings in the order a request spends them; any other *_ms the server adds is shown after these.
const TIMINGS = [
  ["retrieve_ms", "Retrieve"],
  ["select_ms", "Select"],
  ["kv_fetch_ms", "KV fetch"],
  ["prefill_ms", "Prefill"],
  ["ttft_ms", "Time to first token"],
  ["total_ms", "Total"],
];
const TOKENS = [
  ["prompt_tokens", "Prompt tokens"],
  ["cached_tokens", "Cached tokens"],
  ["recomputed_tokens", "Recomputed tokens"],
  ["completion_tokens", "Completion tokens"],
];

export class AnswerView {
  constructor(slot, label, onCitation) {
    const fragment = document.getElementById("answer-template").content.cloneNode(true);
    this.root = fragment.querySelector(".answer");
    this.text = this.root.querySelector(".answer-text");
    this.state = this.root.querySelector(".answer-state");
    this.citations = this.root.querySelector(".citations");
    this.usage = this.root.querySelector(".usage");
    this.root.querySelector(".answer-label").textContent = label;
    this.onCitation = onCitation;
    this.tokens = 0;
    slot.replaceChildren(this.root);
    this.setState("waiting for the first token…", "waiting");
    this.citations.append(el("li", { class: "hint none" }, ["none yet"]));
  }

  setState(text, state) {
    this.state.textContent = text;
    this.root.dataset.state = state;
    // Screen readers read the answer once it is complete rather than token by token.
    this.text.setAttribute("aria-busy", String(state === "waiting" || state === "streaming"));
  }

  showCitations(list) {
    this.citations.replaceChildren(
      ...list.map((c) => {
        const where = c.pages ? `${pageLabel(c.pages)}, ` : "";
        const label = `${c.document_name || c.doc_id}, ${where}chunk ${c.seq + 1}, score ${c.score.toFixed(3)}`;
        const button = el("button", { type: "button", class: "link citation" }, [`[${c.index + 1}] ${label}`]);
        button.addEventListener("click", () => this.onCitation(c));
        return el("li", {}, [button]);
      }),
    );
  }

  addToken(text) {
    this.tokens += 1;
    this.text.append(text);
    this.setState(`streaming… ${this.tokens} pieces`, "streaming");
  }

  finish(done) {
    // The final text is authoritative (stop strings may trim what was streamed).
    this.text.textContent = done.text;
    if (done.citations && !this.citations.querySelector(".citation")) this.showCitations(done.citations);
    if (!this.citations.querySelector(".citation")) {
      this.citations.replaceChildren(el("li", { class: "hint none" }, ["none: documents from the request"]));
    }
    this.setState(`done (${done.finish_reason})`, "done");
    if (done.selection) this.showSelection(done.selection);
    const usage = done.usage || {};
    const timings = done.timings || {};
    const known = new Set(TIMINGS.map(([key]) => key));
    const extra = Object.keys(timings)
      .filter((key) => key.endsWith("_ms") && !known.has(key))
      .map((key) => [key, key.replace(/_ms$/, "").replaceAll("_", " ")]);
    fillStats(this.usage, [
      ...TOKENS.map(([key, label]) => [label, key in usage ? String(usage[key]) : "—", key]),
      ...[...TIMINGS, ...extra].map(([key, label]) => [label, formatMs(timings[key]), key]),
    ]);
    return done;
  }

  showSelection(s) {
    const report = this.root.querySelector(".selection-report");
    report.hidden = false;
    report.textContent =
      `Selection ${s.method}: ${s.chosen.length} of ${s.candidates} candidates chosen (${s.warm} warm), ` +
      `cost ${s.cost} of a ${s.budget} ${s.budget_unit} budget` +
      (s.iterations ? `, ${s.iterations} search iterations (stopped by ${s.stopped_by})` : "");
  }

  fail(message) {
    this.setState(`failed: ${message}`, "failed");
  }
}
