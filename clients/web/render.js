/**
 * The conversation's DOM: one element per message, updated in place while a reply streams.
 *
 * Text from the model, from search results or from the server reaches the page only as
 * `textContent`, and URLs only as the `href` of links built here (http and https only),
 * never as HTML: a reply cannot add markup or script to the page.
 */

/** A `<tag>` with attributes (`text` sets its text; `true` is an empty attribute) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value != null) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

/** The first `limit` characters of `text`, with an ellipsis when cut. */
export function excerpt(text, limit) {
  const flat = (text ?? "").trim();
  return flat.length > limit ? `${flat.slice(0, limit - 1).trimEnd()}…` : flat;
}

const percent = (x) => `${Math.round(Math.min(Math.max(x, 0), 1) * 100)}%`;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

export function userMessage(text) {
  return el(
    "article",
    { class: "message user", "data-testid": "message-user" },
    el("p", { class: "who", text: "You" }),
    el("div", { class: "text", text }),
  );
}

/** An assistant message: reasoning, value scores per step, answer, search, notes, actions. */
export class MessageView {
  constructor(label) {
    this.label = el("p", { class: "who", text: label });
    this.reasoningText = el("div", { class: "reasoning-text", "data-testid": "reasoning-text" });
    this.reasoningTitle = el("summary", { text: "Reasoning" });
    this.reasoning = el(
      "details",
      { class: "reasoning", "data-testid": "reasoning", hidden: true },
      this.reasoningTitle,
      this.reasoningText,
    );
    this.steps = el("ol", { class: "steps", "data-testid": "steps" });
    this.stepsBox = el(
      "details",
      { class: "steps-box", open: true, hidden: true },
      el("summary", { text: "Value scores per step" }),
      this.steps,
    );
    this.answer = el("div", { class: "answer text", "data-testid": "answer" });
    this.search = el("section", { class: "search", "data-testid": "sources", hidden: true });
    this.notes = el("div", { class: "notes" });
    this.actions = el("div", { class: "actions" });
    this.root = el(
      "article",
      { class: "message assistant", "data-testid": "message-assistant" },
      this.label,
      this.reasoning,
      this.answer,
      this.stepsBox,
      this.search,
      this.notes,
      this.actions,
    );
  }

  /** Start over for a corrected reply, with its reasoning open: the part the user changed. */
  reset(label) {
    this.label.textContent = label;
    this.setReasoning("");
    this.reasoning.open = true;
    this.setAnswer("");
    this.steps.replaceChildren();
    this.stepsBox.hidden = true;
    this.search.replaceChildren();
    this.search.hidden = true;
    this.notes.replaceChildren();
    this.actions.replaceChildren();
  }

  setStreaming(streaming) {
    this.root.setAttribute("aria-busy", String(streaming));
    this.root.classList.toggle("streaming", streaming);
    this.reasoningTitle.textContent = streaming ? "Reasoning (thinking…)" : "Reasoning";
  }

  setReasoning(text) {
    this.reasoning.hidden = !text;
    this.reasoningText.textContent = text;
  }

  setAnswer(text) {
    this.answer.textContent = text;
  }

  addStep(event) {
    this.stepsBox.hidden = false;
    this.steps.append(stepItem(event));
  }

  showSearch(search) {
    this.search.hidden = false;
    this.search.replaceChildren(...searchParts(search));
  }

  showMemoryHits(hits) {
    const ids = hits.map((hit) => hit.id).join(", ");
    this.note(`Guided by ${plural(hits.length, "past correction")} (${ids}).`, "memory-hits");
  }

  showPreferences(ids) {
    const text = `Following ${plural(ids.length, "standing preference")} (${ids.join(", ")}).`;
    this.note(text, "memory-preferences");
  }

  /** `what`: "Correction", or "Preference" for a note kept for every answer. */
  showMemoryId(id, what = "Correction") {
    const note = this.note(`${what} stored as `, "memory-note");
    note.append(el("code", { "data-testid": "memory-id", text: id }), ".");
  }

  showError(message) {
    this.note(message, "error", "error").setAttribute("role", "alert");
  }

  note(text, testid, kind = "info") {
    const note = el("p", { class: `note ${kind}`, "data-testid": testid, text });
    this.notes.append(note);
    return note;
  }

  /** Show the "Edit reasoning" button, or "Add reasoning" for an answer without any. */
  offerEdit(hasReasoning, onEdit) {
    const button = el("button", {
      type: "button",
      class: "secondary",
      "data-testid": "edit-reasoning",
      "data-needs-idle": true,
      text: hasReasoning ? "Edit reasoning" : "Add reasoning",
    });
    button.addEventListener("click", onEdit);
    this.actions.replaceChildren(button);
    return button;
  }

  /** Replace the actions with `editor` (see `editor.js`) and focus its text. */
  showEditor(editor) {
    this.actions.replaceChildren(editor.form);
    editor.text.focus();
  }
}

const ACTIONS = { steer: "steered", refusal: "refused" };

function stepItem(event) {
  const scores = Object.entries(event.scores ?? {}).map(([name, score]) => scoreRow(name, score));
  const head = el("p", { class: "step-head" }, el("strong", { text: `Step ${event.step + 1}` }));
  const action = ACTIONS[event.action];
  if (action) head.append(el("span", { class: "badge", text: action }));
  if (typeof event.total === "number") head.append(` · total ${event.total.toFixed(2)}`);
  return el(
    "li",
    { class: "step", "data-testid": "step" },
    head,
    el("p", { class: "step-text", text: excerpt(event.text, 160) }),
    el("div", { class: "scores" }, ...scores),
    el("p", { class: "rejected", "data-testid": "rejected", text: rejectedText(event.rejected) }),
  );
}

/** One value model's score: its name, a bar as wide as the score (0..1), the number. */
function scoreRow(name, score) {
  const fill = el("span", { class: "bar-fill", "data-testid": "score-bar", "data-score": score });
  fill.style.width = percent(score);
  const bar = el(
    "span",
    {
      class: "bar",
      role: "meter",
      "aria-label": name,
      "aria-valuemin": "0",
      "aria-valuemax": "1",
      "aria-valuenow": String(score),
    },
    fill,
  );
  return el(
    "div",
    { class: "score", "data-testid": "score", "data-model": name },
    el("span", { class: "score-label", text: name }),
    bar,
    el("span", { class: "score-value", text: score.toFixed(2) }),
  );
}

function rejectedText(rejected = []) {
  if (!rejected.length) return "No candidate rejected";
  const by = [...new Set(rejected.flatMap((r) => r.rejected_by ?? []))];
  const reason = by.length ? ` (by ${by.join(", ")})` : "";
  return `${plural(rejected.length, "candidate")} rejected${reason}`;
}

function searchParts({ queries, sources, confidence }) {
  const parts = [el("h3", { text: "Search" })];
  if (queries.length) {
    const quoted = queries.flatMap((q, i) => [i ? ", " : "", el("q", { text: q })]);
    parts.push(el("p", { class: "queries", "data-testid": "queries" }, "Searched for ", ...quoted));
  }
  if (sources.length) parts.push(el("ol", { class: "source-list" }, ...sources.map(sourceItem)));
  const sure = confidenceText(confidence);
  if (sure) parts.push(el("p", { class: "confidence", "data-testid": "confidence", text: sure }));
  return parts;
}

function sourceItem(source) {
  const title = source.title || source.id;
  const href = webUrl(source.url);
  const name = href
    ? el("a", { href, target: "_blank", rel: "noopener noreferrer", text: title })
    : el("span", { class: "source-title", text: title });
  const item = el("li", { "data-testid": "source" }, name);
  if (source.snippet) {
    item.append(el("span", { class: "snippet", text: excerpt(source.snippet, 140) }));
  }
  return item;
}

/** `url` when it is an http(s) address; `null` for none (a local corpus) or any other scheme. */
function webUrl(url) {
  if (!url) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

/** "Confidence: 64% (calibrated)", or the raw estimate with its source; "" when none. */
function confidenceText(confidence) {
  if (!confidence) return "";
  const { raw, source, calibrated } = confidence;
  if (calibrated != null) return `Confidence: ${percent(calibrated)} (calibrated)`;
  return raw == null ? "" : `Confidence: ${percent(raw)} (${source || "raw"})`;
}
