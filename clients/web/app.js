/**
 * SafeWork chat: the page's state and controls (API key, profile, conversation, edits).
 *
 * index.html loads this ES module; `api.js` speaks HTTP, `render.js` draws messages,
 * `editor.js` is the reasoning editor and `corrections.js` the memory panel (stored
 * corrections and preferences).
 *
 * The conversation lives in this page only: each turn sends the user and assistant contents
 * so far (never the reasoning), and a reload starts afresh. The API key is kept in
 * sessionStorage, so it lasts as long as the tab.
 */

import { Api, describe, isAbort } from "./api.js";
import { CorrectionsPanel } from "./corrections.js";
import { editorForm } from "./editor.js";
import { MessageView, userMessage } from "./render.js";

const KEY_STORAGE = "safework.apiKey";
const REFUSED = "The server refused this API key. Check it and enter it again.";
const PROFILES = ["plain", "aligned", "search"];
const LABELS = {
  plain: "Assistant",
  aligned: "Assistant · aligned",
  search: "Assistant · search",
};

const $ = (id) => document.getElementById(id);
const ui = {
  keyForm: $("key-form"),
  keyInput: $("key-input"),
  keyError: $("key-error"),
  changeKey: $("change-key"),
  chat: $("chat"),
  model: $("model-name"),
  maxTokens: $("max-tokens"),
  newChat: $("new-chat"),
  messages: $("messages"),
  composer: $("composer"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
};

const state = {
  api: null,
  /** The served model id; a profile is `${base}:${profile}`. */
  base: null,
  /** `{role, content}` per turn; an assistant entry is filled in as its answer streams. */
  history: [],
  /** The running stream's AbortController, or `null` when idle. */
  controller: null,
  /** Whether edits ask the server to keep the correction (off once it says it keeps none:
   * a server without keys runs without the memory unless told otherwise). */
  remember: true,
};

const corrections = new CorrectionsPanel(
  {
    toggle: $("corrections-toggle"),
    section: $("corrections"),
    list: $("corrections-list"),
    status: $("corrections-status"),
    preferForm: $("prefer-form"),
    preferText: $("prefer-text"),
    preferSubmit: $("prefer-submit"),
    preferError: $("prefer-error"),
  },
  { api: () => state.api, onRefused: () => askForKey(REFUSED) },
);

// ---------------------------------------------------------------- key and profiles

async function connect(key) {
  const api = new Api(key);
  let models;
  try {
    models = await api.models();
  } catch (error) {
    askForKey(error.status === 401 ? REFUSED : describe(error));
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  state.api = api;
  showProfiles(models.data.map((m) => m.id));
  showChat();
}

function askForKey(message = "") {
  state.controller?.abort();
  sessionStorage.removeItem(KEY_STORAGE);
  corrections.close();
  ui.chat.hidden = ui.changeKey.hidden = corrections.toggle.hidden = true;
  ui.keyError.textContent = message;
  ui.keyError.hidden = !message;
  ui.keyForm.hidden = false;
  ui.keyInput.value = "";
  ui.keyInput.focus();
}

function showChat() {
  ui.keyForm.hidden = true;
  ui.chat.hidden = ui.changeKey.hidden = corrections.toggle.hidden = false;
  ui.prompt.focus();
}

/** The served model from `/v1/models`; profiles the server does not list are disabled. */
function showProfiles(ids) {
  state.base = ids.find((id) => !PROFILES.some((p) => id.endsWith(`:${p}`))) ?? ids[0];
  ui.model.textContent = state.base;
  for (const input of profileInputs()) {
    const available = ids.includes(modelFor(input.value));
    const label = input.closest("label");
    input.disabled = !available;
    label.classList.toggle("unavailable", !available);
    label.title = available ? "" : "Not configured on this server";
  }
  if (profileInputs().find((input) => input.checked)?.disabled) profileInputs()[0].checked = true;
}

const profileInputs = () => [...document.querySelectorAll('input[name="profile"]')];
const selectedProfile = () => profileInputs().find((input) => input.checked)?.value ?? "plain";
const modelFor = (profile) => (profile === "plain" ? state.base : `${state.base}:${profile}`);

// ---------------------------------------------------------------- asking

async function ask(text) {
  const question = [...conversation(), { role: "user", content: text }];
  const profile = selectedProfile();
  const turn = newTurn(question, LABELS[profile]);
  state.history.push({ role: "user", content: text }, turn.entry);
  ui.messages.append(userMessage(text), turn.view.root);
  turn.view.root.scrollIntoView({ block: "nearest" });
  const body = {
    model: modelFor(profile),
    messages: question,
    stream_options: { include_usage: true },
    ...tokenLimit(),
  };
  await runStream(turn, "/v1/chat/completions", body);
}

/** What the server is sent: every turn with an answer so far, without reasoning. */
function conversation() {
  return state.history.filter((m) => m.content).map(({ role, content }) => ({ role, content }));
}

function newTurn(question, label) {
  return {
    question,
    entry: { role: "assistant", content: "" },
    reasoning: "",
    search: null,
    view: new MessageView(label),
  };
}

function tokenLimit() {
  const limit = Number.parseInt(ui.maxTokens.value, 10);
  return limit > 0 ? { max_completion_tokens: limit } : {};
}

async function runStream(turn, path, body) {
  const controller = new AbortController();
  setBusy(controller);
  turn.view.setStreaming(true);
  let retry = null;
  try {
    const onChunk = (chunk) => follow(() => applyChunk(turn, chunk));
    await state.api.stream(path, body, onChunk, controller.signal);
  } catch (error) {
    // The server keeps no corrections: edit all the same, without asking it to remember.
    if (error.code === "memory_off" && body.remember) {
      retry = { ...body, remember: false };
      delete retry.scope;
    }
    else report(turn, error);
  } finally {
    turn.view.setStreaming(false);
    setBusy(null);
    if (!retry && (turn.reasoning || turn.entry.content)) offerEdit(turn);
  }
  if (retry) {
    state.remember = false;
    await runStream(turn, path, retry);
  }
}

function report(turn, error) {
  if (isAbort(error)) turn.view.note("Stopped.", "stopped");
  else if (error.status === 401) askForKey(REFUSED);
  else turn.view.showError(describe(error));
}

function setBusy(controller) {
  state.controller = controller;
  ui.send.disabled = controller !== null;
  ui.stop.disabled = controller === null;
  syncIdleControls();
}

/** Controls that start a stream (marked `data-needs-idle`) wait while one runs. */
function syncIdleControls() {
  for (const control of document.querySelectorAll("[data-needs-idle]")) {
    control.disabled = state.controller !== null;
  }
}

/** Run `update`, keeping the page scrolled to the bottom if it was there. */
function follow(update) {
  const root = document.documentElement;
  const atBottom = window.innerHeight + window.scrollY >= root.scrollHeight - 40;
  update();
  if (atBottom) window.scrollTo(0, root.scrollHeight);
}

// ---------------------------------------------------------------- stream chunks

function applyChunk(turn, chunk) {
  const choice = chunk.choices?.[0];
  const delta = choice?.delta ?? {};
  const reasoning = delta.reasoning_content ?? delta.reasoning; // the same text twice: use one
  if (reasoning) turn.view.setReasoning((turn.reasoning += reasoning));
  if (delta.content) turn.view.setAnswer((turn.entry.content += delta.content));
  if (choice?.finish_reason === "length") {
    turn.view.note("The answer reached the token limit (max tokens).", "length");
  }
  if (chunk.safework) applySafework(turn, chunk.safework);
  if (chunk.memory_id) {
    turn.view.showMemoryId(chunk.memory_id, turn.storedAs);
    if (corrections.isOpen()) corrections.refresh();
  }
}

function applySafework(turn, block) {
  for (const event of block.events ?? []) EVENTS[event.type]?.(turn, event);
  if (block.search) {
    const { queries = [], sources = [], confidence = null } = block.search;
    turn.search = { queries, sources, confidence };
    turn.view.showSearch(turn.search);
  }
  if (block.memory?.hits?.length) turn.view.showMemoryHits(block.memory.hits);
  if (block.memory?.preferences?.length) turn.view.showPreferences(block.memory.preferences);
}

/** What each streamed `safework` event does to the message; unknown types are skipped. */
const EVENTS = {
  "alignment.step": (turn, event) => turn.view.addStep(event),
  "search.query": (turn, event) => updateSearch(turn, (s) => s.queries.push(event.query)),
  "search.answer": (turn, event) => updateSearch(turn, (s) => (s.confidence = event.confidence)),
};

function updateSearch(turn, change) {
  turn.search ??= { queries: [], sources: [], confidence: null };
  change(turn.search);
  turn.view.showSearch(turn.search);
}

// ---------------------------------------------------------------- editing reasoning

/** Offer to correct the reasoning (or to write one, for an answer given without any). */
function offerEdit(turn) {
  const button = turn.view.offerEdit(Boolean(turn.reasoning), () => openEditor(turn));
  syncIdleControls();
  return button;
}

function openEditor(turn) {
  const cancel = () => offerEdit(turn).focus();
  const onSubmit = (edit) => submitEdit(turn, edit);
  turn.view.showEditor(editorForm(turn.reasoning, { onSubmit, onCancel: cancel }));
  syncIdleControls();
}

/** Send the corrected reasoning to `/cot/edit`; the reply replaces the message's. */
async function submitEdit(turn, { edited, feedback, always }) {
  const body = {
    model: state.base,
    messages: turn.question,
    reasoning: turn.reasoning,
    edited_reasoning: edited,
    answer: turn.entry.content,
    remember: state.remember,
    ...tokenLimit(),
  };
  if (feedback) body.feedback = feedback;
  if (always && state.remember) body.scope = "always"; // the note becomes a preference
  turn.storedAs = body.scope === "always" ? "Preference" : "Correction";
  turn.reasoning = turn.entry.content = "";
  turn.view.reset("Assistant · corrected reasoning");
  await runStream(turn, "/cot/edit", body);
}

// ---------------------------------------------------------------- controls

ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  connect(ui.keyInput.value.trim());
});

ui.changeKey.addEventListener("click", () => askForKey());

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || state.controller) return;
  ui.prompt.value = "";
  ask(text);
});

ui.prompt.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
  event.preventDefault();
  ui.composer.requestSubmit();
});

ui.stop.addEventListener("click", () => {
  state.controller?.abort();
  ui.prompt.focus();
});

ui.newChat.addEventListener("click", () => {
  state.controller?.abort();
  state.history = [];
  ui.messages.replaceChildren();
  ui.prompt.focus();
});

const saved = sessionStorage.getItem(KEY_STORAGE);
if (saved === null) askForKey();
else connect(saved);
