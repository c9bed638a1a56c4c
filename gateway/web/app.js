// courier's web client: plain DOM, no framework, no build step. Everything the
// server sends is put on the page as text (textContent), never as markup; the
// one exception, search snippets, is rebuilt from its text and <b> marks only.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 50;

const state = {
  token: null,
  me: null,
  inbox: [], // rows of GET /v1/inbox, in the API's order
  details: new Map(), // conversation_id -> GET /v1/conversations/{id}
  presence: new Map(), // user_id -> "online" | "offline"
  open: null, // {id, order: [message_id], byId: Map, hasMore, loading}
  readSent: new Map(), // conversation_id -> message_id of the last read receipt sent
  deliveredSent: new Set(), // message ids a delivered receipt was sent for
  ws: null,
  cursor: null,
  held: false,
  backoff: 0,
  reconnectTimer: null,
  signingOut: false,
};

// ---- HTTP ----------------------------------------------------------------

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (_) {
    json = null;
  }
  if (!r.ok) {
    const msg = (json && (json.error || json.message)) || text || r.statusText;
    if (r.status === 401 && state.token) signOut("Signed out: " + msg);
    throw new HttpError(r.status, msg);
  }
  return json;
}

let noticeTimer = null;

/// A problem, said where a screen reader announces it, and gone after a while.
function notice(msg) {
  $("notice").textContent = msg || "";
  clearTimeout(noticeTimer);
  if (msg) noticeTimer = setTimeout(() => notice(""), 10000);
}

async function attempt(what, f) {
  try {
    return await f();
  } catch (e) {
    notice(what + ": " + e.message);
    return undefined;
  }
}

// ---- Sign-in --------------------------------------------------------------

function subjectOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    // atob gives bytes as Latin-1 characters; the claims are UTF-8.
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)).sub || null;
  } catch (_) {
    return null;
  }
}

async function start() {
  const saved = sessionStorage.getItem("courier.token");
  if (saved && subjectOf(saved)) {
    enter(saved, subjectOf(saved));
    return;
  }
  showSignIn();
}

async function showSignIn() {
  $("app").hidden = true;
  $("signin").hidden = false;
  const config = await fetch("/app-config.json")
    .then((r) => r.json())
    .catch(() => ({}));
  $("dev-form").hidden = !config.dev_sign_in;
  (config.dev_sign_in ? $("dev-name") : $("token-input")).focus();
}

$("dev-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user_id = $("dev-name").value.trim();
  try {
    const r = await api("POST", "/dev/token", { user_id });
    enter(r.token, r.user_id);
  } catch (e) {
    $("signin-error").textContent = e.message;
  }
});

$("token-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const token = $("token-input").value.trim();
  const sub = subjectOf(token);
  if (!sub) {
    $("signin-error").textContent = "That is not a token (courier token USER prints one).";
    return;
  }
  state.token = token;
  try {
    await api("GET", "/v1/inbox");
    enter(token, sub);
  } catch (e) {
    state.token = null;
    $("signin-error").textContent = e.message;
  }
});

function enter(token, me) {
  state.token = token;
  state.me = me;
  state.signingOut = false;
  sessionStorage.setItem("courier.token", token);
  state.cursor = sessionStorage.getItem("courier.cursor." + me);
  $("signin").hidden = true;
  $("signin-error").textContent = "";
  $("app").hidden = false;
  $("me-name").textContent = me;
  document.body.dataset.user = me;
  loadInbox();
  connect();
  attempt("Setting presence", () => api("PUT", "/v1/presence", { status: "online" }));
}

function signOut(why) {
  state.signingOut = true;
  if (state.ws) state.ws.close(1000);
  clearTimeout(state.reconnectTimer);
  sessionStorage.removeItem("courier.token");
  if (state.me) sessionStorage.removeItem("courier.cursor." + state.me);
  state.cursor = null;
  state.token = null;
  state.me = null;
  state.open = null;
  state.inbox = [];
  $("inbox").replaceChildren();
  closeConversation();
  showSignIn();
  $("signin-error").textContent = why || "";
}

$("signout").addEventListener("click", async () => {
  await api("PUT", "/v1/presence", { status: "offline" }).catch(() => {});
  signOut();
});

$("my-presence").addEventListener("change", (ev) =>
  attempt("Setting presence", () => api("PUT", "/v1/presence", { status: ev.target.value })),
);

// ---- Inbox ----------------------------------------------------------------

function otherMembers(ids) {
  return (ids || []).filter((u) => u !== state.me);
}

function nameOf(row) {
  const others = otherMembers(row.member_ids);
  if (!row.kind) return "…"; // its details are being read
  if (row.kind === "direct") return others[0] || "(just you)";
  return row.title || others.join(", ") || "(empty group)";
}

async function loadInbox() {
  const rows = await attempt("Reading the inbox", () => api("GET", "/v1/inbox"));
  if (!rows) return;
  state.inbox = rows;
  renderInbox();
  for (const row of rows) {
    // The newest unread message reached this device.
    if (row.unread_count > 0 && row.last_message_id) {
      paced(async () => receipt(row.conversation_id, row.last_message_id, "delivered"));
    }
    for (const u of otherMembers(row.member_ids)) watchPresence(u);
  }
}

function renderInbox() {
  const items = state.inbox.map((row) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "row";
    b.dataset.testid = "inbox-item";
    b.dataset.conversationId = row.conversation_id;
    if (state.open && state.open.id === row.conversation_id) b.setAttribute("aria-current", "true");
    const name = document.createElement("span");
    name.className = "name";
    name.dataset.testid = "inbox-name";
    if (row.kind === "direct") name.append(dot(otherMembers(row.member_ids)[0]));
    name.append(nameOf(row));
    const preview = document.createElement("span");
    preview.className = "preview";
    preview.textContent = row.last_message_deleted
      ? "(deleted)"
      : row.last_message_preview || "";
    b.append(name, preview);
    // The open conversation is being read: its count is about to be zero.
    if (row.unread_count > 0 && !(state.open && state.open.id === row.conversation_id)) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.dataset.testid = "unread";
      badge.textContent = String(row.unread_count);
      badge.setAttribute("aria-label", row.unread_count + " unread");
      b.append(badge);
    }
    b.addEventListener("click", () => openConversation(row.conversation_id));
    li.append(b);
    return li;
  });
  // Rows are rebuilt on every message: keyboard focus stays on its row.
  const focused = document.activeElement?.closest?.('[data-testid="inbox-item"]');
  $("inbox").replaceChildren(...items);
  if (focused) {
    $("inbox")
      .querySelector(`[data-conversation-id="${CSS.escape(focused.dataset.conversationId)}"]`)
      ?.focus();
  }
}

function inboxRow(id) {
  return state.inbox.find((r) => r.conversation_id === id);
}

/// A row for a conversation the views have not listed yet (just created, or
/// just joined), at once, so events right after it have a row to update;
/// named from the gateway's own record of the conversation once that is read.
function ensureRow(id) {
  let row = inboxRow(id);
  if (row) return row;
  row = {
    conversation_id: id,
    last_message_id: null,
    last_message_preview: null,
    last_message_deleted: null,
    last_activity_ms: Date.now(),
    unread_count: 0,
    kind: null,
    title: null,
    member_ids: [],
  };
  state.inbox.unshift(row);
  renderInbox();
  details(id, true).then((d) => {
    if (!d) return;
    row.kind = d.kind;
    row.title = d.title;
    row.member_ids = d.members.map((m) => m.user_id);
    for (const u of otherMembers(row.member_ids)) watchPresence(u);
    renderInbox();
  });
  return row;
}

async function details(id, fresh) {
  if (!fresh && state.details.has(id)) return state.details.get(id);
  const d = await attempt("Reading the conversation", () =>
    api("GET", "/v1/conversations/" + encodeURIComponent(id)),
  );
  if (d) state.details.set(id, d);
  return d;
}

// ---- Presence -------------------------------------------------------------

function dot(user) {
  const s = document.createElement("span");
  s.className = "dot";
  s.dataset.user = user || "";
  s.dataset.testid = "presence";
  paintDot(s);
  return s;
}

function paintDot(s) {
  const status = state.presence.get(s.dataset.user) || "unknown";
  s.dataset.status = status;
  s.setAttribute("role", "img");
  s.setAttribute("aria-label", status);
  s.title = status;
}

function repaintDots() {
  document.querySelectorAll(".dot").forEach(paintDot);
}

/// Background requests (presence of every contact, delivered receipts at
/// start) one every 50 ms: an inbox of hundreds must not spend the user's rate
/// limit (gateway.user_burst) that sending a message needs.
const background = [];
let backgroundTimer = null;

function paced(f) {
  return new Promise((resolve, reject) => {
    background.push(() => f().then(resolve, reject));
    if (!backgroundTimer) drain();
  });
}

function drain() {
  const next = background.shift();
  if (!next) {
    backgroundTimer = null;
    return;
  }
  next();
  backgroundTimer = setTimeout(drain, 50);
}

async function watchPresence(user, fresh, tries = 0) {
  if (!user || (!fresh && state.presence.has(user))) return;
  if (!state.presence.has(user)) state.presence.set(user, "unknown");
  try {
    const p = await paced(() => api("GET", "/v1/presence/" + encodeURIComponent(user)));
    state.presence.set(user, p.status);
    repaintDots();
  } catch (e) {
    // A 404 right after a conversation started: the views the gateway learns
    // contacts from lag the log a little. Later changes come on the stream.
    if (e.status === 404 && tries < 5 && state.token) {
      setTimeout(() => watchPresence(user, true, tries + 1), 1000 * (tries + 1));
    }
  }
}

// ---- A conversation -------------------------------------------------------

function closeConversation() {
  state.open = null;
  $("conv-body").hidden = true;
  $("conv-empty").hidden = false;
  $("conversation").removeAttribute("data-conversation-id");
}

async function openConversation(id, focusMessage) {
  state.open = { id, order: [], byId: new Map(), hasMore: false, loading: true };
  const open = state.open;
  $("conversation").dataset.conversationId = id;
  $("conv-empty").hidden = true;
  $("conv-body").hidden = false;
  $("messages").replaceChildren();
  // Nothing of the previous conversation's header stays while this one loads.
  $("conv-title").textContent = "";
  $("members").replaceChildren();
  $("member-form").hidden = true;
  renderInbox();
  const [d, page] = await Promise.all([
    details(id, true),
    api("GET", `/v1/conversations/${encodeURIComponent(id)}/messages?limit=${PAGE}`).catch((e) => {
      // The views do not list a conversation created a moment ago yet: no
      // history to show, and its messages come on the stream.
      if (e.status === 404) return [];
      notice("Reading the messages: " + e.message);
      return null;
    }),
  ]);
  if (state.open !== open) return;
  if (d) renderHead(d);
  if (page) {
    // Messages that arrived on the stream while the page was read are newer
    // than it when the views had not applied them yet: they stay, after it.
    const live = open.order.filter((m) => !page.some((p) => p.message_id === m));
    open.order = page.map((m) => m.message_id).concat(live);
    for (const m of page) open.byId.set(m.message_id, m);
    open.hasMore = page.length === PAGE;
  }
  open.loading = false;
  renderMessages();
  const row = inboxRow(id);
  if (row) {
    row.unread_count = 0;
    renderInbox();
  }
  if (focusMessage) await reveal(focusMessage);
  else $("messages").lastElementChild?.scrollIntoView({ block: "end" });
  markRead();
}

function renderHead(d) {
  const others = otherMembers(d.members.map((m) => m.user_id));
  $("conv-title").textContent =
    d.kind === "direct" ? others[0] || "(just you)" : d.title || others.join(", ");
  const items = d.members.map((m) => {
    const li = document.createElement("li");
    li.dataset.testid = "member";
    li.dataset.user = m.user_id;
    li.append(dot(m.user_id), m.user_id === state.me ? m.user_id + " (you)" : m.user_id);
    if (m.user_id !== state.me) watchPresence(m.user_id, true);
    if (d.kind === "group") {
      const rm = document.createElement("button");
      rm.type = "button";
      rm.className = "link";
      rm.textContent = m.user_id === state.me ? "leave" : "remove";
      rm.setAttribute("aria-label", `Remove ${m.user_id} from the conversation`);
      rm.dataset.testid = "member-remove";
      rm.addEventListener("click", () => changeMembers(d.conversation_id, { remove: [m.user_id] }));
      li.append(" ", rm);
    }
    return li;
  });
  $("members").replaceChildren(...items);
  $("member-form").hidden = d.kind !== "group";
}

async function changeMembers(id, change) {
  const ok = await attempt("Changing the members", () =>
    api("POST", `/v1/conversations/${encodeURIComponent(id)}/members`, change),
  );
  if (ok && state.open && state.open.id === id) {
    const d = await details(id, true);
    if (d) renderHead(d);
  }
}

$("member-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const ids = splitIds($("member-input").value);
  if (!state.open || ids.length === 0) return;
  $("member-input").value = "";
  changeMembers(state.open.id, { add: ids });
});

/// Sent, delivered or read: by every other member who was one when it was sent.
function tickState(m) {
  const d = state.details.get(state.open.id);
  const others = d
    ? otherMembers(
        d.members
          .filter((x) => !m.sent_at_ms || !x.joined_at_ms || x.joined_at_ms <= m.sent_at_ms)
          .map((x) => x.user_id),
      )
    : [];
  if (m.pending) return "sending";
  if (m.failed) return "failed";
  if (others.length === 0) return "sent";
  if (others.every((u) => (m.read_by || []).includes(u))) return "read";
  if (others.every((u) => (m.delivered_to || []).includes(u))) return "delivered";
  return "sent";
}

const TICKS = { sending: "…", failed: "!", sent: "✓", delivered: "✓✓", read: "✓✓" };

function messageItem(m) {
  const li = document.createElement("li");
  li.dataset.testid = "message";
  li.dataset.messageId = m.message_id;
  li.dataset.sender = m.sender_id;
  li.className = m.sender_id === state.me ? "msg mine" : "msg";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = m.sender_id;
  const text = document.createElement("p");
  text.className = "text";
  text.dataset.testid = "message-text";
  if (m.deleted) {
    text.textContent = "(deleted)";
    text.classList.add("deleted");
  } else {
    text.textContent = m.text;
  }
  const meta = document.createElement("span");
  meta.className = "meta";
  const time = document.createElement("time");
  const at = new Date(m.sent_at_ms || Date.now());
  time.dateTime = at.toISOString();
  time.textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  meta.append(time);
  if (m.edited && !m.deleted) meta.append(" (edited)");
  li.append(who, text, meta);
  if (m.sender_id === state.me) {
    const t = tickState(m);
    const ticks = document.createElement("span");
    ticks.className = "ticks " + t;
    ticks.dataset.testid = "ticks";
    ticks.dataset.state = t;
    ticks.textContent = TICKS[t];
    ticks.setAttribute("role", "img");
    ticks.setAttribute("aria-label", t);
    ticks.title = t;
    meta.append(" ", ticks);
    if (m.failed) {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "link";
      retry.textContent = "retry";
      retry.dataset.testid = "message-retry";
      retry.addEventListener("click", () => post(state.open, m));
      meta.append(" ", retry);
    } else if (!m.deleted && !m.pending) {
      const edit = document.createElement("button");
      edit.type = "button";
      edit.className = "link";
      edit.textContent = "edit";
      edit.dataset.testid = "message-edit";
      edit.addEventListener("click", () => editMessage(li, m));
      const del = document.createElement("button");
      del.type = "button";
      del.className = "link";
      del.textContent = "delete";
      del.dataset.testid = "message-delete";
      del.addEventListener("click", () => deleteMessage(m));
      meta.append(" ", edit, " ", del);
    }
  }
  return li;
}

function renderMessages() {
  const open = state.open;
  if (!open) return;
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  // A whole list at once is not news: the live region announces additions only.
  list.setAttribute("aria-busy", "true");
  list.replaceChildren(...open.order.map((id) => messageItem(open.byId.get(id))));
  list.setAttribute("aria-busy", "false");
  $("older").hidden = !open.hasMore;
  if (atBottom) list.scrollTop = list.scrollHeight;
}

/// One message changed: only its item is replaced, so the live region
/// announces additions, not the whole list again.
function renderMessage(id) {
  const open = state.open;
  const old = $("messages").querySelector(`[data-message-id="${CSS.escape(id)}"]`);
  const m = open.byId.get(id);
  // A tick moving must not throw away an edit being typed.
  if (old && old.dataset.editing) return;
  if (old && m) old.replaceWith(messageItem(m));
  else renderMessages();
}

function appendMessage(m) {
  const open = state.open;
  const was = open.byId.get(m.message_id);
  if (was) {
    // Already shown (sent from here, or read with the page): what is shown is
    // as new or newer (receipts, edits) than this copy; only confirm it.
    if (was.pending) {
      was.pending = false;
      renderMessage(m.message_id);
    }
    return;
  }
  open.byId.set(m.message_id, m);
  open.order.push(m.message_id);
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(messageItem(m));
  if (atBottom || m.sender_id === state.me) list.scrollTop = list.scrollHeight;
}

$("older").addEventListener("click", () => loadOlder());

async function loadOlder() {
  const open = state.open;
  if (!open || !open.hasMore || open.order.length === 0) return false;
  const before = open.order[0];
  const page = await attempt("Reading older messages", () =>
    api(
      "GET",
      `/v1/conversations/${encodeURIComponent(open.id)}/messages?limit=${PAGE}&before=${encodeURIComponent(before)}`,
    ),
  );
  if (!page || state.open !== open) return false;
  const fresh = page.filter((m) => !open.byId.has(m.message_id));
  for (const m of fresh) open.byId.set(m.message_id, m);
  open.order = fresh.map((m) => m.message_id).concat(open.order);
  open.hasMore = page.length === PAGE;
  const list = $("messages");
  const keep = list.scrollHeight - list.scrollTop;
  list.setAttribute("aria-busy", "true");
  list.replaceChildren(...open.order.map((id) => messageItem(open.byId.get(id))));
  list.setAttribute("aria-busy", "false");
  list.scrollTop = list.scrollHeight - keep;
  $("older").hidden = !open.hasMore;
  return true;
}

/// Pages back until `id` is loaded, then scrolls to it and marks it.
async function reveal(id) {
  const open = state.open;
  while (!open.byId.has(id) && open.hasMore) {
    if (!(await loadOlder())) break;
  }
  const el = $("messages").querySelector(`[data-message-id="${CSS.escape(id)}"]`);
  if (!el) return;
  document.querySelectorAll(".msg.found").forEach((e) => {
    e.classList.remove("found");
    delete e.dataset.found;
  });
  el.classList.add("found");
  el.dataset.found = "true";
  el.tabIndex = -1;
  el.scrollIntoView({ block: "center" });
  el.focus();
}

/// A read receipt for the newest message from someone else the page shows,
/// when the page is looked at; the watermark covers the ones before it.
function markRead() {
  const open = state.open;
  if (!open || open.loading || document.visibilityState !== "visible") return;
  for (let i = open.order.length - 1; i >= 0; i--) {
    const m = open.byId.get(open.order[i]);
    if (m.sender_id === state.me || m.deleted) continue;
    if ((m.read_by || []).includes(state.me)) return;
    if (state.readSent.get(open.id) === m.message_id) return;
    state.readSent.set(open.id, m.message_id);
    receipt(open.id, m.message_id, "read");
    return;
  }
}

document.addEventListener("visibilitychange", markRead);

function receipt(conversation_id, message_id, status) {
  if (status === "delivered") {
    if (state.deliveredSent.has(message_id)) return;
    state.deliveredSent.add(message_id);
  }
  api("POST", "/v1/receipts", { conversation_id, message_id, status }).catch(() => {});
}

$("compose").addEventListener("submit", (ev) => {
  ev.preventDefault();
  send();
});

$("compose-input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    send();
  }
});

async function send() {
  const open = state.open;
  const text = $("compose-input").value;
  if (!open || !text.trim()) return;
  $("compose-input").value = "";
  // The client's own id: a retry cannot send twice, and the stream's copy of
  // this message is recognised as the one already shown.
  const message_id = crypto.randomUUID();
  const m = {
    message_id,
    sender_id: state.me,
    text,
    sent_at_ms: Date.now(),
    edited: false,
    deleted: false,
    delivered_to: [],
    read_by: [],
    pending: true,
  };
  appendMessage(m);
  await post(open, m);
}

/// Publishes a message shown as pending. Refused (a 4xx): it is taken back
/// and its text returned to the box. Not known to have landed (the log did not
/// answer, the network failed): it stays, marked, with a retry under the same
/// id, which the gateway recognises if the first try did land after all.
async function post(open, m) {
  m.pending = true;
  m.failed = false;
  if (state.open === open) renderMessage(m.message_id);
  try {
    await api("POST", "/v1/messages", {
      conversation_id: open.id,
      text: m.text,
      message_id: m.message_id,
    });
    m.pending = false;
  } catch (e) {
    m.pending = false;
    if (e.status >= 400 && e.status < 500 && e.status !== 429) {
      notice("Not sent: " + e.message);
      open.byId.delete(m.message_id);
      open.order = open.order.filter((x) => x !== m.message_id);
      if (state.open === open) {
        renderMessages();
        if (!$("compose-input").value) $("compose-input").value = m.text;
      }
      return;
    }
    notice("Not sent yet: " + e.message);
    m.failed = true;
  }
  if (state.open === open) renderMessage(m.message_id);
}

function editMessage(li, m) {
  const form = document.createElement("form");
  form.className = "edit";
  const label = document.createElement("label");
  label.className = "sr-only";
  label.textContent = "New text";
  const input = document.createElement("input");
  input.value = m.text || "";
  input.dataset.testid = "edit-input";
  label.append(input);
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "Save";
  save.dataset.testid = "edit-save";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.textContent = "Cancel";
  const done = () => {
    delete li.dataset.editing;
    renderMessage(m.message_id);
  };
  cancel.addEventListener("click", done);
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") done();
  });
  form.append(label, save, cancel);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = input.value;
    const conversation_id = state.open.id;
    const ok = await attempt("Editing", () =>
      api("PATCH", "/v1/messages/" + encodeURIComponent(m.message_id), { conversation_id, text }),
    );
    if (!ok) return;
    delete li.dataset.editing;
    applyEvent({ type: "message_edited", conversation_id, message_id: m.message_id, text });
  });
  li.dataset.editing = "true";
  li.querySelector(".text").replaceWith(form);
  input.focus();
}

async function deleteMessage(m) {
  if (!confirm("Delete this message for everyone?")) return;
  const conversation_id = state.open.id;
  const ok = await attempt("Deleting", () =>
    api(
      "DELETE",
      `/v1/messages/${encodeURIComponent(m.message_id)}?conversation_id=${encodeURIComponent(conversation_id)}`,
    ),
  );
  if (ok) applyEvent({ type: "message_deleted", conversation_id, message_id: m.message_id });
}

// ---- Starting conversations -----------------------------------------------

function splitIds(text) {
  return text
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

$("new-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const kind = $("new-kind").value;
  const member_ids = splitIds($("new-members").value);
  const title = $("new-title").value.trim();
  const body = { kind, member_ids };
  if (kind === "group" && title) body.title = title;
  const r = await attempt("Starting the conversation", () => api("POST", "/v1/conversations", body));
  if (!r) return;
  $("new-members").value = "";
  $("new-title").value = "";
  $("new-box").open = false;
  ensureRow(r.conversation_id);
  openConversation(r.conversation_id);
  $("compose-input").focus();
});

// ---- Search ---------------------------------------------------------------

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'", "#x27": "'", apos: "'" };

function decode(s) {
  return s.replace(/&(amp|lt|gt|quot|#39|#x27|apos);/g, (_, e) => ENTITIES[e]);
}

/// The server's snippet is escaped text with the matches in <b>…</b>. It is
/// rebuilt from exactly that: any other markup, and it is shown as plain text.
function snippetNodes(snippet, fallback) {
  const parts = snippet.split(/(<b>|<\/b>)/);
  if (parts.some((p) => p !== "<b>" && p !== "</b>" && p.includes("<"))) {
    return [document.createTextNode(fallback)];
  }
  const out = [];
  let bold = false;
  for (const p of parts) {
    if (p === "<b>") bold = true;
    else if (p === "</b>") bold = false;
    else if (p) {
      if (bold) {
        const mark = document.createElement("mark");
        mark.textContent = decode(p);
        out.push(mark);
      } else out.push(document.createTextNode(decode(p)));
    }
  }
  return out.length ? out : [document.createTextNode(fallback)];
}

$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("search-input").value.trim();
  if (!q) return;
  const hits = await attempt("Searching", () => api("GET", "/v1/search?q=" + encodeURIComponent(q)));
  if (!hits) return;
  const items = hits.map((h) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "hit";
    b.dataset.testid = "search-hit";
    b.dataset.conversationId = h.conversation_id;
    b.dataset.messageId = h.message_id;
    const row = inboxRow(h.conversation_id);
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = h.sender_id + (row ? " in " + nameOf(row) : "");
    const snip = document.createElement("span");
    snip.className = "snippet";
    snip.append(...snippetNodes(h.snippet || "", h.text || ""));
    b.append(where, snip);
    b.addEventListener("click", () => openConversation(h.conversation_id, h.message_id));
    li.append(b);
    return li;
  });
  if (items.length === 0) {
    const li = document.createElement("li");
    li.textContent = "No messages match.";
    items.push(li);
  }
  $("search-results").replaceChildren(...items);
  $("search-box").hidden = false;
});

$("search-close").addEventListener("click", () => {
  $("search-box").hidden = true;
  $("search-input").focus();
});

// ---- Live updates ---------------------------------------------------------

function setConn(status) {
  $("conn").textContent = status;
  $("conn").dataset.status = status;
}

function connect() {
  clearTimeout(state.reconnectTimer);
  if (!state.token || state.held) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let url = `${scheme}://${location.host}/v1/stream?access_token=${encodeURIComponent(state.token)}`;
  if (state.cursor) url += "&since=" + encodeURIComponent(state.cursor);
  const resuming = Boolean(state.cursor);
  let opened = false;
  const ws = new WebSocket(url);
  state.ws = ws;
  setConn("connecting");
  ws.onopen = () => {
    opened = true;
    state.refusedResumes = 0;
    state.backoff = 0;
    setConn("live");
    // The replay moved the inbox rows by counting events; the views, which
    // apply the same events a moment later, have the exact counts.
    if (resuming) setTimeout(() => state.ws === ws && loadInbox(), 1500);
  };
  ws.onmessage = (msg) => {
    if (state.ws !== ws) return;
    let frame;
    try {
      frame = JSON.parse(msg.data);
    } catch (_) {
      return;
    }
    if (frame.type === "error") {
      notice(frame.error || "the stream reported an error");
      return;
    }
    if (frame.event) applyEvent(frame.event);
    if (frame.cursor) {
      state.cursor = frame.cursor;
      if (state.me) sessionStorage.setItem("courier.cursor." + state.me, frame.cursor);
    }
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (state.signingOut || !state.token) return;
    if (ev.code === 4401) {
      signOut("Your token expired: sign in again.");
      return;
    }
    if (ev.code === 4410) resync();
    else if (!opened && resuming) {
      // The handshake failed with a cursor: the gateway is down, or it refuses
      // the cursor (a 400 for one it cannot read), which the browser does not
      // tell apart. A gateway that answers otherwise while refusing it three
      // times: the cursor is given up, as on 4410.
      fetch("/healthz")
        .then(() => {
          state.refusedResumes = (state.refusedResumes || 0) + 1;
          if (state.refusedResumes >= 3) resync();
        })
        .catch(() => {});
    }
    scheduleReconnect();
  };
}

/// The cursor cannot be resumed from: start from now, and re-read what the
/// views say instead.
function resync() {
  state.refusedResumes = 0;
  state.cursor = null;
  if (state.me) sessionStorage.removeItem("courier.cursor." + state.me);
  loadInbox();
  if (state.open) openConversation(state.open.id);
}

function scheduleReconnect() {
  if (state.held) {
    setConn("offline");
    return;
  }
  // Exponential backoff with jitter, so a restarted gateway is not stormed.
  const delay = Math.min(15000, 500 * 2 ** state.backoff) * (0.75 + Math.random() / 2);
  state.backoff = Math.min(state.backoff + 1, 5);
  setConn("reconnecting");
  state.reconnectTimer = setTimeout(connect, delay);
}

window.addEventListener("online", () => {
  if (!state.ws && state.token) connect();
});

/// For the browser test and for trying resume by hand: `drop()` cuts the live
/// connection as a network failure would and holds reconnects until
/// `restore()`, which reconnects from the last cursor.
window.courier = {
  drop() {
    state.held = true;
    if (state.ws) state.ws.close(4000, "dropped by the client");
  },
  restore() {
    state.held = false;
    state.backoff = 0;
    connect();
  },
};

function applyEvent(e) {
  const open = state.open && state.open.id === e.conversation_id ? state.open : null;
  switch (e.type) {
    case "message_sent": {
      const row = ensureRow(e.conversation_id);
      if (row.last_message_id !== e.message_id) {
        row.last_message_id = e.message_id;
        row.last_message_preview = (e.text || "").slice(0, 100);
        row.last_message_deleted = false;
        if (!open && e.sender_id !== state.me) row.unread_count += 1;
      }
      // Newest activity first, as the API orders the inbox.
      state.inbox = [row].concat(state.inbox.filter((r) => r !== row));
      renderInbox();
      if (open) {
        appendMessage({
          message_id: e.message_id,
          sender_id: e.sender_id,
          text: e.text,
          sent_at_ms: e.at_ms,
          edited: false,
          deleted: false,
          delivered_to: [],
          read_by: [],
        });
        markRead();
      } else if (e.sender_id !== state.me) {
        receipt(e.conversation_id, e.message_id, "delivered");
      }
      break;
    }
    case "message_edited":
    case "message_deleted": {
      const row = inboxRow(e.conversation_id);
      if (row && row.last_message_id === e.message_id) {
        if (e.type === "message_edited") row.last_message_preview = (e.text || "").slice(0, 100);
        else row.last_message_deleted = true;
        renderInbox();
      }
      const m = open && open.byId.get(e.message_id);
      if (m) {
        if (e.type === "message_edited") {
          m.text = e.text;
          m.edited = true;
        } else {
          m.deleted = true;
          m.text = null;
        }
        renderMessage(e.message_id);
      }
      break;
    }
    case "receipt": {
      if (!open) break;
      // A watermark: this message and every earlier one the user can see.
      const upTo = open.order.indexOf(e.message_id);
      for (let i = 0; i <= upTo; i++) {
        const m = open.byId.get(open.order[i]);
        if (m.sender_id === e.user_id) continue;
        const add = (list) => (list.includes(e.user_id) ? list : list.concat([e.user_id]));
        const before = tickState(m);
        m.delivered_to = add(m.delivered_to || []);
        if (e.status === "read") m.read_by = add(m.read_by || []);
        if (tickState(m) !== before) renderMessage(m.message_id);
      }
      break;
    }
    case "conversation_created":
    case "members_added":
    case "members_removed": {
      state.details.delete(e.conversation_id);
      const removedMe = e.type === "members_removed" && (e.user_ids || []).includes(state.me);
      if (removedMe) {
        loadInbox();
      } else {
        const row = inboxRow(e.conversation_id);
        if (row) {
          details(e.conversation_id, true).then((d) => {
            if (!d) return;
            row.member_ids = d.members.map((m) => m.user_id);
            row.title = d.title;
            renderInbox();
          });
        } else ensureRow(e.conversation_id);
      }
      if (open) details(e.conversation_id, true).then((d) => d && renderHead(d));
      break;
    }
    case "presence": {
      if (e.user_id === state.me) {
        $("my-presence").value = e.status;
      } else {
        state.presence.set(e.user_id, e.status);
        repaintDots();
      }
      break;
    }
    default:
      break;
  }
}

window.addEventListener("pagehide", () => {
  if (!state.token) return;
  // keepalive: the request outlives the page.
  fetch("/v1/presence", {
    method: "PUT",
    keepalive: true,
    headers: { Authorization: "Bearer " + state.token, "Content-Type": "application/json" },
    body: JSON.stringify({ status: "offline" }),
  }).catch(() => {});
});

start();
