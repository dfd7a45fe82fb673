// Grouped bar charts as inline SVG (no library, nothing fetched); the tables next to them
// carry the same numbers for screen readers.

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#0b57d0", "#b3261e", "#146c2e", "#7c4dbd", "#a15c00", "#00677d"];

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * A grouped horizontal bar chart: one group per category, one bar per series.
 * `series`: [{name, values: [number|null per category]}]; `max` defaults to the largest value.
 */
export function barChart({ title, categories, series, max, format = (v) => String(v) }) {
  // Drawn in fewer units on a phone, so its text is not scaled down to an unreadable size.
  const width = window.matchMedia("(max-width: 599px)").matches ? 340 : 560;
  const barH = 14;
  const gap = 10;
  // Room for the longest label (about 7 units a character at 12px), within limits; longer
  // labels wrap at their underscores instead of being cut off at the left edge.
  const longest = Math.max(0, ...categories.map((c) => String(c).length));
  const labelW = Math.min(Math.max(90, longest * 7 + 12), Math.round(width * (width < 400 ? 0.42 : 0.4)));
  const lines = categories.map((c) => wrapLabel(String(c), Math.floor((labelW - 12) / 7)));
  const plotW = width - labelW - 70;
  const groupHs = lines.map((l) => Math.max(series.length * barH, l.length * 14) + gap);
  const legendH = series.length > 1 ? 26 : 4;
  const height = legendH + groupHs.reduce((a, b) => a + b, 0) + 8;
  const top = Math.max(max ?? 0, ...series.flatMap((x) => x.values.filter((v) => typeof v === "number"))) || 1;
  const id = `chart-${Math.random().toString(36).slice(2, 9)}`;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": id, class: "chart" });
  svg.append(s("title", { id }, title));
  series.forEach((x, i) => {
    if (series.length < 2) return;
    const lx = labelW + i * (width < 400 ? 80 : 110);
    svg.append(s("rect", { x: lx, y: 4, width: 12, height: 12, fill: COLORS[i % COLORS.length] }));
    svg.append(s("text", { x: lx + 16, y: 14, class: "chart-legend" }, x.name));
  });
  let y0 = legendH;
  categories.forEach((category, c) => {
    const middle = y0 + (groupHs[c] - gap) / 2;
    const label = s("text", { x: labelW - 8, y: middle + 4 - ((lines[c].length - 1) * 14) / 2, "text-anchor": "end", class: "chart-label" });
    lines[c].forEach((line, i) => label.append(s("tspan", { x: labelW - 8, dy: i ? 14 : 0 }, line)));
    svg.append(label);
    series.forEach((x, i) => {
      const value = x.values[c];
      const y = y0 + i * barH;
      const w = typeof value === "number" ? Math.max(1, (value / top) * plotW) : 0;
      svg.append(s("rect", { x: labelW, y, width: w, height: barH - 2, fill: COLORS[i % COLORS.length] }));
      svg.append(s("text", { x: labelW + w + 4, y: y + barH - 4, class: "chart-value" }, typeof value === "number" ? format(value, category) : "–"));
    });
    y0 += groupHs[c];
  });
  svg.append(s("line", { x1: labelW, x2: labelW, y1: legendH, y2: height - 8, class: "chart-axis" }));
  return svg;
}

/** A label as lines of at most `max` characters, broken after underscores or spaces. */
function wrapLabel(text, max) {
  if (text.length <= max) return [text];
  const words = text.split(/(?<=[_ ])/);
  const out = [""];
  for (const word of words) {
    if (out[out.length - 1] && (out[out.length - 1] + word).length > max) out.push("");
    out[out.length - 1] += word;
  }
  return out;
}
