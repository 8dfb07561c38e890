// The dialog that asks for an API key when the server answers 401 (`reason`: a sentence saying why).
// One request for a key at a time: calls that fail together wait on the same dialog.

import { ApiError, getKey, setKey } from "./api.js";

let pending = null;

function elements() {
  return {
    dialog: document.getElementById("key-dialog"),
    form: document.getElementById("key-form"),
    input: document.getElementById("key-input"),
    reason: document.getElementById("key-dialog-reason"),
    cancel: document.getElementById("key-cancel"),
  };
}

export function requestKey(reason) {
  if (pending) return pending;
  const { dialog, form, input, reason: reasonText, cancel } = elements();
  pending = new Promise((resolve, reject) => {
    const finish = (key) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      input.value = "";
      pending = null;
      if (key) {
        setKey(key);
        resolve(key);
      } else {
        reject(new ApiError(401, "no API key was given"));
      }
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (key) finish(key);
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish("");
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel); // Escape
    reasonText.textContent = reason;
    dialog.showModal();
    input.focus();
  });
  return pending;
}

// The header's "API key" button: enter or replace the key without waiting for a 401. "Forget key"
// drops it and calls `onForget` (no prompt: the next action that needs a key asks for one).
export function installKeyControls(onChange, onForget) {
  const button = document.getElementById("key-button");
  const forget = document.getElementById("forget-key");
  const refresh = () => {
    const hasKey = Boolean(getKey());
    forget.hidden = !hasKey;
    button.textContent = hasKey ? "Change API key" : "API key";
  };
  button.addEventListener("click", () => {
    requestKey("Enter the API key to use in this tab.").then(onChange, () => {});
  });
  forget.addEventListener("click", () => {
    setKey("");
    onForget();
  });
  document.addEventListener("ragblend:key-changed", refresh);
  refresh();
}
