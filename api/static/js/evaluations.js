// The evaluations page: past `ondata eval` runs (GET /v1/evaluations) and, for one run, its
// facts, metric tables and bar charts (GET /v1/evaluations/{id}).

import { ApiError, api, describeError } from "./api.js";
import { barChart } from "./charts.js";
import { formatDate, formatNumber, h, replace } from "./dom.js";

const FACTS = [["dataset", "Dataset"], ["split", "Split"], ["created_at", "Run at"], ["docs", "Documents"], ["queries", "Queries"],
  ["questions", "Questions"], ["seconds", "Seconds"], ["target", "Target"], ["judge", "Judge model"]];

export function mountEvaluations(root, shell) {
  const list = h("div", { class: "table-wrap" });
  const detail = h("div", { class: "evaluation-detail" });
  root.append(h("div", { class: "evaluations-page" },
    h("h1", { text: "Evaluations" }),
    h("p", { class: "hint", text: "Runs of `ondata eval` on this server: retrieval quality per search mode, and answer quality." }),
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
    replace(box, h("p", { class: "hint", text: "No evaluation runs yet. Run `ondata eval retrieval smoke` (or `ondata eval answers …`) on the server." }));
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
    .flatMap(([k, label]) => [h("dt", { text: label }), h("dd", { text: k === "created_at" ? formatDate(run[k]) : formatNumber(run[k], 2) })]);
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
      barChart({ title: "Retrieval metrics per search mode", categories: metrics, max: 1, format: (v) => v.toFixed(3),
        series: modes.map((m) => ({ name: m, values: metrics.map((n) => run.modes[m][n]) })) })),
    percentiles.length ? h("section", { class: "card", "aria-labelledby": "latency-title" },
      h("h3", { id: "latency-title", text: "Search latency (ms)" }),
      table("Search latency per mode, milliseconds", ["Percentile", ...modes], percentiles.map((p) => [p, ...modes.map((m) => latency[m]?.[p])])),
      barChart({ title: "Search latency per mode (ms)", categories: percentiles, format: (v) => v.toFixed(1),
        series: modes.map((m) => ({ name: m, values: percentiles.map((p) => latency[m]?.[p] ?? null) })) })) : null,
  ];
}

function answerSections(run) {
  const metrics = Object.entries(run.metrics || {});
  const rates = metrics.filter(([n, v]) => typeof v === "number" && !n.startsWith("latency"));
  const counts = Object.entries(run.counts || {});
  return [
    h("section", { class: "card", "aria-labelledby": "answer-title" },
      h("h3", { id: "answer-title", text: "Answer quality" }),
      table("Answer metrics", ["Metric", "Value"], metrics),
      rates.length ? barChart({ title: "Answer metrics", categories: rates.map(([n]) => n), max: 1, format: (v) => v.toFixed(3),
        series: [{ name: "value", values: rates.map(([, v]) => v) }] }) : null),
    counts.length ? h("section", { class: "card", "aria-labelledby": "counts-title" },
      h("h3", { id: "counts-title", text: "Questions" }),
      table("Answered, refused and failed questions", ["Outcome", "Count"], counts),
      barChart({ title: "Questions by outcome", categories: counts.map(([n]) => n), series: [{ name: "count", values: counts.map(([, v]) => v) }] })) : null,
  ];
}

function gateNode(gate) {
  if (!gate) return null;
  const regressions = gate.regressions || [];
  return h("div", { class: `notice ${gate.passed ? "success" : "error"}` },
    h("p", {}, h("strong", { text: `Regression gate ${gate.passed ? "passed" : "failed"}` }), ` against ${gate.baseline} (tolerance ${gate.tolerance})`),
    regressions.length ? h("ul", {}, regressions.map((r) => h("li", { text: `${r.metric}: ${formatNumber(r.current, 4)} (baseline ${formatNumber(r.baseline, 4)})` }))) : null);
}

function settingsNode(run) {
  const entries = Object.entries({ ...(run.settings || {}), ...(run.index || {}) });
  if (!entries.length) return null;
  return h("details", { class: "card" }, h("summary", { text: "Index and settings" }),
    h("dl", { class: "facts" }, entries.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: typeof v === "object" ? JSON.stringify(v) : formatNumber(v, 3) })])));
}

function table(caption, header, rows) {
  // Focusable, so a table wider than a phone can be scrolled from the keyboard.
  return h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": caption }, h("table", { class: "metrics" },
    h("caption", { text: caption }),
    h("thead", {}, h("tr", {}, header.map((c, i) => h("th", { scope: "col", text: c, class: i ? "num" : null })))),
    h("tbody", {}, rows.map(([first, ...rest]) => h("tr", {}, h("th", { scope: "row", text: first }), rest.map((v) => h("td", { class: "num", text: formatNumber(v, 4) })))))));
}

function errorNotice(err) {
  if (err instanceof ApiError && err.missingRoute) return h("p", { class: "notice warning", role: "alert", text: "Evaluation runs are not available on this server." });
  const { title, detail } = describeError(err);
  return h("div", { class: "notice error", role: "alert" }, h("p", {}, h("strong", { text: title })), h("p", { text: detail }));
}
