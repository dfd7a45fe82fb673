// Rendering of chat turns: answer text with clickable [docN] markers, the search intent,
// the sources list, feedback controls, and the citation side panel.

import { describeError, downloadDocument } from "./api.js";
import { h, replace } from "./dom.js";

const MARKER = /\[doc(\d+)\]/g;
export const FEEDBACK_CATEGORIES = [
  ["missing_citation", "Missing citation"],
  ["wrong_citation", "Wrong citation"],
  ["out_of_scope", "Out of scope"],
  ["inaccurate", "Inaccurate"],
  ["other", "Other"],
];

/** The citation numbers the text cites, in order of first use (valid ones only). */
export function citedNumbers(text, citations) {
  const seen = [];
  for (const match of text.matchAll(MARKER)) {
    const n = Number(match[1]);
    if (n >= 1 && n <= citations.length && !seen.includes(n)) seen.push(n);
  }
  return seen;
}

/** A citation's short label: its title (or file), with the page when known. */
export function citationLabel(citation) {
  const name = citation.title || citation.filepath || citation.url || citation.doc_id || "Untitled";
  return citation.page ? `${name}, page ${citation.page}` : name;
}

/**
 * For sources whose labels are the same (one document cited at several places), what tells
 * them apart: the section and a snippet of the cited text; "" for a source whose label is unique.
 */
export function sourceDetails(citations) {
  const labels = citations.map(citationLabel);
  return citations.map((citation, i) => {
    if (labels.indexOf(labels[i]) === labels.lastIndexOf(labels[i])) return "";
    const snippet = (citation.content || "").replace(/\s+/g, " ").trim();
    const short = snippet.length > 90 ? `${snippet.slice(0, 90).replace(/\s\S*$/, "")}…` : snippet;
    return [citation.section, short && `“${short}”`].filter(Boolean).join(" — ");
  });
}

/** Answer text as nodes: [docN] markers become buttons that call `onCite(n, button)`. */
export function answerNodes(text, citations, onCite) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(MARKER)) {
    const n = Number(match[1]);
    if (n < 1 || n > citations.length) continue;
    nodes.push(text.slice(last, match.index));
    const button = h("button", {
      type: "button", class: "cite", "data-cite": n, text: String(n),
      "aria-label": `Source ${n}: ${citationLabel(citations[n - 1])}`,
    });
    button.addEventListener("click", () => onCite(n, button));
    nodes.push(button);
    last = match.index + match[0].length;
  }
  nodes.push(text.slice(last));
  return nodes;
}

/** The search queries of an answer, from OYD's JSON-encoded `intent` (or a list). */
export function intentQueries(intent) {
  if (!intent) return [];
  if (Array.isArray(intent)) return intent.map(String);
  try {
    const parsed = JSON.parse(intent);
    return Array.isArray(parsed) ? parsed.map(String) : [String(parsed)];
  } catch {
    return [String(intent)];
  }
}

/** The side panel that shows one cited chunk: title, page, source and the text itself. */
export class CitationPanel {
  constructor() {
    this.title = h("h2", { id: "citation-title", tabindex: "-1" });
    this.meta = h("dl", { class: "citation-meta" });
    this.content = h("blockquote", { class: "citation-content" });
    this.closeButton = h("button", { type: "button", class: "button secondary close", "aria-label": "Close source panel", text: "Close" });
    this.closeButton.addEventListener("click", () => this.close());
    this.el = h("aside", { class: "citation-panel", id: "citation-panel", hidden: true, "aria-labelledby": "citation-title" },
      h("div", { class: "citation-head" }, h("p", { class: "eyebrow", id: "citation-number" }), this.closeButton),
      this.title, this.meta, h("h3", { class: "small-heading", text: "Cited text" }), this.content);
    this.el.addEventListener("keydown", (e) => { if (e.key === "Escape") this.close(); });
    this.returnFocus = null;
  }

  /** Show citation `n` (1-based) and move focus to the panel. */
  open(n, citation, opener) {
    this.returnFocus = opener || null;
    this.el.querySelector("#citation-number").textContent = `Source ${n}`;
    this.title.textContent = citation.title || citation.filepath || "Untitled document";
    replace(this.meta, ...metaRows(citation));
    replace(this.content, ...paragraphs(citation.content || ""));
    this.el.hidden = false;
    document.body.classList.add("citation-open");
    this.title.focus();
  }

  close() {
    if (this.el.hidden) return;
    this.el.hidden = true;
    document.body.classList.remove("citation-open");
    this.returnFocus?.focus();
  }
}

function metaRows(citation) {
  const rows = [];
  const add = (term, value) => rows.push(h("dt", { text: term }), h("dd", {}, value));
  if (citation.page) add("Page", String(citation.page));
  if (citation.url && /^https?:\/\//i.test(citation.url)) {
    add("Source", h("a", { href: citation.url, target: "_blank", rel: "noopener noreferrer", text: citation.url }));
  } else if (citation.url) {
    add("Source", citation.url);
  }
  if (citation.filepath) add("File", citation.filepath);
  if (citation.index_name && citation.doc_id && !/^https?:\/\//i.test(citation.url || "")) {
    add("Original", downloadButton(citation));
  }
  if (citation.doc_id) add("Document id", h("code", { text: citation.doc_id }));
  if (citation.chunk_id) add("Chunk id", h("code", { text: citation.chunk_id }));
  return rows;
}

/** A button that downloads the cited document's original file; errors are said beside it. */
function downloadButton(citation) {
  const status = h("span", { class: "download-status", role: "status" });
  const button = h("button", { type: "button", class: "button secondary", text: "Download" });
  button.addEventListener("click", async () => {
    status.textContent = "";
    try {
      await downloadDocument(citation.index_name, citation.doc_id, citation.filepath);
    } catch (err) {
      status.textContent = describeError(err).title;
    }
  });
  return h("span", {}, button, " ", status);
}

function paragraphs(text) {
  return text.split(/\n{2,}/).map((part) => h("p", { text: part }));
}

/** Paragraph nodes for answer text (blank lines split paragraphs; line breaks are kept). */
export function answerParagraphs(text, citations, onCite) {
  return text.split(/\n{2,}/).map((part) => h("p", {}, answerNodes(part, citations, onCite)));
}
