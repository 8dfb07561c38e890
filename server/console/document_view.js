// A document of a collection with its chunks shaded in turn and, for a citation, the cited span marked.

import { apiJson } from "./api.js";
import { el, pageLabel, plural } from "./dom.js";

export class DocumentView {
  constructor() {
    this.section = document.getElementById("document-view");
    this.title = document.getElementById("document-title");
    this.meta = document.getElementById("document-meta");
    this.text = document.getElementById("document-text");
    document.getElementById("document-close").addEventListener("click", () => this.close());
    this.returnFocus = null;
  }

  close() {
    this.section.hidden = true;
    this.returnFocus?.focus();
  }

  // `highlight`: {start, end} character offsets to mark (a citation), or null to show the chunks only.
  async show(collection, docId, highlight) {
    this.returnFocus = document.activeElement;
    this.section.hidden = false;
    this.title.textContent = "Loading document…";
    this.meta.textContent = "";
    this.text.replaceChildren();
    let doc;
    try {
      const path = `/v1/collections/${encodeURIComponent(collection)}/documents/${encodeURIComponent(docId)}`;
      doc = await apiJson(path);
    } catch (err) {
      this.title.textContent = "Document not available";
      this.meta.textContent = err.message;
      return;
    }
    this.title.textContent = doc.name || doc.doc_id;
    const pages = highlight?.pages ? `, ${pageLabel(highlight.pages)}` : "";
    const where = highlight ? `; the cited chunk (characters ${highlight.start}–${highlight.end}${pages}) is marked` : "";
    const length = doc.pages ? ` · ${plural(doc.pages, "page")}` : "";
    this.meta.textContent = `${collection} · ${plural(doc.chunks.length, "chunk")} · ${doc.n_tokens} tokens${length}${where}`;
    this.text.replaceChildren(...segments(doc, highlight));
    this.title.focus();
    this.text.querySelector("mark")?.scrollIntoView({ block: "nearest" });
  }
}

// Cut the text at every chunk boundary and at the highlight's ends; each piece is shaded by its chunk's
// parity, and pieces inside the highlight are wrapped in <mark>.
function segments(doc, highlight) {
  const text = doc.text;
  const cuts = new Set([0, text.length]);
  for (const c of doc.chunks) cuts.add(c.start).add(c.end);
  if (highlight) cuts.add(highlight.start).add(highlight.end);
  const points = [...cuts].filter((x) => x >= 0 && x <= text.length).sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i + 1 < points.length; i += 1) {
    const [start, end] = [points[i], points[i + 1]];
    const chunk = doc.chunks.findIndex((c) => c.start <= start && end <= c.end);
    const piece = text.slice(start, end);
    const marked = highlight && highlight.start <= start && end <= highlight.end;
    const attrs = { class: chunk % 2 ? "chunk odd" : "chunk even" };
    if (chunk >= 0) attrs.title = `chunk ${chunk + 1}`;
    out.push(marked ? el("mark", attrs, [piece]) : el("span", attrs, [piece]));
  }
  return out;
}
