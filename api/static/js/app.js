// The playground shell: hash routes (#/chat, #/data, #/evaluations), the API key dialog and
// the answering model's name in the header.

import { api, getApiKey, setApiKey } from "./api.js";
import { announce } from "./dom.js";
import { mountChat } from "./chat.js";
import { mountData } from "./data.js";
import { mountEvaluations } from "./evaluations.js";

const PAGES = {
  chat: { title: "Chat", mount: mountChat },
  data: { title: "Data", mount: mountData },
  evaluations: { title: "Evaluations", mount: mountEvaluations },
};

let unmount = null;

/** What every page gets: a way to ask for the API key, and to switch page. */
const shell = {
  askForKey: openKeyDialog,
  go: (page, params = "") => { location.hash = `#/${page}${params ? `?${params}` : ""}`; },
};

function route() {
  const [name, query] = location.hash.replace(/^#\/?/, "").split("?");
  const page = PAGES[name] ? name : "chat";
  document.querySelectorAll(".nav a").forEach((a) => {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  document.title = `${PAGES[page].title} · ondata playground`;
  unmount?.();
  const main = document.getElementById("main");
  main.replaceChildren();
  main.dataset.page = page;
  unmount = PAGES[page].mount(main, { ...shell, params: new URLSearchParams(query || "") }) || null;
}

function openKeyDialog() {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  input.value = getApiKey();
  document.getElementById("key-status").textContent = getApiKey() ? "A key is saved in this browser." : "No key saved.";
  dialog.showModal();
  input.focus();
}

function setUpKeyDialog() {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-button").addEventListener("click", openKeyDialog);
  document.getElementById("key-show").addEventListener("change", (e) => {
    input.type = e.target.checked ? "text" : "password";
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save") setApiKey(input.value.trim());
    if (dialog.returnValue === "forget") setApiKey("");
    if (dialog.returnValue === "save" || dialog.returnValue === "forget") {
      announce(getApiKey() ? "API key saved." : "API key forgotten.");
      updateKeyButton();
      showModel();
      route();
    }
    document.getElementById("key-button").focus();
  });
}

function updateKeyButton() {
  const button = document.getElementById("key-button");
  button.textContent = getApiKey() ? "API key ✓" : "API key";
  button.setAttribute("aria-label", getApiKey() ? "API key (saved)" : "API key (none saved)");
}

async function showModel() {
  const el = document.getElementById("model-name");
  try {
    const models = await api("GET", "/v1/models");
    el.textContent = models.data?.[0]?.id ? `Model: ${models.data[0].id}` : "";
  } catch {
    el.textContent = "";
  }
}

setUpKeyDialog();
updateKeyButton();
showModel();
window.addEventListener("hashchange", route);
route();
