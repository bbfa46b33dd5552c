// The inbox: a client of the gateway's /v1 API and its event stream, nothing more.
// No framework, no build step. Every value from a message is put in the page as text
// (textContent), never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const TYPING_EVERY_MS = 20000;
const PAGE = 40;

const state = {
  auth: null,          // 'session' | 'open'
  csrf: null,
  numbers: [],         // [{phone_number_id, display_phone_number, default}]
  number: '',          // selected business number ('' = all)
  query: '',
  conversations: [],   // list entries in order
  listCursor: null,
  listLoading: false,
  current: null,       // {phone_number_id, contact}
  messages: new Map(), // id -> message (current thread)
  olderCursor: null,
  olderLoading: false,
  replyTo: null,       // message id
  lastTyping: new Map(), // per conversation (number:contact): when its typing indicator last went out
  listMarked: false,      // the list's first render is marked on the performance timeline
  pendingSend: null,   // {body, key} of a failed send, for Retry
  events: null,
  lastEventId: '',     // the last event id this tab received: a stream cut for lag resumes after it
  held: null,          // while state is being read: the stream's events, applied after the read
  templates: null,
  templatesFor: null,  // the conversation the picker was filled for
};

// ---------- HTTP ----------

class ApiError extends Error {
  constructor(status, data) {
    super(describeError(status, data));
    this.status = status;
    this.data = data;
  }
}

function describeError(status, data) {
  const d = data && data.detail;
  if (typeof d === 'string') return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).join('.')}: ${e.msg}`).join('; ');
  if (d && typeof d === 'object') {
    let text = d.message || `error ${status}`;
    if (d.code) text += ` (code ${d.code})`;
    if (d.details) text += `: ${d.details}`;
    if (d.hint) text += ` — ${d.hint}`;
    return text;
  }
  return `The gateway answered ${status}`;
}

async function api(method, path, body, extraHeaders) {
  const headers = { Accept: 'application/json', ...(extraHeaders || {}) };
  let payload;
  if (method !== 'GET') {
    if (state.csrf) headers['X-CSRF-Token'] = state.csrf;
    if (body instanceof FormData) {
      payload = body;
    } else {
      headers['Content-Type'] = 'application/json';
      if (body !== undefined) payload = JSON.stringify(body);
    }
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401 && path !== '/inbox/session') {
    showSignIn();
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const enc = encodeURIComponent;
const withNumber = (path, pnid) => `${path}${path.includes('?') ? '&' : '?'}phone_number_id=${enc(pnid)}`;

// ---------- sign-in ----------

async function start() {
  let session;
  try {
    session = await api('GET', '/inbox/session');
  } catch (e) {
    if (e.status === 401) return showSignIn();
    // Restarting, or the network is down: say so, and try again.
    showBanner(`The gateway could not be reached (${e.message}); trying again…`);
    $('live').hidden = false;
    setTimeout(() => start(), 3000);
    return;
  }
  await enter(session);
}

function showSignIn() {
  stopEvents();
  $('app').hidden = true;
  $('signin').hidden = false;
  $('key').focus();
}

async function enter(session) {
  state.auth = session.auth;
  state.csrf = session.csrf;
  if (session.warning) showBanner(session.warning);
  else $('banner').hidden = true;
  showDeliveryWarning(session.webhooks);
  $('signout').hidden = session.auth !== 'session';
  $('signin').hidden = true;
  $('app').hidden = false;
  await loadNumbers();
  // A new stream (live from now) opens first, and its events wait while the state is read, then
  // apply in order: an event stored during the read is neither missed nor undone by the read's
  // older answer (the gateway answers once the stream follows the log). Coming back (a refused
  // reconnect, a new sign-in) the open thread is read again too.
  const hold = [];
  state.held = hold;
  await startEvents({ fresh: true });
  try {
    await reloadConversations();
    if (state.current) await refreshThread().catch(() => {});
  } finally {
    // A later enter() may have begun its own hold meanwhile: this one applies only its own.
    if (state.held === hold) state.held = null;
    for (const apply of hold) apply();
    if (hold.reset) reread();
  }
}

// Reads the conversation list and the open thread again.
function reread() {
  reloadConversations();
  refreshThread().catch(() => {});
}

$('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('signin-error').textContent = '';
  const key = $('key').value;
  try {
    const session = await api('POST', '/inbox/session', { key });
    $('key').value = '';
    await enter(session);
  } catch (e) {
    $('signin-error').textContent = e.status === 401 ? 'Wrong API key.' : e.message;
  }
});

$('signout').addEventListener('click', async () => {
  try { await api('DELETE', '/inbox/session'); } catch (_) { /* signed out anyway */ }
  state.csrf = null;
  showSignIn();
});

// "No webhook from Meta for N minutes": shown at load, gone once a delivery arrives.
function showDeliveryWarning(webhooks) {
  const warning = webhooks && webhooks.warning;
  $('delivery').textContent = warning ? `Meta delivery: ${warning}` : '';
  $('delivery').hidden = !warning;
}

function showBanner(text) {
  $('banner').textContent = text;
  $('banner').hidden = false;
}

// ---------- numbers and conversations ----------

async function loadNumbers() {
  try {
    const data = await api('GET', '/v1/numbers');
    state.numbers = data.numbers || [];
  } catch (_) {
    state.numbers = [];
  }
  const select = $('number');
  select.replaceChildren();
  if (state.numbers.length > 1) {
    select.append(new Option('All numbers', ''));
    for (const n of state.numbers) {
      select.append(new Option(n.display_phone_number ? `+${n.display_phone_number}` : n.phone_number_id, n.phone_number_id));
    }
    select.hidden = false;
  } else {
    select.hidden = true;
  }
}

$('number').addEventListener('change', () => {
  state.number = $('number').value;
  reloadConversations();
});

let searchTimer = null;
$('search').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    state.query = $('search').value.trim();
    reloadConversations();
  }, 250);
});

async function reloadConversations() {
  state.conversations = [];
  state.listCursor = null;
  $('conversations').replaceChildren();
  await loadMoreConversations(true);
}

async function loadMoreConversations(first) {
  if (state.listLoading || (!first && !state.listCursor)) return;
  state.listLoading = true;
  try {
    let path = `/v1/conversations?limit=${PAGE}`;
    if (state.number) path += `&phone_number_id=${enc(state.number)}`;
    if (state.query) path += `&q=${enc(state.query)}`;
    if (state.listCursor) path += `&cursor=${enc(state.listCursor)}`;
    const data = await api('GET', path);
    for (const c of data.conversations) upsertConversation(c, false);
    state.listCursor = data.next_cursor;
    renderConversations();
    // The first render of the list, for the browser's performance timeline (measured in tests).
    if (!state.listMarked) {
      state.listMarked = true;
      performance.mark('inbox:conversations');
    }
  } catch (e) {
    showBanner(`Conversations could not be loaded: ${e.message}`);
  } finally {
    state.listLoading = false;
  }
}

new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadMoreConversations(false);
}).observe($('list-sentinel'));

const convKey = (c) => `${c.phone_number_id}:${c.contact.id}`;

function upsertConversation(c, sort) {
  const key = convKey(c);
  const at = state.conversations.findIndex((x) => convKey(x) === key);
  if (at >= 0) state.conversations[at] = c; else state.conversations.push(c);
  if (sort) state.conversations.sort((a, b) => (b.last_message_at || 0) - (a.last_message_at || 0));
}

function contactName(contact) {
  if (!contact) return '';
  const number = contact.wa_id ? `+${contact.wa_id}` : contact.id;
  return contact.name || contact.username || number;
}

function renderConversations() {
  const list = $('conversations');
  const items = state.conversations
    .filter((c) => !state.number || c.phone_number_id === state.number)
    .map((c) => {
      const li = document.createElement('li');
      li.dataset.key = convKey(c);
      if (state.current && convKey(state.current) === li.dataset.key) li.classList.add('active');
      const b = document.createElement('button');
      b.type = 'button';
      const name = span('conv-name', contactName(c.contact));
      const time = span('conv-time', c.last_message_at ? shortTime(c.last_message_at) : '');
      const preview = span('conv-preview', c.last_message || '');
      const meta = span('conv-meta', '');
      if (c.window_expires_at && c.window_expires_at * 1000 > Date.now()) {
        meta.append(span('window-open', `open ${remaining(c.window_expires_at)}`));
      }
      if (c.unread_count > 0) {
        const badge = span('badge', String(c.unread_count));
        badge.setAttribute('aria-label', `${c.unread_count} unread`);
        meta.append(badge);
      }
      b.append(name, time, preview, meta);
      b.addEventListener('click', () => openConversation(c));
      li.append(b);
      return li;
    });
  list.replaceChildren(...items);
  $('list-empty').hidden = items.length > 0;
}

// ---------- the thread ----------

async function openConversation(c) {
  state.current = { phone_number_id: c.phone_number_id, contact: c.contact };
  state.messages = new Map();
  state.olderCursor = null;
  state.replyTo = null;
  state.pendingSend = null;
  $('replying').hidden = true;
  $('send-error').hidden = true;
  document.body.classList.add('show-thread');
  $('thread-title').textContent = contactName(c.contact);
  $('messages').replaceChildren();
  renderWindow(c);
  renderConversations();
  try {
    const data = await api('GET', withNumber(`/v1/conversations/${enc(c.contact.id)}/messages?limit=${PAGE}`, c.phone_number_id));
    if (!sameThread(c)) return;
    for (const m of data.messages) state.messages.set(m.id, m);
    state.olderCursor = data.next_cursor;
    renderMessages(true);
  } catch (e) {
    showBanner(`Messages could not be loaded: ${e.message}`);
  }
  if (c.unread_count > 0) markRead(c);
}

function sameThread(c) {
  return state.current && convKey(state.current) === convKey(c);
}

async function markRead(c) {
  try {
    const updated = await api('POST', withNumber(`/v1/conversations/${enc(c.contact.id)}/read`, c.phone_number_id));
    if (updated && updated.contact) {
      upsertConversation(updated, false);
      renderConversations();
    }
  } catch (e) {
    showBanner(`Marking as read failed: ${e.message}`);
  }
}

function renderWindow(c) {
  const open = c.window_expires_at && c.window_expires_at * 1000 > Date.now();
  $('window-state').textContent = open
    ? `24-hour window open, ${remaining(c.window_expires_at)} left`
    : 'No open 24-hour window: only templates can be sent';
  $('composer').hidden = !open;
  $('templates').hidden = open;
  // Loaded once per conversation, so live updates do not wipe what is being filled in.
  if (!open && state.templatesFor !== convKey(c)) {
    state.templatesFor = convKey(c);
    loadTemplates();
  }
}

$('back').addEventListener('click', () => document.body.classList.remove('show-thread'));

$('messages').addEventListener('scroll', () => {
  if ($('messages').scrollTop < 40) loadOlder();
});

async function loadOlder() {
  const c = state.current;
  if (!c || !state.olderCursor || state.olderLoading) return;
  state.olderLoading = true;
  const box = $('messages');
  const fromBottom = box.scrollHeight - box.scrollTop;
  try {
    const data = await api('GET', withNumber(`/v1/conversations/${enc(c.contact.id)}/messages?limit=${PAGE}&before=${enc(state.olderCursor)}`, c.phone_number_id));
    if (!sameThread(c)) return;
    for (const m of data.messages) state.messages.set(m.id, m);
    state.olderCursor = data.next_cursor;
    renderMessages(false);
    box.scrollTop = box.scrollHeight - fromBottom;
  } finally {
    state.olderLoading = false;
  }
}

function sortedMessages() {
  return [...state.messages.values()].sort((a, b) => (a.timestamp - b.timestamp) || (a.id < b.id ? -1 : 1));
}

// The quick reactions offered on a customer's message.
const REACTIONS = ['👍', '❤️', '😂', '🙏'];

// Messages that change another one (edits, revokes, reactions) are shown on it, not on their own.
const CHANGES = new Set(['edit', 'revoke', 'reaction']);

function renderMessages(scrollToEnd) {
  const box = $('messages');
  const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const nodes = [];
  let day = '';
  for (const m of sortedMessages()) {
    if (CHANGES.has(m.type)) continue;
    const d = new Date(m.timestamp * 1000).toDateString();
    if (d !== day) {
      day = d;
      nodes.push(span('day', dayLabel(m.timestamp)));
    }
    nodes.push(bubble(m));
  }
  box.replaceChildren(...nodes);
  if (scrollToEnd || nearEnd) box.scrollTop = box.scrollHeight;
}

function bubble(m) {
  const div = document.createElement('div');
  div.className = `bubble ${m.direction}`;
  div.id = `m-${m.id}`;
  div.tabIndex = -1;
  const replied = m.context && (m.context.id || m.context.message_id);
  if (replied) {
    const original = state.messages.get(replied);
    const quote = span('quote', original ? summary(original) : 'Reply to an earlier message');
    quote.addEventListener('click', () => jumpTo(replied));
    div.append(quote);
  }
  if (m.deleted) {
    div.append(span('deleted', 'This message was deleted'));
  } else {
    div.append(content(m));
  }
  if (m.reaction && m.reaction.emoji) {
    div.append(span('reaction', m.reaction.emoji));
    div.classList.add('has-reaction');
  }
  const meta = span('meta', '');
  if (m.edited) meta.append(span('', 'edited'));
  meta.append(span('', clock(m.timestamp)));
  if (m.direction === 'outbound') meta.append(tick(m.status));
  const actions = span('actions', '');
  const reply = document.createElement('button');
  reply.type = 'button';
  reply.textContent = 'Reply';
  reply.addEventListener('click', () => startReply(m));
  actions.append(reply);
  if (m.direction === 'inbound') {
    for (const emoji of REACTIONS) {
      const react = document.createElement('button');
      react.type = 'button';
      react.textContent = emoji;
      react.setAttribute('aria-label', `React with ${emoji}`);
      react.addEventListener('click', () => sendReaction(m, emoji));
      actions.append(react);
    }
  }
  meta.prepend(actions);
  div.append(meta);
  if (m.status === 'failed') {
    const failure = span('failure', 'Not delivered');
    div.append(failure);
    explainFailure(m, failure);
  }
  return div;
}

function tick(status) {
  const marks = { accepted: '🕓', sent: '✓', delivered: '✓✓', read: '✓✓', played: '✓✓', failed: '⚠' };
  const t = span(`tick ${status || ''}`, marks[status] || '');
  t.title = status || '';
  t.setAttribute('aria-label', status || 'no status yet');
  t.dataset.status = status || '';
  return t;
}

async function explainFailure(m, node) {
  try {
    const full = await api('GET', withNumber(`/v1/messages/${enc(m.id)}`, m.phone_number_id));
    const failed = (full.statuses || []).find((s) => s.status === 'failed');
    const err = failed && failed.errors && failed.errors[0];
    if (err) {
      let text = `Not delivered: ${err.title || err.message || 'error'} (code ${err.code})`;
      if (err.details || (err.error_data && err.error_data.details)) text += `: ${err.details || err.error_data.details}`;
      if (err.hint) text += ` — ${err.hint}`;
      node.textContent = text;
    }
  } catch (_) { /* the short text stays */ }
}

function mediaUrl(m, media) {
  return withNumber(`/v1/media/${enc(media.id)}`, m.phone_number_id);
}

function content(m) {
  const c = m.edited && m.edited.content ? m.edited.content : (m.content || {});
  const box = document.createElement('div');
  const caption = () => { if (c.caption) box.append(span('', c.caption)); };
  switch (c.type) {
    case 'text':
      box.append(document.createTextNode(c.body || ''));
      break;
    case 'image':
    case 'sticker':
      if (c.id) {
        const img = document.createElement('img');
        img.className = 'media';
        img.alt = c.caption || c.type;
        img.loading = 'lazy';
        img.src = mediaUrl(m, c);
        box.append(img);
      } else box.append(span('', `[${c.type}]`));
      caption();
      break;
    case 'video':
    case 'audio': {
      if (c.id) {
        const player = document.createElement(c.type);
        player.controls = true;
        player.preload = 'none';
        player.src = mediaUrl(m, c);
        player.setAttribute('aria-label', c.voice ? 'voice message' : c.type);
        box.append(player);
      } else box.append(span('', `[${c.type}]`));
      caption();
      break;
    }
    case 'document': {
      if (c.id) {
        const a = document.createElement('a');
        a.href = mediaUrl(m, c);
        a.download = c.filename || 'document';
        a.textContent = `📄 ${c.filename || 'document'}`;
        box.append(a);
      } else box.append(span('', `📄 ${c.filename || 'document'}`));
      caption();
      break;
    }
    case 'location': {
      const label = [c.name, c.address].filter(Boolean).join(', ') || `${c.latitude}, ${c.longitude}`;
      box.append(span('', `📍 ${label}`));
      break;
    }
    case 'contacts':
      for (const card of c.contacts || []) {
        const name = (card.name && (card.name.formatted_name || card.name.first_name)) || 'Contact';
        const phones = (card.phones || []).map((p) => p.phone || p.wa_id).filter(Boolean).join(', ');
        box.append(span('card', `👤 ${name}${phones ? ` · ${phones}` : ''}`));
      }
      break;
    case 'interactive': {
      const i = c.interactive || {};
      box.append(span('', `↩ ${i.title || i.body || i.type || 'interactive reply'}`));
      break;
    }
    case 'button':
      box.append(span('', `↩ ${c.text || c.payload || 'button'}`));
      break;
    case 'order': {
      const items = (c.product_items || []).length;
      box.append(span('', `🛒 Order: ${items} item${items === 1 ? '' : 's'}${c.text ? ` · ${c.text}` : ''}`));
      break;
    }
    default:
      box.append(document.createTextNode(m.body || `[${m.type}]`));
  }
  return box;
}

function summary(m) {
  const c = m.content || {};
  return (c.type === 'text' && c.body) || c.caption || m.body || `[${m.type}]`;
}

function jumpTo(id) {
  const node = document.getElementById(`m-${id}`);
  if (!node) return;
  node.scrollIntoView({ block: 'center' });
  node.classList.add('flash');
  node.focus();
  setTimeout(() => node.classList.remove('flash'), 1500);
}

function startReply(m) {
  state.replyTo = m.id;
  $('replying-text').textContent = `Replying to: ${summary(m)}`;
  $('replying').hidden = false;
  $('text').focus();
}

$('cancel-reply').addEventListener('click', () => {
  state.replyTo = null;
  $('replying').hidden = true;
});

// ---------- sending ----------

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function send(body, key) {
  const c = state.current;
  const sent = await api('POST', '/v1/messages', { to: c.contact.id, from: c.phone_number_id, ...body }, { 'Idempotency-Key': key });
  return sent;
}

async function sendAndShow(body, key, errorBox, errorText) {
  errorBox.hidden = true;
  try {
    await send(body, key);
  } catch (e) {
    state.pendingSend = { body, key };
    errorText.textContent = `Not sent: ${e.message}`;
    errorBox.hidden = false;
    return false;
  }
  state.pendingSend = null;
  // Sent: a failed refresh must not read as a failed send.
  refreshThread().catch(() => {});
  return true;
}

// The key of a send: the failed one's again when the same message is sent again (Enter instead
// of Retry), so a send whose outcome was unknown is never made twice.
function keyFor(body) {
  const pending = state.pendingSend;
  return pending && JSON.stringify(pending.body) === JSON.stringify(body) ? pending.key : newKey();
}

// The store keeps a message's latest reaction; tapping the one shown removes it.
async function sendReaction(m, emoji) {
  const shown = m.reaction && m.reaction.emoji === emoji;
  const body = { type: 'reaction', reaction: { message_id: m.id, emoji: shown ? '' : emoji } };
  await sendAndShow(body, keyFor(body), $('send-error'), $('send-error-text'));
}

$('composer').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('text').value.trim();
  if (!text || !state.current) return;
  const body = { type: 'text', text: { body: text } };
  if (state.replyTo) body.reply_to = state.replyTo;
  $('send').disabled = true;
  const ok = await sendAndShow(body, keyFor(body), $('send-error'), $('send-error-text'));
  $('send').disabled = false;
  if (ok) {
    $('text').value = '';
    state.replyTo = null;
    $('replying').hidden = true;
  }
});

$('retry').addEventListener('click', async () => {
  const pending = state.pendingSend;
  if (!pending) return;
  // The same Idempotency-Key: if the first attempt did reach Meta, nothing is sent twice.
  const ok = await sendAndShow(pending.body, pending.key, $('send-error'), $('send-error-text'));
  if (ok && pending.body.type === 'text') $('text').value = '';
});

$('text').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) {
    ev.preventDefault();
    $('composer').requestSubmit();
  }
});

$('text').addEventListener('input', () => {
  const c = state.current;
  if (!c) return;
  // Each conversation's indicator is paced on its own: another one gets its own at once.
  const key = `${c.phone_number_id}:${c.contact.id}`;
  if (Date.now() - (state.lastTyping.get(key) || 0) < TYPING_EVERY_MS) return;
  state.lastTyping.set(key, Date.now());
  api('POST', withNumber(`/v1/conversations/${enc(c.contact.id)}/typing`, c.phone_number_id)).catch(() => {});
});

$('file').addEventListener('change', async () => {
  const file = $('file').files[0];
  $('file').value = '';
  const c = state.current;
  if (!file || !c) return;
  const form = new FormData();
  form.append('file', file, file.name);
  try {
    const uploaded = await api('POST', `/v1/media?from=${enc(c.phone_number_id)}`, form);
    const kind = uploaded.type || 'document';
    const media = { id: uploaded.id };
    if (kind === 'document') media.filename = uploaded.filename || file.name;
    const caption = $('text').value.trim();
    if (caption && ['image', 'video', 'document'].includes(kind)) media.caption = caption;
    const body = { type: kind, [kind]: media };
    if (state.replyTo) body.reply_to = state.replyTo;
    if (await sendAndShow(body, newKey(), $('send-error'), $('send-error-text')) && media.caption) $('text').value = '';
  } catch (e) {
    $('send-error-text').textContent = `Upload failed: ${e.message}`;
    $('send-error').hidden = false;
  }
});

async function refreshThread() {
  const c = state.current;
  if (!c) return;
  const data = await api('GET', withNumber(`/v1/conversations/${enc(c.contact.id)}/messages?limit=${PAGE}`, c.phone_number_id));
  if (!sameThread(c)) return;
  for (const m of data.messages) state.messages.set(m.id, m);
  renderMessages(true);
}

// ---------- templates (closed window) ----------

async function loadTemplates() {
  const c = state.current;
  const select = $('template');
  $('template-error').hidden = true;
  try {
    const data = await api('GET', withNumber('/v1/templates', c.phone_number_id));
    state.templates = data.templates || [];
  } catch (e) {
    state.templates = [];
    $('template-error').textContent = `Templates could not be loaded: ${e.message}`;
    $('template-error').hidden = false;
  }
  select.replaceChildren(...state.templates.map((t, i) => new Option(`${t.name} (${t.language})`, String(i))));
  renderTemplateParams();
}

$('template').addEventListener('change', renderTemplateParams);

function renderTemplateParams() {
  const t = state.templates && state.templates[Number($('template').value)];
  const box = $('template-params');
  box.replaceChildren();
  if (!t) return;
  (t.parameters || []).forEach((p, pi) => {
    const names = p.placeholders && p.placeholders.length ? p.placeholders : [null];
    names.forEach((name, ni) => {
      const label = document.createElement('label');
      const what = p.component === 'button'
        ? `Button ${Number(p.index) + 1} (${BUTTON_FIELD[p.sub_type] || 'payload'})`
        : p.type === 'text' ? `${p.component} {{${name}}}` : `${p.component} ${p.type} (link)`;
      label.append(document.createTextNode(what));
      const input = document.createElement('input');
      input.required = true;
      input.dataset.param = String(pi);
      input.dataset.slot = String(ni);
      label.append(input);
      box.append(label);
    });
  });
}

// What a template button's parameter is, by sub-type (quick replies take a payload).
const BUTTON_FIELD = { url: 'URL suffix', copy_code: 'coupon code' };

function templateBody(t) {
  const components = [];
  const value = (pi, ni) => box().querySelector(`input[data-param="${pi}"][data-slot="${ni}"]`).value;
  const box = () => $('template-params');
  (t.parameters || []).forEach((p, pi) => {
    if (p.component === 'button') {
      const v = value(pi, 0);
      const parameter = p.sub_type === 'url' ? { type: 'text', text: v }
        : p.sub_type === 'copy_code' ? { type: 'coupon_code', coupon_code: v }
          : { type: 'payload', payload: v };
      components.push({ type: 'button', sub_type: p.sub_type, index: String(p.index), parameters: [parameter] });
    } else if (p.type === 'text') {
      const parameters = p.placeholders.map((name, ni) => {
        const param = { type: 'text', text: value(pi, ni) };
        if (!/^\d+$/.test(name)) param.parameter_name = name;
        return param;
      });
      components.push({ type: p.component, parameters });
    } else {
      components.push({ type: p.component, parameters: [{ type: p.type, [p.type]: { link: value(pi, 0) } }] });
    }
  });
  const template = { name: t.name, language: { code: t.language } };
  if (components.length) template.components = components;
  return { type: 'template', template };
}

$('templates').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const t = state.templates && state.templates[Number($('template').value)];
  if (!t) return;
  const errorBox = $('template-error');
  const body = templateBody(t);
  await sendAndShow(body, keyFor(body), errorBox, errorBox);
});

// ---------- live events ----------

// A message of the open conversation, new or changed.
function onMessage(m) {
  if (m.direction === 'inbound') showDeliveryWarning(null);
  if (state.current && m.phone_number_id === state.current.phone_number_id && m.contact && m.contact.id === state.current.contact.id) {
    state.messages.set(m.id, { ...(state.messages.get(m.id) || {}), ...m });
    renderMessages(false);
    if (m.direction === 'inbound' && document.visibilityState === 'visible') markRead(state.current);
  }
}

// An edit, a deletion or a reaction in the open conversation: its thread is read again.
function onChange(m) {
  if (state.current && m.contact && m.contact.id === state.current.contact.id) refreshThread().catch(() => {});
}

// What the page does with each event type it acts on. The stream is filtered to these types, so
// the last event id the page keeps is the last one the gateway sent it.
const EVENT_HANDLERS = {
  message_incoming: onMessage,
  message_outgoing: onMessage,
  conversation_updated: (c) => {
    if (!c || !c.contact) return;
    if (state.number && c.phone_number_id !== state.number) return;
    // While searching, only the conversations the search found are kept up to date.
    if (state.query && !state.conversations.some((x) => convKey(x) === convKey(c))) return;
    upsertConversation(c, true);
    renderConversations();
    if (state.current && convKey(state.current) === convKey(c)) renderWindow(c);
  },
  conversation_deleted: () => reloadConversations(),
  message_status: (s) => {
    const m = state.messages.get(s.id);
    if (m) {
      m.status = s.status;
      renderMessages(false);
    }
  },
  message_edited: onChange,
  message_deleted: onChange,
  reaction: onChange,
};

// Opens the event stream: live from now when `fresh` (the caller reads the state), else after
// the last event this tab received (EventSource's own reconnects send that as Last-Event-ID).
// Resolves once the stream is open (the gateway follows the log before it answers), or has
// failed, or is not open after 5 s; a fresh stream that opens only after that reads the state
// again then, as the caller's read may have missed what happened before it followed the log.
function startEvents({ fresh = false } = {}) {
  stopEvents();
  let url = `/v1/events?types=${Object.keys(EVENT_HANDLERS).join(',')}`;
  if (!fresh && state.lastEventId) url += `&after=${enc(state.lastEventId)}`;
  const es = new EventSource(url);
  state.events = es;
  let waiting = true; // the caller still waits for the first open
  let late = false;   // it stopped waiting before the stream was open
  let release;
  const open = new Promise((resolve) => { release = resolve; });
  const settle = (opened) => {
    if (!waiting) return;
    waiting = false;
    late = fresh && !opened;
    release();
  };
  setTimeout(() => settle(false), 5000);
  es.onopen = () => {
    $('live').hidden = true;
    settle(true);
    if (late && state.events === es) {
      late = false;
      reread();
    }
  };
  es.onerror = () => {
    $('live').hidden = false;
    settle(false);
    if (es.readyState === EventSource.CLOSED) {
      // A refused stream (signed out, gateway restarting): check the session, then read the
      // state again behind a new stream.
      setTimeout(() => { if (state.events === es) start(); }, 3000);
    }
  };
  const on = (type, handler) => es.addEventListener(type, (ev) => {
    if (ev.lastEventId) state.lastEventId = ev.lastEventId;
    let envelope;
    try { envelope = JSON.parse(ev.data); } catch (_) { return; }
    if (state.held) state.held.push(() => handler(envelope.data));
    else handler(envelope.data);
  });
  for (const [type, handler] of Object.entries(EVENT_HANDLERS)) on(type, handler);
  es.addEventListener('reset', () => {
    // Events were missed (the cursor is older than the gateway keeps): read the state again,
    // after the read under way if there is one.
    if (state.held) state.held.reset = true;
    else reread();
  });
  es.addEventListener('error', (ev) => {
    // `event: error` from the gateway (this tab fell behind, the store failed): a new stream
    // resumes after the last event received (a `reset` if that is no longer kept).
    if (ev.data) {
      es.close();
      setTimeout(() => { if (state.events === es) startEvents(); }, 500);
    }
  });
  return open;
}

function stopEvents() {
  if (state.events) state.events.close();
  state.events = null;
}

// ---------- small helpers ----------

function span(cls, text) {
  const s = document.createElement('span');
  if (cls) s.className = cls;
  if (text) s.textContent = text;
  return s;
}

function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function shortTime(ts) {
  const d = new Date(ts * 1000);
  return d.toDateString() === new Date().toDateString() ? clock(ts) : d.toLocaleDateString();
}

function dayLabel(ts) {
  const d = new Date(ts * 1000);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric' });
}

function remaining(expiresAt) {
  const mins = Math.max(0, Math.round((expiresAt * 1000 - Date.now()) / 60000));
  return mins >= 60 ? `${Math.floor(mins / 60)} h ${mins % 60} min` : `${mins} min`;
}

// Window markers count down without traffic.
setInterval(() => {
  if (!$('app').hidden) renderConversations();
}, 60000);

start();
