// The data page: indexes (create, list, delete), the documents of one index (status, chunks,
// error, delete), drag-and-drop upload with progress from the job, and folder or URL jobs.

import { ApiError, api, describeError, uploadFiles } from "./api.js";
import { announce, field, formatDate, h, newId, replace } from "./dom.js";

const POLL_MS = 1000;
const FINISHED = new Set(["succeeded", "partially_succeeded", "failed", "cancelled"]);
const enc = encodeURIComponent;

export function mountData(root, shell) {
  const page = new DataPage(shell);
  root.append(page.el);
  page.start();
  return () => page.stop();
}

/** Done / total / failed document counts of a job (JobProgress). */
export function jobProgress(job) {
  const p = job.progress || {};
  return { done: p.processed ?? 0, total: p.total ?? 0, failed: p.failed ?? 0 };
}

class DataPage {
  constructor(shell) {
    this.shell = shell;
    this.selected = shell.params.get("index") || null;
    this.timers = new Set();
    this.alive = true;
    this.indexesBox = h("div", { class: "table-wrap" });
    this.indexStatus = h("div", { role: "status" });
    this.detail = h("section", { class: "index-detail", "aria-labelledby": "detail-title" });
    this.el = h("div", { class: "data-page" },
      h("h1", { text: "Data" }),
      h("div", { class: "data-layout" },
        h("section", { class: "card indexes", "aria-labelledby": "indexes-title" },
          h("h2", { id: "indexes-title", text: "Indexes" }), this.indexStatus, this.indexesBox, this.createForm()),
        this.detail));
  }

  start() { this.loadIndexes(); }

  stop() {
    this.alive = false;
    for (const t of this.timers) clearTimeout(t);
  }

  later(fn, ms) {
    const t = setTimeout(() => { this.timers.delete(t); if (this.alive) fn(); }, ms);
    this.timers.add(t);
  }

  // ---- indexes ----------------------------------------------------------------------------

  async loadIndexes() {
    try {
      const body = await api("GET", "/v1/indexes");
      this.indexes = body.data || [];
      replace(this.indexStatus);
      this.renderIndexes();
      if (!this.selected && this.indexes.length) this.selected = this.indexes[0].name;
      if (this.selected && this.indexes.some((i) => i.name === this.selected)) this.renderDetail();
      else if (this.selected) this.renderMissing(this.selected);
      else replace(this.detail);
    } catch (err) {
      replace(this.indexStatus, errorBox(err, this.shell, "Index management"));
    }
  }

  /** The index named in the address does not exist (or this key cannot see it). */
  renderMissing(name) {
    replace(this.detail, h("div", { class: "card notice warning", role: "alert" },
      h("h2", { id: "detail-title", text: `Index “${name}” not found` }),
      h("p", { text: "No index of that name exists on this server, or your key may not use it." }),
      h("p", {}, h("a", { href: "#/data", class: "button secondary", text: "Back to the indexes" }))));
  }

  renderIndexes() {
    if (!this.indexes.length) {
      replace(this.indexesBox, h("p", { class: "hint", text: "No indexes yet: create one below." }));
      return;
    }
    const rows = this.indexes.map((index) => {
      const open = h("button", { type: "button", class: "link-button", text: index.name, "aria-current": index.name === this.selected ? "true" : null,
        on: { click: () => { this.selected = index.name; this.renderIndexes(); this.renderDetail(); this.detail.querySelector("h2")?.focus(); } } });
      const remove = h("button", { type: "button", class: "button small danger", text: "Delete", "aria-label": `Delete index ${index.name}`,
        on: { click: () => this.deleteIndex(index.name) } });
      return h("tr", { dataset: { index: index.name } },
        h("th", { scope: "row" }, open, index.description ? h("span", { class: "hint block", text: index.description }) : null),
        h("td", { class: "num", text: count(index.document_count) }),
        h("td", { class: "num", text: count(index.chunk_count) }),
        h("td", { class: "row-actions" }, remove));
    });
    replace(this.indexesBox, h("table", {},
      h("caption", { class: "visually-hidden", text: "Indexes; select a name to manage its documents" }),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: "Name" }), h("th", { scope: "col", class: "num", text: "Docs" }),
        h("th", { scope: "col", class: "num", text: "Chunks" }), h("th", { scope: "col" }, h("span", { class: "visually-hidden", text: "Actions" })))),
      h("tbody", {}, rows)));
  }

  createForm() {
    const name = h("input", { id: newId("new-index"), name: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_-]{0,127}", autocomplete: "off", spellcheck: "false" });
    const description = h("input", { id: newId("new-index-desc"), name: "description", autocomplete: "off" });
    const chunk = h("input", { id: newId("new-index-chunk"), name: "chunk_size", type: "number", min: 64, max: 8192, placeholder: "server default" });
    const status = h("div", { role: "status" });
    const form = h("form", { class: "create-index" },
      h("h3", { text: "Create an index" }),
      field("Name", name, "Letters, digits, - and _ ; fixed once created."),
      field("Description (optional)", description),
      field("Chunk size in tokens (optional)", chunk, "Fixed once created."),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "button", text: "Create index" })), status);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { name: name.value.trim() };
      if (description.value.trim()) body.description = description.value.trim();
      if (chunk.value) body.chunk_size = Number(chunk.value);
      try {
        await api("POST", "/v1/indexes", { json: body });
        announce(`Index ${body.name} created.`);
        replace(status);
        form.reset();
        this.selected = body.name;
        await this.loadIndexes();
      } catch (err) {
        replace(status, errorBox(err, this.shell));
      }
    });
    return form;
  }

  async deleteIndex(name) {
    if (!window.confirm(`Delete the index “${name}” with all its documents? This cannot be undone.`)) return;
    try {
      await api("DELETE", `/v1/indexes/${enc(name)}`);
      announce(`Index ${name} deleted.`);
      if (this.selected === name) this.selected = null;
      await this.loadIndexes();
    } catch (err) {
      replace(this.indexStatus, errorBox(err, this.shell));
    }
  }

  // ---- one index --------------------------------------------------------------------------

  renderDetail() {
    const name = this.selected;
    this.docsBox = h("div", { class: "table-wrap" });
    this.docsStatus = h("div", { role: "status" });
    this.jobsList = h("ul", { class: "jobs", "aria-label": "Ingestion jobs" });
    replace(this.detail,
      h("h2", { id: "detail-title", tabindex: "-1", text: `Index “${name}”` }),
      h("div", { class: "detail-grid" },
        h("section", { class: "card", "aria-labelledby": "upload-title" }, h("h3", { id: "upload-title", text: "Upload documents" }), this.uploadForm(name)),
        h("section", { class: "card", "aria-labelledby": "job-title" }, h("h3", { id: "job-title", text: "Ingest a folder or URL" }), this.jobForm(name))),
      h("section", { class: "card", "aria-labelledby": "jobs-title" }, h("h3", { id: "jobs-title", text: "Jobs" }), this.jobsList),
      h("section", { class: "card", "aria-labelledby": "docs-title" },
        h("div", { class: "section-head" }, h("h3", { id: "docs-title", text: "Documents" }),
          h("button", { type: "button", class: "button small secondary", text: "Refresh", on: { click: () => this.loadDocuments() } })),
        this.docsStatus, this.docsBox));
    this.loadDocuments();
    this.loadJobs(name);
  }

  /** The index's recent jobs (newest first); unfinished ones are followed until they end. */
  async loadJobs(name) {
    try {
      const body = await api("GET", `/v1/ingestion/jobs?index_name=${enc(name)}&limit=10`);
      for (const job of (body.data || []).reverse()) this.trackJob(job.id, jobLabel(job), job);
    } catch {
      // Listing jobs is a convenience: jobs started here are still tracked.
    }
  }

  async loadDocuments() {
    const name = this.selected;
    try {
      const body = await api("GET", `/v1/indexes/${enc(name)}/documents`);
      if (name !== this.selected) return;
      replace(this.docsStatus);
      this.renderDocuments(body.data || []);
    } catch (err) {
      replace(this.docsStatus, errorBox(err, this.shell, "Listing documents"));
    }
  }

  renderDocuments(docs) {
    if (!docs.length) {
      replace(this.docsBox, h("p", { class: "hint", text: "No documents yet: upload files or start a job above." }));
      return;
    }
    const rows = docs.map((doc) => {
      const title = doc.title || doc.filename || doc.source || doc.doc_id;
      return h("tr", { dataset: { docId: doc.doc_id } },
        h("th", { scope: "row" }, h("span", { class: "doc-title", text: title }), doc.source && doc.source !== title ? h("span", { class: "hint block", text: doc.source }) : null),
        h("td", {}, statusBadge(doc.status)),
        h("td", { class: "num", text: count(doc.chunk_count) }),
        h("td", { class: "error-cell", text: doc.error || "" }),
        h("td", { text: formatDate(doc.updated_at || doc.ingested_at || doc.created_at) }),
        h("td", { class: "row-actions" }, h("button", { type: "button", class: "button small danger", text: "Delete", "aria-label": `Delete document ${title}`,
          on: { click: () => this.deleteDocument(doc.doc_id, title) } })));
    });
    replace(this.docsBox, h("table", {},
      h("caption", { class: "visually-hidden", text: `Documents of index ${this.selected}` }),
      h("thead", {}, h("tr", {}, ["Document", "Status", "Chunks", "Error", "Updated", h("span", { class: "visually-hidden", text: "Actions" })].map((c) => h("th", { scope: "col", class: c === "Chunks" ? "num" : null }, c)))),
      h("tbody", {}, rows)));
  }

  async deleteDocument(docId, title) {
    if (!window.confirm(`Delete “${title}” from the index?`)) return;
    try {
      await api("DELETE", `/v1/indexes/${enc(this.selected)}/documents/${enc(docId)}`);
      announce(`Document ${title} deleted.`);
      await this.loadDocuments();
      this.loadIndexesQuietly();
    } catch (err) {
      replace(this.docsStatus, errorBox(err, this.shell));
    }
  }

  async loadIndexesQuietly() {
    try { this.indexes = (await api("GET", "/v1/indexes")).data || []; this.renderIndexes(); } catch { /* the table stays as it was */ }
  }

  // ---- upload -----------------------------------------------------------------------------

  uploadForm(name) {
    const input = h("input", { type: "file", id: newId("files"), multiple: true, class: "visually-hidden-input" });
    const acl = h("input", { id: newId("acl"), autocomplete: "off", placeholder: "e.g. hr,finance" });
    const metadata = h("textarea", { id: newId("meta"), rows: 2, placeholder: '{"department": "hr"}', spellcheck: "false" });
    const status = h("div", { class: "upload-status", role: "status" });
    const zone = h("label", { class: "dropzone", for: input.id },
      h("span", { class: "dropzone-title", text: "Drop files here" }),
      h("span", { class: "hint", text: "or press to choose files (PDF, Word, PowerPoint, Excel, HTML, Markdown, text, e-mail…)" }));
    const start = (files) => this.upload(name, files, { acl_groups: acl.value.trim(), metadata: metadata.value.trim() }, status, metadata);
    input.addEventListener("change", () => { if (input.files.length) start([...input.files]); input.value = ""; });
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer?.files?.length) start([...e.dataTransfer.files]);
    });
    return h("div", { class: "upload" }, input, zone,
      field("Access groups (optional)", acl, "Comma-separated; only callers in these groups will see the documents."),
      field("Metadata (optional JSON object)", metadata),
      status);
  }

  async upload(name, files, fields, status, metadataControl) {
    if (fields.metadata) {
      try {
        const parsed = JSON.parse(fields.metadata);
        if (typeof parsed !== "object" || Array.isArray(parsed) || parsed === null) throw new Error("not an object");
        metadataControl.setCustomValidity("");
      } catch {
        metadataControl.setCustomValidity("Metadata must be a JSON object, like {\"team\": \"hr\"}.");
        metadataControl.reportValidity();
        return;
      }
    }
    const bar = h("progress", { max: 100, value: 0, "aria-label": "Upload progress" });
    const label = h("span", { text: `Uploading ${files.length} file(s)…` });
    replace(status, h("div", { class: "progress-row" }, label, bar));
    try {
      const body = await uploadFiles(`/v1/indexes/${enc(name)}/documents`, files, fields, (f) => { bar.value = Math.round(f * 100); });
      announce("Upload complete; ingestion started.");
      if (body?.job_id) this.trackJob(body.job_id, files.map((f) => f.name).join(", "));
      replace(status);
    } catch (err) {
      replace(status, errorBox(err, this.shell));
    }
  }

  // ---- jobs -------------------------------------------------------------------------------

  jobForm(name) {
    const kindName = newId("kind");
    const folder = h("input", { type: "radio", name: kindName, id: newId("kind-folder"), value: "folder", checked: true });
    const url = h("input", { type: "radio", name: kindName, id: newId("kind-url"), value: "url" });
    const source = h("input", { id: newId("source"), required: true, autocomplete: "off", spellcheck: "false" });
    const sourceLabel = h("label", { for: source.id, text: "Folder (on the server, under the allowed root)" });
    const refresh = h("input", { id: newId("refresh"), type: "number", min: 1, placeholder: "no schedule" });
    const follow = h("input", { type: "checkbox", id: newId("follow") });
    const followField = h("div", { class: "field inline", hidden: true }, follow, h("label", { for: follow.id, text: "Also ingest the pages it links to (one level)" }));
    const status = h("div", { role: "status" });
    const sync = () => {
      sourceLabel.textContent = url.checked ? "URL (http or https)" : "Folder (on the server, under the allowed root)";
      source.type = url.checked ? "url" : "text";
      followField.hidden = !url.checked;
    };
    folder.addEventListener("change", sync);
    url.addEventListener("change", sync);
    const form = h("form", { class: "job-form" },
      h("fieldset", {}, h("legend", { text: "Source type" }),
        h("div", { class: "field inline" }, folder, h("label", { for: folder.id, text: "Folder" })),
        h("div", { class: "field inline" }, url, h("label", { for: url.id, text: "URL" }))),
      h("div", { class: "field" }, sourceLabel, source),
      followField,
      field("Refresh every (minutes, optional)", refresh, "Re-run the job on a schedule: new and changed files are ingested, removed ones deleted."),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "button", text: "Start job" })), status);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const value = source.value.trim();
      const body = { index_name: name, sources: [url.checked ? { type: "url", url: value, crawl_depth: follow.checked ? 1 : 0 } : { type: "folder", path: value }] };
      if (refresh.value) body.refresh_interval_s = Math.round(Number(refresh.value) * 60);
      try {
        const job = await api("POST", "/v1/ingestion/jobs", { json: body });
        replace(status);
        announce("Job started.");
        this.trackJob(job.id, value);
      } catch (err) {
        replace(status, errorBox(err, this.shell, "Folder and URL jobs"));
      }
    });
    return form;
  }

  trackJob(jobId, what, known = null) {
    const item = h("li", { class: "job", dataset: { jobId } });
    this.jobsList.prepend(item);
    if (known && FINISHED.has(known.status)) {
      this.renderJob(item, known, what);
      return;
    }
    const poll = async () => {
      try {
        const job = await api("GET", `/v1/ingestion/jobs/${enc(jobId)}`);
        this.renderJob(item, job, what);
        if (FINISHED.has(job.status)) {
          announce(`Job ${job.status.replace("_", " ")}: ${what}`);
          this.loadDocuments();
          this.loadIndexesQuietly();
        } else {
          this.later(poll, POLL_MS);
        }
      } catch (err) {
        replace(item, errorBox(err, this.shell));
      }
    };
    replace(item, h("span", { text: `Job ${jobId}: waiting…` }));
    poll();
  }

  renderJob(item, job, what) {
    const { done, total, failed } = jobProgress(job);
    const finished = FINISHED.has(job.status);
    const bar = h("progress", { max: total || 1, value: finished && !total ? 1 : done, "aria-label": `Progress of ${what}` });
    const cancel = finished ? null : h("button", { type: "button", class: "button small secondary", text: "Cancel job",
      on: { click: async () => { try { await api("POST", `/v1/ingestion/jobs/${enc(job.id)}/cancel`); } catch (err) { item.append(errorBox(err, this.shell)); } } } });
    const errors = (job.errors || []).map((e) => h("li", { text: `${e.source || e.doc_id}: ${e.error}` }));
    item.dataset.status = job.status;
    replace(item,
      h("div", { class: "job-head" }, h("span", { class: "job-what", text: what }), statusBadge(job.status), cancel),
      h("div", { class: "progress-row" }, bar, h("span", { class: "hint", text: total ? `${done} of ${total} document(s)${failed ? `, ${failed} failed` : ""}` : job.status })),
      job.error ? h("p", { class: "job-errors", text: job.error }) : null,
      errors.length ? h("ul", { class: "job-errors", "aria-label": "Document errors" }, errors) : null);
  }
}

function jobLabel(job) {
  const files = (job.files || []).map((f) => f.filename || f.name).filter(Boolean);
  const sources = (job.sources || []).map((x) => x.url || x.path).filter(Boolean);
  return [...files, ...sources].join(", ") || `${job.kind} job`;
}

function count(value) {
  return value === null || value === undefined ? "–" : String(value);
}

function statusBadge(status) {
  const text = (status || "unknown").replaceAll("_", " ");
  return h("span", { class: `badge status-${status || "unknown"}`, text });
}

/** An error as an alert; a route this server lacks is said plainly. */
function errorBox(err, shell, feature) {
  if (err instanceof ApiError && err.missingRoute && feature) {
    return h("p", { class: "notice warning", role: "alert", text: `${feature} is not available on this server.` });
  }
  const { title, detail, action } = describeError(err);
  return h("div", { class: "notice error", role: "alert" }, h("p", {}, h("strong", { text: title })), h("p", { text: detail }),
    action === "key" ? h("button", { type: "button", class: "button small secondary", text: "Enter API key", on: { click: () => shell.askForKey() } }) : null);
}
