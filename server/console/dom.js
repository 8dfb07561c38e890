// Small DOM and formatting helpers shared by the panels. Text always goes in as text nodes, never as
// HTML, so document and answer text cannot inject markup.

export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

export function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function formatMs(ms) {
  return Number.isFinite(ms) ? `${ms.toFixed(ms < 10 ? 2 : 1)} ms` : "—";
}

export function formatPercent(share) {
  return Number.isFinite(share) ? `${(share * 100).toFixed(1)} %` : "—";
}

// A <dt>/<dd> list from [label, value, key] rows; the key (optional) names the value for scripts and tests.
export function fillStats(dl, rows) {
  dl.replaceChildren(
    ...rows.flatMap(([label, value, key]) => [
      el("dt", {}, [label]),
      el("dd", key ? { "data-key": key } : {}, [value]),
    ]),
  );
}

// "p. 3" or "pp. 3–4" for a citation's [first, last] pages.
export function pageLabel(pages) {
  const [first, last] = pages;
  return first === last ? `p. ${first}` : `pp. ${first}–${last}`;
}

// The JSON object typed in an optional field, null when it is empty; an Error naming `label` otherwise.
export function jsonObject(raw, label) {
  if (!raw.trim()) return null;
  let value;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new Error(`${label}: not valid JSON`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${label}: expected a JSON object such as {"lang": "en"}`);
  }
  return value;
}
