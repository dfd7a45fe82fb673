// Small DOM helpers: build elements without innerHTML (text is always text, never markup).

/**
 * Create an element. `attrs` keys: `class`, `text`, `dataset`, `on` ({event: handler}),
 * boolean attributes (true sets, false/null/undefined omits), anything else as an attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === "value") el.value = value;
    else if (key === "checked" || key === "selected") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append children (strings become text nodes; arrays are flattened; null is skipped). */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A labelled form field: <div class="field"><label for=id>label</label> control hint</div>. */
export function field(label, control, hint) {
  const hintEl = hint ? h("p", { class: "hint", id: `${control.id}-hint`, text: hint }) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id, text: label }), control, hintEl);
}

let uid = 0;
/** A fresh id for label/control pairs. */
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** Say something to screen readers (and show it briefly) through the polite live region. */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A new text node after a tick, so the same message twice is still announced.
  setTimeout(() => { region.textContent = message; }, 30);
}

/** A human date from an ISO string or Unix seconds (or "" for nothing). */
export function formatDate(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = new Date(typeof value === "number" ? value * 1000 : value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** A number with at most `digits` decimals, or "–" for null/undefined. */
export function formatNumber(value, digits = 3) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

/**
 * The one number format of evaluation results (as the reports and the CLI print them):
 * times (ms, seconds) with 1 decimal, rates and scores with 3, "–" for nothing.
 */
export function formatMetric(name, value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value !== "number") return String(value);
  const time = name === "seconds" || /_ms$|\(ms\)|latency|^p\d+$/.test(name);
  return value.toFixed(time ? 1 : 3);
}
