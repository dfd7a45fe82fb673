// The chat parameters panel: index, top_n_documents, strictness, in_scope, query type,
// temperature and the system message (role_information); kept in localStorage.

import { api } from "./api.js";
import { field, h, newId, replace } from "./dom.js";

const STORAGE = "ondata.chatParams";
const DEFAULTS = {
  index_name: "default",
  top_n_documents: 5,
  strictness: 3,
  in_scope: true,
  query_type: "vector_simple_hybrid",
  temperature: "",
  role_information: "",
};
const QUERY_TYPES = [
  ["vector_simple_hybrid", "Hybrid (dense + BM25)"],
  ["vector", "Vector (dense)"],
  ["simple", "Keyword (BM25)"],
];
// offered only when the server has a reranker (without one they run as plain hybrid)
const RERANKED_QUERY_TYPES = [
  ["vector_semantic_hybrid", "Hybrid, reranked (semantic)"],
  ["semantic", "Keyword, reranked (semantic)"],
];

function load() {
  try { return { ...DEFAULTS, ...JSON.parse(localStorage.getItem(STORAGE) || "{}") }; } catch { return { ...DEFAULTS }; }
}

/** The parameters panel; `onChange(params)` is not needed, callers read `values()`. */
export class ParamsPanel {
  constructor() {
    this.params = load();
    this.indexes = null; // [{name, document_count?}] when the server lists indexes
    this.reranker = null; // the server's reranker, when it has one
    this.el = h("aside", { class: "params", "aria-labelledby": "params-title" });
    this.indexSlot = h("div");
    this.warning = h("p", { class: "notice warning", hidden: true, id: "index-warning" });
    this.render();
  }

  render() {
    const id = (name) => newId(`param-${name}`);
    const p = this.params;
    this.controls = {
      top_n_documents: h("input", { id: id("top"), type: "number", min: 1, max: 20, step: 1, value: p.top_n_documents, required: true }),
      strictness: h("select", { id: id("strict") }, [1, 2, 3, 4, 5].map((n) => h("option", { value: n, selected: Number(p.strictness) === n, text: `${n}${n === 1 ? " (loosest)" : n === 5 ? " (strictest)" : ""}` }))),
      in_scope: h("input", { id: id("scope"), type: "checkbox", checked: p.in_scope }),
      query_type: h("select", { id: id("qt") }, this.queryTypes().map(([v, label]) => h("option", { value: v, selected: p.query_type === v, text: label }))),
      temperature: h("input", { id: id("temp"), type: "number", min: 0, max: 2, step: 0.1, value: p.temperature, placeholder: "model default" }),
      role_information: h("textarea", { id: id("role"), rows: 4, maxlength: 4000, value: p.role_information, placeholder: "e.g. You are an HR assistant. Answer briefly." }),
    };
    for (const control of Object.values(this.controls)) control.addEventListener("change", () => this.save());
    const c = this.controls;
    const form = h("form", { class: "params-form", on: { submit: (e) => e.preventDefault() } },
      this.indexSlot,
      this.warning,
      field("Documents given to the model (top_n_documents)", c.top_n_documents, "1–20"),
      field("Strictness", c.strictness, "Higher drops less relevant documents."),
      h("div", { class: "field inline" }, c.in_scope, h("label", { for: c.in_scope.id, text: "Answer only from the documents (in_scope)" })),
      field("Query type", c.query_type),
      field("Temperature", c.temperature, "0–2; empty for the model's default."),
      field("System message (role_information)", c.role_information),
    );
    const details = h("details", { class: "panel", open: !window.matchMedia("(max-width: 899px)").matches },
      h("summary", {}, h("h2", { id: "params-title", text: "Parameters" })), form);
    replace(this.el, details);
    this.renderIndexControl();
  }

  renderIndexControl() {
    const controlId = newId("param-index");
    let control;
    if (this.indexes && this.indexes.length) {
      const names = this.indexes.map((i) => i.name);
      if (!names.includes(this.params.index_name)) this.params.index_name = names[0];
      control = h("select", { id: controlId }, this.indexes.map((i) => h("option", {
        value: i.name, selected: i.name === this.params.index_name,
        text: i.document_count === 0 ? `${i.name} (empty)` : i.name,
      })));
    } else {
      control = h("input", { id: controlId, type: "text", value: this.params.index_name, required: true, autocomplete: "off", spellcheck: "false" });
    }
    control.addEventListener("change", () => this.save());
    this.controls.index_name = control;
    replace(this.indexSlot, field("Index", control));
    this.updateWarning();
  }

  /** [value, label] of the query types the server runs as asked. */
  queryTypes() {
    return this.reranker ? [...QUERY_TYPES, ...RERANKED_QUERY_TYPES] : QUERY_TYPES;
  }

  /** Ask the server whether it reranks (GET /v1/search/capabilities): if so, offer the semantic types. */
  async loadQueryTypes() {
    try {
      this.reranker = (await api("GET", "/v1/search/capabilities")).reranker || null;
    } catch {
      this.reranker = null;
    }
    if (this.reranker) this.render();
    this.el.dataset.queryTypes = this.reranker ? "reranked" : "plain";
  }

  /** Ask the server for its indexes (GET /v1/indexes); without that route, a text field. */
  async loadIndexes() {
    // the control is rebuilt when the list arrives: say so until then (tests wait on it)
    this.el.dataset.indexes = "loading";
    try {
      const body = await api("GET", "/v1/indexes");
      this.indexes = (body.data || body.indexes || []).map((i) => ({ name: i.name, document_count: i.document_count ?? i.documents ?? null }));
    } catch {
      this.indexes = null;
    }
    this.renderIndexControl();
    this.el.dataset.indexes = this.indexes ? "listed" : "unlisted";
  }

  updateWarning() {
    const info = this.indexes?.find((i) => i.name === this.params.index_name);
    if (this.indexes && this.indexes.length === 0) {
      this.warning.textContent = "This server has no indexes yet. Create one and add documents on the Data page.";
      this.warning.hidden = false;
    } else if (info && info.document_count === 0) {
      this.warning.textContent = `Index “${info.name}” is empty: add documents on the Data page before asking.`;
      this.warning.hidden = false;
    } else {
      this.warning.hidden = true;
    }
  }

  /** Whether the chosen index is known to hold no documents. */
  get indexEmpty() {
    const info = this.indexes?.find((i) => i.name === this.params.index_name);
    return Boolean(info && info.document_count === 0);
  }

  save() {
    const c = this.controls;
    this.params = {
      index_name: c.index_name.value.trim(),
      top_n_documents: Number(c.top_n_documents.value) || DEFAULTS.top_n_documents,
      strictness: Number(c.strictness.value),
      in_scope: c.in_scope.checked,
      query_type: c.query_type.value,
      temperature: c.temperature.value,
      role_information: c.role_information.value,
    };
    localStorage.setItem(STORAGE, JSON.stringify(this.params));
    this.updateWarning();
  }

  /** The request fields: data_sources (OYD) and temperature. */
  requestFields() {
    this.save();
    const p = this.params;
    const parameters = {
      index_name: p.index_name,
      top_n_documents: p.top_n_documents,
      strictness: p.strictness,
      in_scope: p.in_scope,
      query_type: p.query_type,
    };
    if (p.role_information.trim()) parameters.role_information = p.role_information.trim();
    const fields = { data_sources: [{ type: "ondata", parameters }] };
    if (p.temperature !== "" && !Number.isNaN(Number(p.temperature))) fields.temperature = Number(p.temperature);
    return fields;
  }

  /** Whether every field holds a valid value (reports the first problem to the user). */
  validate() {
    for (const control of Object.values(this.controls)) {
      if (!control.checkValidity()) {
        this.el.querySelector("details").open = true;
        control.reportValidity();
        return false;
      }
    }
    return true;
  }
}
