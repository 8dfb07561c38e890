// The Collections panel: list, create and delete collections, and browse a collection's documents.

import { apiFetch, apiJson, errorMessage, postJson } from "./api.js";
import { el, plural } from "./dom.js";

const SELECTS = ["upload-collection", "ask-collection"];

export class CollectionsPanel {
  constructor(documentView) {
    this.documentView = documentView;
    this.list = document.getElementById("collection-list");
    this.message = document.getElementById("collections-message");
    this.names = [];
    document.getElementById("create-collection").addEventListener("submit", (e) => this.create(e));
  }

  say(text, isError = false) {
    this.message.textContent = text;
    this.message.classList.toggle("error", isError);
  }

  // Forget what was listed (the key that showed it is gone).
  clear(message) {
    this.names = [];
    this.list.replaceChildren();
    for (const id of SELECTS) fillSelect(document.getElementById(id), []);
    this.say(message);
  }

  async refresh() {
    let collections;
    try {
      collections = (await apiJson("/v1/collections")).collections;
    } catch (err) {
      this.say(`Could not list collections: ${err.message}`, true);
      return;
    }
    this.names = collections.map((c) => c.name);
    this.list.replaceChildren(...collections.map((c) => this.item(c)));
    if (!collections.length) this.say("No collections yet: create one below.");
    else if (this.message.classList.contains("error")) this.say("");
    for (const id of SELECTS) fillSelect(document.getElementById(id), this.names);
  }

  item(c) {
    const docsId = `docs-${c.name}`;
    const toggle = el("button", { type: "button", "aria-expanded": "false", "aria-controls": docsId }, [
      "Documents",
    ]);
    toggle.setAttribute("aria-label", `Documents of ${c.name}`);
    const remove = el("button", { type: "button", class: "danger" }, ["Delete"]);
    remove.setAttribute("aria-label", `Delete collection ${c.name}`);
    const docs = el("ul", { id: docsId, class: "document-list", hidden: "" });
    toggle.addEventListener("click", () => this.toggleDocuments(c.name, toggle, docs));
    remove.addEventListener("click", () => this.remove(c.name));
    const summary = `${plural(c.documents, "document")} · ${plural(c.chunks, "chunk")} · ${c.config.chunker.method}`;
    return el("li", { class: "collection-item", "data-name": c.name }, [
      el("div", { class: "collection-head" }, [
        el("strong", {}, [c.name]),
        el("span", { class: "hint" }, [summary]),
      ]),
      el("div", { class: "actions" }, [toggle, remove]),
      docs,
    ]);
  }

  async toggleDocuments(name, toggle, docs) {
    const open = toggle.getAttribute("aria-expanded") === "true";
    toggle.setAttribute("aria-expanded", String(!open));
    docs.hidden = open;
    if (open) return;
    try {
      const detail = await apiJson(`/v1/collections/${encodeURIComponent(name)}`);
      const items = detail.document_list.map((d) => {
        const show = el("button", { type: "button", class: "link" }, [d.name || d.doc_id]);
        show.addEventListener("click", () => this.documentView.show(name, d.doc_id, null));
        const size = d.pages ? `${plural(d.pages, "page")}, ${plural(d.n_chunks, "chunk")}` : plural(d.n_chunks, "chunk");
        return el("li", {}, [show, el("span", { class: "hint" }, [` ${size}`])]);
      });
      docs.replaceChildren(...(items.length ? items : [el("li", { class: "hint" }, ["No documents yet."])]));
    } catch (err) {
      docs.replaceChildren(el("li", { class: "error" }, [err.message]));
    }
  }

  async create(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const name = form.elements.name.value.trim();
    const method = form.elements.chunker.value;
    const body = { name, chunker: { method } };
    const size = Number(form.elements.chunk_size.value);
    if (size) body.chunker[method === "fixed" ? "size" : "merge_target"] = size;
    try {
      await postJson("/v1/collections", body);
      form.elements.name.value = "";
      form.elements.chunk_size.value = "";
      await this.refresh();
      this.say(`Created collection ${name}.`);
      for (const id of SELECTS) document.getElementById(id).value = name;
    } catch (err) {
      this.say(`Could not create ${name}: ${err.message}`, true);
    }
  }

  async remove(name) {
    if (!window.confirm(`Delete collection ${name} and all its documents?`)) return;
    try {
      const response = await apiFetch(`/v1/collections/${encodeURIComponent(name)}`, { method: "DELETE" });
      if (!response.ok) throw new Error(await errorMessage(response));
    } catch (err) {
      this.say(`Could not delete ${name}: ${err.message}`, true);
      return;
    }
    await this.refresh();
    this.say(`Deleted collection ${name}.`);
  }
}

function fillSelect(select, names) {
  const current = select.value;
  select.replaceChildren(...names.map((n) => el("option", { value: n }, [n])));
  if (names.includes(current)) select.value = current;
}
