// The Ask panel: build a /generate request from the form, stream its answer, and compare a blend mode
// with the full prefill side by side.

import { streamGenerate } from "./api.js";
import { AnswerView } from "./answer_view.js";
import { jsonObject } from "./dom.js";

const RATIO_MODES = new Set(["cacheblend", "cachecraft", "probe"]);

export class AskPanel {
  constructor(documentView, onAnswered) {
    this.documentView = documentView;
    this.onAnswered = onAnswered;
    this.form = document.getElementById("ask-form");
    this.error = document.getElementById("ask-error");
    this.stopButton = document.getElementById("stop-button");
    this.controller = null;
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.ask();
    });
    document.getElementById("compare-button").addEventListener("click", () => this.compare());
    this.stopButton.addEventListener("click", () => this.controller?.abort());
    this.form.addEventListener("change", () => this.syncFields());
    this.syncFields();
  }

  syncFields() {
    const f = this.form.elements;
    const fromCollection = f.source.value === "collection";
    document.getElementById("ask-collection-fields").hidden = !fromCollection;
    document.getElementById("ask-documents-field").hidden = fromCollection;
    // The ratio only steers cacheblend, cachecraft and probe.
    f.ratio.disabled = !RATIO_MODES.has(f.mode.value);
    f.budget.disabled = f.selection.value !== "corag";
  }

  // The request body, or an Error naming the field to fix.
  request(mode) {
    const f = this.form.elements;
    const query = f.query.value.trim();
    if (!query) throw new Error("Question: type a question first");
    const body = { query, max_tokens: Number(f.max_tokens.value) || undefined };
    body.blend = { mode };
    if (RATIO_MODES.has(mode)) body.blend.ratio = Number(f.ratio.value);
    if (f.source.value === "collection") {
      if (!f.collection.value) throw new Error("Collection: create one, or answer from pasted documents");
      body.collection = f.collection.value;
      if (f.top_k.value) body.top_k = Number(f.top_k.value);
      const filter = jsonObject(f.filter.value, "Metadata filter");
      if (filter) body.filter = filter;
    } else {
      const docs = f.documents.value.split(/^\s*---\s*$/m).map((d) => d.trim()).filter(Boolean);
      if (!docs.length) throw new Error("Documents: paste at least one document");
      body.documents = docs;
    }
    // Sent only when asked for, so servers without chunk selection are unaffected by the default.
    if (f.selection.value === "corag") {
      body.selection = { method: "corag" };
      if (f.budget.value) body.selection.budget = Number(f.budget.value);
    }
    return body;
  }

  showCitation(citation) {
    this.documentView.show(citation.collection, citation.doc_id, citation);
  }

  busy(on) {
    document.getElementById("ask-submit").disabled = on;
    document.getElementById("compare-button").disabled = on;
    this.stopButton.disabled = !on;
  }

  // Stream one answer into `view`; a failure is shown in the view and passed on.
  async run(body, view) {
    const handlers = {
      citations: (data) => view.showCitations(data.citations),
      token: (data) => view.addToken(data.text),
    };
    try {
      return view.finish(await streamGenerate(body, handlers, this.controller.signal));
    } catch (err) {
      view.fail(err.name === "AbortError" ? "stopped" : err.message);
      throw err;
    }
  }

  async guarded(task) {
    this.error.textContent = "";
    this.controller = new AbortController();
    this.busy(true);
    try {
      return await task();
    } catch (err) {
      this.error.textContent = err.name === "AbortError" ? "Stopped." : err.message;
      return null;
    } finally {
      this.busy(false);
      this.controller = null;
      this.onAnswered();
    }
  }

  async ask() {
    let body;
    try {
      body = this.request(this.form.elements.mode.value);
    } catch (err) {
      this.error.textContent = err.message;
      return;
    }
    document.getElementById("compare-results").hidden = true;
    const view = new AnswerView(document.getElementById("answer-slot"), `Mode ${body.blend.mode}`, (c) =>
      this.showCitation(c),
    );
    await this.guarded(() => this.run(body, view));
  }

  // The same question with mode `full`, then with the chosen mode; one after the other, so neither
  // waits behind the other and each TTFT is its own.
  async compare() {
    const mode = this.form.elements.mode.value;
    let full, chosen;
    try {
      if (mode === "full") throw new Error("Blend mode: choose a mode other than full to compare with it");
      full = this.request("full");
      chosen = this.request(mode);
    } catch (err) {
      this.error.textContent = err.message;
      return;
    }
    const section = document.getElementById("compare-results");
    const summary = document.getElementById("compare-summary");
    section.hidden = false;
    section.dataset.state = "running";
    summary.textContent = `Running full, then ${mode}…`;
    const onCitation = (c) => this.showCitation(c);
    const left = new AnswerView(document.getElementById("compare-full"), "Mode full", onCitation);
    const right = new AnswerView(document.getElementById("compare-mode"), `Mode ${mode}`, onCitation);
    const finished = await this.guarded(async () => {
      const ta = (await this.run(full, left)).timings.ttft_ms;
      const tb = (await this.run(chosen, right)).timings.ttft_ms;
      const ratio = tb < ta ? `${(ta / tb).toFixed(2)}× faster` : `${(tb / ta).toFixed(2)}× slower`;
      summary.textContent = `TTFT full ${ta.toFixed(1)} ms, ${mode} ${tb.toFixed(1)} ms: ${ratio} to first token.`;
      return true;
    });
    section.dataset.state = finished ? "done" : "failed";
    if (!finished) summary.textContent = "The comparison did not finish.";
  }
}
