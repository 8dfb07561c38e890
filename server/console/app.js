// The console's entry point: wires the panels together and shows whether the model is ready.

import { AskPanel } from "./ask.js";
import { CachePanel } from "./cache_panel.js";
import { CollectionsPanel } from "./collections.js";
import { DocumentView } from "./document_view.js";
import { installKeyControls } from "./key_dialog.js";
import { UploadForm } from "./uploads.js";

const DEFAULT_POLL_MS = 3000;

// `?poll_ms=` changes how often /metrics is read (500 ms to 60 s).
function pollMs() {
  const asked = Number(new URLSearchParams(window.location.search).get("poll_ms"));
  return Number.isFinite(asked) && asked > 0 ? Math.min(60000, Math.max(500, asked)) : DEFAULT_POLL_MS;
}

async function watchReadiness(status) {
  for (;;) {
    let ready = false;
    try {
      const response = await fetch("/ready");
      const body = await response.json();
      ready = response.ok;
      status.textContent = ready
        ? `Ready: ${body.model} on the ${body.engine} engine`
        : `Model ${body.status}${body.error ? `: ${body.error}` : "…"}`;
    } catch {
      status.textContent = "The server does not answer.";
    }
    document.body.dataset.ready = String(ready);
    if (ready) return;
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function main() {
  const documentView = new DocumentView();
  const collections = new CollectionsPanel(documentView);
  const cache = new CachePanel(pollMs());
  new UploadForm(() => collections.refresh());
  new AskPanel(documentView, () => cache.poll());
  installKeyControls(
    () => {
      collections.refresh();
      cache.poll();
    },
    () => collections.clear("Key forgotten: the next request that needs one asks for it."),
  );
  watchReadiness(document.getElementById("server-status"));
  collections.refresh().then(() => cache.start());
}

main();
