// The chat page: conversations, the message log with streamed grounded answers, citations,
// intent and feedback, the composer, and the parameters panel.

import { ApiError, describeError, streamChat } from "./api.js";
import { ConversationList } from "./conversations.js";
import { announce, h, replace } from "./dom.js";
import { history, newConversationId } from "./history.js";
import { icon } from "./icons.js";
import {
  CitationPanel, FEEDBACK_CATEGORIES, answerParagraphs, citationLabel, citedNumbers, intentQueries, sourceDetails,
} from "./messages.js";
import { ParamsPanel } from "./params.js";

const NO_ANSWER_HINT = "No document passed the relevance cut-off. Try other words, a lower strictness, or check that the index holds the right documents (Data page).";

export function mountChat(root, shell) {
  const page = new ChatPage(shell);
  root.append(page.el);
  page.start();
  return () => page.stop();
}

class ChatPage {
  constructor(shell) {
    this.shell = shell;
    this.conversation = { id: newConversationId(), title: "", messages: [] };
    this.abort = null;
    this.params = new ParamsPanel();
    this.citations = new CitationPanel();
    this.list = new ConversationList({
      onNew: () => this.newConversation(),
      onOpen: (id) => this.openConversation(id),
      onRename: (id, title) => this.rename(id, title),
      onDelete: (id) => this.remove(id),
    });
    this.log = h("ol", { class: "messages" });
    this.logRegion = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Messages" }, this.log);
    this.empty = h("div", { class: "empty-chat" },
      h("p", { class: "lead", text: "Ask a question about the documents in the chosen index." }),
      h("p", { class: "hint", text: "Answers cite their sources as numbered markers; select one to read the cited passage." }));
    this.el = h("div", { class: "chat-layout" },
      this.list.el,
      h("section", { class: "chat", "aria-labelledby": "chat-title" },
        h("h1", { id: "chat-title", class: "visually-hidden", text: "Chat" }),
        this.empty, this.logRegion, this.composer()),
      this.params.el,
      this.citations.el);
  }

  async start() {
    this.params.loadIndexes();
    this.params.loadQueryTypes();
    await this.refreshList();
    const wanted = this.shell.params.get("c");
    if (wanted) this.openConversation(wanted);
  }

  stop() {
    this.abort?.abort();
    document.body.classList.remove("citation-open");
  }

  composer() {
    this.input = h("textarea", { id: "question", rows: 3, required: true, placeholder: "Ask about your documents…", "aria-describedby": "question-hint" });
    this.sendButton = h("button", { type: "submit", class: "button", text: "Send" });
    this.stopButton = h("button", { type: "button", class: "button secondary", text: "Stop", hidden: true });
    this.stopButton.addEventListener("click", () => this.abort?.abort());
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.form.requestSubmit(); }
    });
    this.form = h("form", { class: "composer" },
      h("label", { for: "question", text: "Your question" }),
      this.input,
      h("p", { class: "hint", id: "question-hint", text: "Enter sends; Shift+Enter adds a line." }),
      h("div", { class: "actions" }, this.sendButton, this.stopButton));
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.ask(); });
    // Answers scrolled into view stop above the (sticky) question box, not behind it.
    new ResizeObserver(() => this.el?.style.setProperty("--composer-height", `${this.form.offsetHeight}px`)).observe(this.form);
    return this.form;
  }

  // ---- conversations ----------------------------------------------------------------------

  async refreshList() {
    try {
      this.list.available = true;
      this.list.render(await history.list(), this.conversation.id);
    } catch (err) {
      if (err instanceof ApiError && err.missingRoute) this.list.available = false;
      else this.list.status.textContent = `Could not load conversations: ${describeError(err).detail}`;
      this.list.render([], this.conversation.id);
    }
  }

  newConversation() {
    this.abort?.abort();
    this.conversation = { id: newConversationId(), title: "", messages: [] };
    this.renderMessages();
    this.list.render(undefined, this.conversation.id);
    this.input.focus();
  }

  async openConversation(id) {
    this.abort?.abort();
    try {
      const stored = await history.read(id);
      this.conversation = { id: stored.id, title: stored.title, messages: (stored.messages || []).map(fromStored) };
      this.renderMessages();
      this.list.render(undefined, id);
      announce(`Opened conversation ${stored.title || ""}`);
      this.input.focus();
    } catch (err) {
      this.showError(err);
    }
  }

  async rename(id, title) {
    try { await history.rename(id, title); announce("Conversation renamed."); } catch (err) { this.showError(err); }
    await this.refreshList();
    this.list.list.querySelector(`[data-id="${CSS.escape(id)}"] .conversation-open`)?.focus();
  }

  async remove(id) {
    try { await history.remove(id); announce("Conversation deleted."); } catch (err) { this.showError(err); }
    if (id === this.conversation.id) this.newConversation();
    await this.refreshList();
  }

  // ---- asking -----------------------------------------------------------------------------

  async ask() {
    const question = this.input.value.trim();
    if (!question || this.abort || !this.params.validate()) return;
    const fields = this.params.requestFields();
    const turn = { role: "assistant", content: "", citations: [], intent: [], id: null, pending: true,
      index_name: fields.data_sources?.[0]?.parameters?.index_name };
    const body = {
      messages: [...this.conversation.messages.filter((m) => !m.error).map(({ role, content }) => ({ role, content })), { role: "user", content: question }],
      conversation_id: this.conversation.id,
      ...fields,
    };
    this.conversation.messages.push({ role: "user", content: question }, turn);
    this.input.value = "";
    this.renderMessages();
    await this.stream(body, turn);
  }

  async stream(body, turn) {
    this.abort = new AbortController();
    this.setBusy(true);
    const node = this.log.lastElementChild;
    try {
      await streamChat(body, {
        signal: this.abort.signal,
        onStart: ({ messageId }) => { turn.id = messageId; },
        onContext: (context) => { turn.citations = context.citations || []; turn.intent = intentQueries(context.intent); this.renderTurn(node, turn); },
        onDelta: (text) => { turn.content += text; this.renderTurn(node, turn); },
      });
      turn.pending = false;
      announce("Answer complete.");
    } catch (err) {
      turn.pending = false;
      if (err.name === "AbortError") turn.stopped = true;
      else turn.error = err;
    } finally {
      this.abort = null;
      this.setBusy(false);
    }
    this.renderTurn(node, turn);
    if (!turn.error) this.refreshList();
  }

  setBusy(busy) {
    this.sendButton.disabled = busy;
    this.stopButton.hidden = !busy;
    this.logRegion.setAttribute("aria-busy", String(busy));
  }

  // ---- rendering --------------------------------------------------------------------------

  renderMessages() {
    this.citations.close();
    replace(this.log, this.conversation.messages.map((m) => this.turnNode(m)));
    this.empty.hidden = this.conversation.messages.length > 0;
    this.log.lastElementChild?.scrollIntoView({ block: "end" });
  }

  turnNode(turn) {
    const node = h("li", { class: `message ${turn.role}` });
    this.renderTurn(node, turn);
    return node;
  }

  renderTurn(node, turn) {
    if (turn.role === "user") {
      replace(node, h("p", { class: "who", text: "You" }), h("div", { class: "content" }, h("p", { text: turn.content })));
      return;
    }
    node.classList.toggle("pending", Boolean(turn.pending));
    node.setAttribute("aria-busy", String(Boolean(turn.pending)));
    const cite = (n, button) => this.citations.open(n, { ...turn.citations[n - 1], index_name: turn.index_name }, button);
    replace(node,
      h("p", { class: "who", text: "ondata" }),
      intentNode(turn.intent),
      turn.error ? this.errorNode(turn.error) : h("div", { class: "content" },
        turn.content ? answerParagraphs(turn.content, turn.citations, cite) : h("p", { class: "hint", text: turn.pending ? "Searching and answering…" : "(no answer)" })),
      turn.stopped ? h("p", { class: "hint", text: "Stopped." }) : null,
      !turn.pending && !turn.error ? sourcesNode(turn, cite) : null,
      !turn.pending && !turn.error && turn.content && !citedNumbers(turn.content, turn.citations).length
        ? h("p", { class: "notice info", text: this.params.indexEmpty ? "This index has no documents yet: upload some on the Data page." : NO_ANSWER_HINT }) : null,
      !turn.pending && !turn.error && turn.id && this.list.available ? this.feedbackNode(turn) : null);
    if (!turn.pending) node.scrollIntoView({ block: "nearest" });
  }

  errorNode(err) {
    const { title, detail, action } = describeError(err);
    const hint = err.code === "index_not_found" || this.params.indexEmpty
      ? h("button", { type: "button", class: "button small secondary", text: "Go to the Data page", on: { click: () => this.shell.go("data") } })
      : action === "key" ? h("button", { type: "button", class: "button small secondary", text: "Enter API key", on: { click: () => this.shell.askForKey() } }) : null;
    return h("div", { class: "notice error", role: "alert" }, h("p", {}, h("strong", { text: title })), h("p", { text: detail }), hint);
  }

  showError(err) {
    const node = h("li", { class: "message system" }, this.errorNode(err));
    this.log.append(node);
    this.empty.hidden = true;
  }

  feedbackNode(turn) {
    const wrap = h("div", { class: "feedback", role: "group", "aria-label": "Feedback on this answer" });
    const draw = () => replace(wrap, ...feedbackControls(turn, (rating) => showForm(rating)));
    const showForm = (rating) => replace(wrap, feedbackForm(turn, rating, async (body) => {
      try {
        await history.feedback(this.conversation.id, turn.id, body);
        turn.feedback = body;
        announce("Thank you: feedback saved.");
        draw();
        wrap.querySelector("button")?.focus();
      } catch (err) {
        wrap.append(this.errorNode(err));
      }
    }, () => { draw(); wrap.querySelector("button")?.focus(); }));
    draw();
    return wrap;
  }
}

function fromStored(message) {
  return {
    role: message.role,
    content: message.content,
    citations: message.context?.citations || [],
    intent: intentQueries(message.context?.intent),
    id: message.id,
    index_name: message.index_name || null,
    feedback: message.feedback || null,
  };
}

function intentNode(queries) {
  if (!queries?.length) return null;
  return h("div", { class: "intent" }, h("span", { class: "intent-label", text: "Searched for:" }),
    h("ul", {}, queries.map((q) => h("li", { text: q }))));
}

function sourcesNode(turn, cite) {
  const numbers = citedNumbers(turn.content, turn.citations).sort((a, b) => a - b);
  if (!numbers.length) return null;
  const details = sourceDetails(numbers.map((n) => turn.citations[n - 1]));
  return h("div", { class: "sources" }, h("p", { class: "small-heading", text: "Sources" }),
    h("ol", {}, numbers.map((n, i) => {
      const button = h("button", { type: "button", class: "source-link", text: `${n}. ${citationLabel(turn.citations[n - 1])}` });
      button.addEventListener("click", () => cite(n, button));
      return h("li", {}, button, details[i] ? h("span", { class: "source-detail", text: details[i] }) : null);
    })));
}

function feedbackControls(turn, choose) {
  const given = turn.feedback;
  const thumb = (rating, label) => h("button", {
    type: "button", class: `thumb ${rating}`, "aria-label": label, title: label, "aria-pressed": String(given?.rating === rating),
    on: { click: () => choose(rating) },
  }, icon(`thumb-${rating}`));
  const summary = given ? h("span", { class: "hint feedback-given", text: feedbackSummary(given) }) : null;
  return [thumb("up", "Good answer"), thumb("down", "Bad answer"), summary];
}

function feedbackSummary(feedback) {
  const names = (feedback.categories || []).map((c) => FEEDBACK_CATEGORIES.find(([v]) => v === c)?.[1] || c);
  return `Feedback: ${feedback.rating === "up" ? "good" : "bad"}${names.length ? ` (${names.join(", ")})` : ""}`;
}

function feedbackForm(turn, rating, submit, cancel) {
  const uid = `${turn.id}-fb`.replace(/[^A-Za-z0-9_-]/g, "");
  // Categories say what was wrong, so only a thumbs down has them (as in Azure's sample app).
  const select = rating === "down" ? h("select", { id: `${uid}-category`, required: true },
    h("option", { value: "", text: "Choose…" }),
    FEEDBACK_CATEGORIES.map(([value, label]) => h("option", { value, text: label, selected: turn.feedback?.categories?.includes(value) }))) : null;
  const comment = h("textarea", { id: `${uid}-comment`, rows: 2, maxlength: 4000, value: turn.feedback?.comment || "" });
  const form = h("form", { class: "feedback-form" },
    h("p", { class: "small-heading" }, icon(`thumb-${rating}`), rating === "up" ? " Good answer" : " What was wrong?"),
    select ? h("div", { class: "field" }, h("label", { for: select.id, text: "Category" }), select) : null,
    h("div", { class: "field" }, h("label", { for: comment.id, text: "Comment (optional)" }), comment),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button small", text: "Send feedback" }),
      h("button", { type: "button", class: "button small secondary", text: "Cancel", on: { click: cancel } })));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit({ rating, categories: select?.value ? [select.value] : [], comment: comment.value.trim() });
  });
  queueMicrotask(() => (select || comment).focus());
  return form;
}
