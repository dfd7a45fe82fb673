// The evaluations page: past `ondata eval` runs (GET /v1/evaluations) and, for one run, its
// facts, metric tables and bar charts (GET /v1/evaluations/{id}).

import { ApiError, api, describeError } from "./api.js";
import { barChart as svgChart } from "./charts.js";
import { formatDate, formatMetric, formatNumber, h, replace } from "./dom.js";

// A command that works on a fresh clone (the smoke set ships in data/eval/smoke).
export const FIRST_RUN_COMMAND = "ondata eval retrieval --dataset data/eval/smoke";
const LOWER = " (lower is better)";

const FACTS = [["dataset", "Dataset"], ["split", "Split"], ["created_at", "Run at"], ["docs", "Documents"], ["queries", "Queries"],
  ["questions", "Questions"], ["seconds", "Seconds"], ["target", "Target"], ["judge", "Judge model"]];

export function mountEvaluations(root, shell) {
  const list = h("div", { class: "table-wrap" });
  const detail = h("div", { class: "evaluation-detail" });
  root.append(h("div", { class: "evaluations-page" },
    h("h1", { text: "Evaluations" }),
    h("p", { class: "hint" }, "Runs of ", h("code", { text: "ondata eval" }), " on this server: retrieval quality per search mode, and answer quality."),
    h("section", { class: "card", "aria-labelledby": "runs-title" }, h("h2", { id: "runs-title", text: "Past runs" }), list),
    detail));
  const open = async (id, focus) => {
    try {
      renderRun(detail, await api("GET", `/v1/evaluations/${encodeURIComponent(id)}`));
      list.querySelectorAll("[aria-current]").forEach((b) => b.removeAttribute("aria-current"));
      list.querySelector(`[data-run="${CSS.escape(id)}"]`)?.setAttribute("aria-current", "true");
      if (focus) detail.querySelector("h2")?.focus();
    } catch (err) {
      replace(detail, errorNotice(err));
    }
  };
  loadRuns(list, open, shell.params.get("run"));
  return null;
}

async function loadRuns(box, open, wanted) {
  let runs;
  try {
    runs = (await api("GET", "/v1/evaluations")).data || [];
  } catch (err) {
    replace(box, errorNotice(err));
    return;
  }
  if (!runs.length) {
    replace(box, h("div", { class: "empty-runs" },
      h("p", { text: "No evaluation runs yet. In the server's ondata folder, run:" }),
      h("pre", {}, h("code", { text: FIRST_RUN_COMMAND })),
      h("p", { class: "hint" }, "It scores retrieval on the bundled smoke set; ", h("code", { text: "ondata eval answers --dataset FILE" }),
        " scores answers on a QA set. Runs appear here when they finish.")));
    return;
  }
  const rows = runs.map((run) => h("tr", {},
    h("th", { scope: "row" }, h("button", { type: "button", class: "link-button", "data-run": run.id, text: formatDate(run.created_at) || run.id, on: { click: () => open(run.id, true) } })),
    h("td", { text: run.kind }),
    h("td", { text: run.dataset }),
    h("td", { class: "num", text: formatNumber(run.queries ?? run.questions) }),
    h("td", { class: "num", text: formatNumber(run.seconds, 1) }),
    h("td", {}, run.gate_passed === null || run.gate_passed === undefined ? "–"
      : h("span", { class: `badge ${run.gate_passed ? "status-succeeded" : "status-failed"}`, text: run.gate_passed ? "passed" : "failed" }))));
  replace(box, h("table", {},
    h("caption", { class: "visually-hidden", text: "Evaluation runs, newest first" }),
    h("thead", {}, h("tr", {}, ["Run", "Kind", "Dataset", "Queries", "Seconds", "Gate"].map((c) => h("th", { scope: "col", text: c, class: ["Queries", "Seconds"].includes(c) ? "num" : null })))),
    h("tbody", {}, rows)));
  open(wanted && runs.some((r) => r.id === wanted) ? wanted : runs[0].id, false);
}

function renderRun(box, run) {
  const facts = FACTS.filter(([k]) => run[k] !== undefined && run[k] !== null)
    .flatMap(([k, label]) => [h("dt", { text: label }), h("dd", { text: k === "created_at" ? formatDate(run[k]) : k === "seconds" ? formatMetric(k, run[k]) : formatNumber(run[k]) })]);
  replace(box,
    h("h2", { id: "run-title", tabindex: "-1", text: `${run.kind === "retrieval" ? "Retrieval" : "Answer"} evaluation — ${run.dataset}` }),
    h("p", { class: "hint" }, h("code", { text: run.id })),
    h("dl", { class: "facts" }, facts),
    gateNode(run.gate),
    run.kind === "retrieval" ? retrievalSections(run) : answerSections(run),
    settingsNode(run));
}

function retrievalSections(run) {
  const modes = Object.keys(run.modes || {});
  const metrics = [...new Set(modes.flatMap((m) => Object.keys(run.modes[m])))];
  const latency = run.latency_ms || {};
  const percentiles = ["p50", "p95"].filter((p) => modes.some((m) => latency[m]?.[p] !== undefined));
  return [
    h("section", { class: "card", "aria-labelledby": "quality-title" },
      h("h3", { id: "quality-title", text: "Retrieval quality" }),
      table(`Retrieval metrics per search mode (k=${run.k ?? 10})`, ["Metric", ...modes], metrics.map((n) => [n, ...modes.map((m) => run.modes[m][n])])),
      barChart({ title: "Retrieval metrics per search mode", categories: metrics, max: 1, format: formatMetric0,
        series: modes.map((m) => ({ name: m, values: metrics.map((n) => run.modes[m][n]) })) })),
    percentiles.length ? h("section", { class: "card", "aria-labelledby": "latency-title" },
      h("h3", { id: "latency-title", text: "Search latency (ms)" }),
      table("Search latency per mode, milliseconds", ["Percentile", ...modes], percentiles.map((p) => [p, ...modes.map((m) => latency[m]?.[p])])),
      barChart({ title: "Search latency per mode (ms)", categories: percentiles, format: (v) => formatMetric("latency", v),
        series: modes.map((m) => ({ name: m, values: percentiles.map((p) => latency[m]?.[p] ?? null) })) })) : null,
  ];
}

function answerSections(run) {
  const lower = new Set(run.lower_is_better || []);
  const metrics = Object.entries(run.metrics || {});
  const numeric = metrics.filter(([n, v]) => typeof v === "number" && !/latency|_ms$/.test(n));
  const judge = numeric.filter(([n]) => n.startsWith("judge"));
  const groups = [
    ["Answer metrics (higher is better)", numeric.filter(([n]) => !lower.has(n) && !n.startsWith("judge")), 1],
    ["Rates where lower is better", numeric.filter(([n]) => lower.has(n)), 1],
    ["Judge scores, 1 to 5 (higher is better)", judge, 5],
  ];
  const counts = Object.entries(run.counts || {});
  return [
    h("section", { class: "card", "aria-labelledby": "answer-title" },
      h("h3", { id: "answer-title", text: "Answer quality" }),
      table("Answer metrics", ["Metric", "Value"], metrics.map(([n, v]) => [lower.has(n) ? n + LOWER : n, v])),
      groups.filter(([, rows]) => rows.length).map(([title, rows, max]) => barChart({ title, categories: rows.map(([n]) => n), max,
        format: formatMetric0, series: [{ name: "value", values: rows.map(([, v]) => v) }] }))),
    counts.length ? h("section", { class: "card", "aria-labelledby": "counts-title" },
      h("h3", { id: "counts-title", text: "Questions" }),
      table("Answered, refused and failed questions", ["Outcome", "Count"], counts, (_, v) => formatNumber(v)),
      barChart({ title: "Questions by outcome", categories: counts.map(([n]) => n), series: [{ name: "count", values: counts.map(([, v]) => v) }] })) : null,
  ];
}

function gateNode(gate) {
  if (!gate) return null;
  const regressions = gate.regressions || [];
  return h("div", { class: `notice ${gate.passed ? "success" : "error"}` },
    h("p", {}, h("strong", { text: `Regression gate ${gate.passed ? "passed" : "failed"}` }), ` against ${gate.baseline} (tolerance ${gate.tolerance})`),
    regressions.length ? h("ul", {}, regressions.map((r) => h("li", { text: `${r.metric}: ${formatMetric(r.metric, r.current)} (baseline ${formatMetric(r.metric, r.baseline)})` }))) : null);
}

function settingsNode(run) {
  const entries = Object.entries({ ...(run.settings || {}), ...(run.index || {}) });
  if (!entries.length) return null;
  return h("details", { class: "card" }, h("summary", { text: "Index and settings" }),
    h("dl", { class: "facts" }, entries.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: typeof v === "object" ? JSON.stringify(v) : formatNumber(v, 3) })])));
}

/** A chart with its title shown above it (the SVG's own title is only its accessible name). */
function barChart(options) {
  return h("figure", { class: "chart-figure" }, h("figcaption", { text: options.title }), svgChart(options));
}

/** barChart's format for a category that is a metric name. */
function formatMetric0(value, name) {
  return formatMetric(name, value);
}

function table(caption, header, rows, format = formatMetric) {
  // Focusable, so a table wider than a phone can be scrolled from the keyboard.
  return h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": caption }, h("table", { class: "metrics" },
    h("caption", { text: caption }),
    h("thead", {}, h("tr", {}, header.map((c, i) => h("th", { scope: "col", text: c, class: i ? "num" : null })))),
    h("tbody", {}, rows.map(([first, ...rest]) => h("tr", {}, h("th", { scope: "row", text: first }), rest.map((v) => h("td", { class: "num", text: format(first, v) })))))));
}

function errorNotice(err) {
  if (err instanceof ApiError && err.missingRoute) return h("p", { class: "notice warning", role: "alert", text: "Evaluation runs are not available on this server." });
  const { title, detail } = describeError(err);
  return h("div", { class: "notice error", role: "alert" }, h("p", {}, h("strong", { text: title })), h("p", { text: detail }));
}
