// Server-side chat history (conversations and feedback), with one place naming the routes.

import { api } from "./api.js";

const base = "/v1/conversations";
const path = (id) => `${base}/${encodeURIComponent(id)}`;

/** A fresh conversation id (works outside secure contexts too, unlike randomUUID). */
export function newConversationId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `c-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export const history = {
  list: async () => (await api("GET", base)).data || [],
  read: (id) => api("GET", path(id)),
  rename: (id, title) => api("PATCH", path(id), { json: { title } }),
  remove: (id) => api("DELETE", path(id)),
  feedback: (id, messageId, body) => api("PUT", `${path(id)}/messages/${encodeURIComponent(messageId)}/feedback`, { json: body }),
};
