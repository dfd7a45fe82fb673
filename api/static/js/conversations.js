// The conversation list: new, open, rename (inline) and delete.

import { h, replace } from "./dom.js";
import { icon } from "./icons.js";

export class ConversationList {
  /** `actions`: {onNew(), onOpen(id), onRename(id, title), onDelete(id)}. */
  constructor(actions) {
    this.actions = actions;
    this.items = [];
    this.currentId = null;
    this.available = true;
    this.list = h("ul", { class: "conversation-list", "aria-labelledby": "conversations-title" });
    this.status = h("p", { class: "hint", role: "status" });
    const newButton = h("button", { type: "button", class: "button", id: "new-chat", text: "New chat" });
    newButton.addEventListener("click", () => actions.onNew());
    this.el = h("nav", { class: "conversations", "aria-label": "Conversations" },
      h("details", { class: "panel", open: !window.matchMedia("(max-width: 899px)").matches },
        h("summary", {}, h("h2", { id: "conversations-title", text: "Conversations" })),
        newButton, this.list, this.status));
  }

  /** Show `items` ([{id, title, ...}]) with `currentId` marked. */
  render(items = this.items, currentId = this.currentId) {
    this.items = items;
    this.currentId = currentId;
    replace(this.list, items.map((item) => this.row(item)));
    if (!this.available) this.status.textContent = "Conversation history is not available on this server; chats are not saved.";
    else this.status.textContent = items.length ? "" : "No saved conversations yet.";
  }

  row(item) {
    const title = item.title || "Untitled conversation";
    const open = h("button", { type: "button", class: "conversation-open", title, "aria-current": item.id === this.currentId ? "true" : null },
      h("span", { class: "clamp", text: title }));
    open.addEventListener("click", () => this.actions.onOpen(item.id));
    const rename = h("button", { type: "button", class: "icon-button", "aria-label": `Rename “${title}”`, title: "Rename" }, icon("edit"));
    const remove = h("button", { type: "button", class: "icon-button", "aria-label": `Delete “${title}”`, title: "Delete" }, icon("trash"));
    const li = h("li", { class: "conversation", dataset: { id: item.id } }, open, rename, remove);
    rename.addEventListener("click", () => this.editTitle(li, item));
    remove.addEventListener("click", () => {
      if (window.confirm(`Delete the conversation “${title}”? This cannot be undone.`)) this.actions.onDelete(item.id);
    });
    return li;
  }

  editTitle(li, item) {
    const input = h("input", { type: "text", value: item.title || "", maxlength: 200, "aria-label": "New conversation title", required: true });
    const cancel = () => replace(li, ...this.row(item).childNodes);
    const form = h("form", { class: "rename-form" }, input,
      h("button", { type: "submit", class: "button small", text: "Save" }),
      h("button", { type: "button", class: "button small secondary", text: "Cancel", on: { click: cancel } }));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (input.value.trim()) this.actions.onRename(item.id, input.value.trim());
    });
    input.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); cancel(); li.querySelector(".conversation-open")?.focus(); } });
    replace(li, form);
    input.focus();
    input.select();
  }
}
