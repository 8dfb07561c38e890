// Adding documents to a collection (file upload or pasted text) and following the ingestion job.

import { apiFetch, apiJson, errorMessage } from "./api.js";
import { el, jsonObject, plural } from "./dom.js";

const POLL_MS = 500;
const FINISHED = new Set(["succeeded", "failed"]);

export class UploadForm {
  constructor(onIngested) {
    this.onIngested = onIngested;
    this.form = document.getElementById("add-documents");
    this.jobs = document.getElementById("job-list");
    this.form.addEventListener("submit", (e) => this.submit(e));
  }

  body() {
    const f = this.form.elements;
    const files = [...f.files.files];
    const text = f.text.value;
    const metadata = jsonObject(f.metadata.value, "Metadata");
    if (files.length && text.trim()) throw new Error("choose files or paste text, not both");
    if (files.length) {
      const data = new FormData();
      for (const file of files) data.append("files", file, file.name);
      if (metadata) data.append("metadata", JSON.stringify(metadata));
      return { body: data };
    }
    if (!text.trim()) throw new Error("choose files (PDF, DOCX, HTML, CSV, Markdown or text), or paste some text");
    const payload = { text, name: f.doc_name.value.trim() || "pasted.txt" };
    if (metadata) payload.metadata = metadata;
    return { body: JSON.stringify(payload), headers: { "content-type": "application/json" } };
  }

  async submit(event) {
    event.preventDefault();
    const collection = this.form.elements.collection.value;
    const row = this.jobRow(collection);
    if (!collection) {
      row.fail("create a collection first");
      return;
    }
    let accepted;
    try {
      const init = { method: "POST", ...this.body() };
      const path = `/v1/collections/${encodeURIComponent(collection)}/documents`;
      const response = await apiFetch(path, init);
      if (!response.ok) throw new Error(await errorMessage(response));
      accepted = await response.json();
    } catch (err) {
      row.fail(err.message);
      return;
    }
    this.form.elements.files.value = "";
    this.form.elements.text.value = "";
    row.start(accepted);
    await this.follow(accepted.job_id, row);
    this.onIngested();
  }

  async follow(jobId, row) {
    for (;;) {
      let job;
      try {
        job = await apiJson(`/v1/jobs/${encodeURIComponent(jobId)}`);
      } catch (err) {
        row.fail(`lost the job: ${err.message}`);
        return;
      }
      row.update(job);
      if (FINISHED.has(job.state)) return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  jobRow(collection) {
    const label = el("span", { class: "job-label" }, [`${collection || "?"}: sending…`]);
    const bar = el("progress", { max: "1", value: "0" });
    const detail = el("ul", { class: "job-documents" });
    const item = el("li", { class: "job", "data-state": "sending" }, [label, bar, detail]);
    this.jobs.prepend(item);
    const labelId = `job-${Date.now()}-${Math.random().toString(36).slice(2, 7)}`;
    label.id = labelId;
    bar.setAttribute("aria-labelledby", labelId);
    return {
      start: (accepted) => {
        item.dataset.jobId = accepted.job_id;
        label.textContent = `${collection}: ${plural(accepted.documents.length, "document")} queued`;
        // files that could not be read are named at once; the job then reports the others
        detail.replaceChildren(
          ...accepted.documents
            .filter((d) => d.error)
            .map((d) => el("li", { class: "error" }, [`${d.name}: failed: ${d.error}`])),
        );
      },
      update: (job) => {
        item.dataset.state = job.state;
        bar.value = job.progress;
        const pct = Math.round(job.progress * 100);
        label.textContent = `${collection}: ${job.state}, ${job.stage} (${pct} %)`;
        detail.replaceChildren(
          ...job.documents.map((d) => {
            const outcome = d.error ? `${d.state}: ${d.error}` : `${d.state}, ${plural(d.chunks, "chunk")}`;
            return el("li", { class: d.error ? "error" : "" }, [`${d.name}: ${outcome}`]);
          }),
          ...(job.error ? [el("li", { class: "error" }, [job.error])] : []),
        );
      },
      fail: (message) => {
        item.dataset.state = "failed";
        bar.remove();
        label.textContent = `${collection || "?"}: not added`;
        detail.replaceChildren(el("li", { class: "error", role: "alert" }, [message]));
      },
    };
  }
}
