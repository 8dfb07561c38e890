// A small line chart drawn as inline SVG: one polyline per series over the last samples, a y axis with
// its top and bottom values, and a legend in HTML (colour plus dash pattern, so lines differ without
// colour too). Gaps (null values) break a line.

import { el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 320;
const HEIGHT = 110;
const PAD = { left: 44, right: 6, top: 8, bottom: 14 };
// Dark enough for 3:1 against white; paired with dashes for readers who cannot tell them apart.
export const STYLES = [
  { color: "#0a58a8", dash: "" },
  { color: "#b3261e", dash: "6 3" },
  { color: "#1e6b34", dash: "2 3" },
  { color: "#6a3d9a", dash: "8 3 2 3" },
  { color: "#8a5a00", dash: "1 2" },
];

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// series: [{name, values: (number|null)[]}]; yMax: the top of the axis (or null: the data's maximum);
// format: how the axis labels print a value. `describe` summarises the latest values for screen readers.
export function drawChart(container, series, { yMax = null, format = String, describe = "" } = {}) {
  const n = Math.max(0, ...series.map((s) => s.values.length));
  const finite = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const top = yMax ?? Math.max(1, ...finite);
  const w = WIDTH - PAD.left - PAD.right;
  const h = HEIGHT - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (n > 1 ? (i / (n - 1)) * w : w);
  const y = (v) => PAD.top + h - (Math.min(v, top) / top) * h;

  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "chart-svg" });
  root.setAttribute("aria-label", describe || "no samples yet");
  for (const [v, label] of [
    [top, format(top)],
    [0, format(0)],
  ]) {
    root.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    const text = svg("text", { x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" });
    text.textContent = label;
    root.append(text);
  }
  const caption = svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 2, "text-anchor": "end", class: "axis" });
  caption.textContent = n ? `last ${n} samples` : "waiting for samples";
  root.append(caption);

  series.forEach((s, k) => {
    const style = STYLES[k % STYLES.length];
    let run = [];
    const flush = () => {
      if (run.length === 1) {
        root.append(svg("circle", { cx: run[0][0], cy: run[0][1], r: 2.5, fill: style.color }));
      } else if (run.length > 1) {
        const points = run.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
        const attrs = { points, fill: "none", stroke: style.color, "stroke-width": 2 };
        if (style.dash) attrs["stroke-dasharray"] = style.dash;
        root.append(svg("polyline", attrs));
      }
      run = [];
    };
    s.values.forEach((v, i) => (Number.isFinite(v) ? run.push([x(i), y(v)]) : flush()));
    flush();
  });

  const legend = el(
    "ul",
    { class: "legend" },
    series.map((s, k) => {
      const style = STYLES[k % STYLES.length];
      const swatch = svg("svg", { viewBox: "0 0 24 8", width: 24, height: 8, "aria-hidden": "true" });
      const line = { x1: 0, x2: 24, y1: 4, y2: 4, stroke: style.color, "stroke-width": 2 };
      if (style.dash) line["stroke-dasharray"] = style.dash;
      swatch.append(svg("line", line));
      return el("li", {}, [swatch, ` ${s.name}`]);
    }),
  );
  container.replaceChildren(root, legend);
}
