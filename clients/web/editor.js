/**
 * The reasoning editor shown under an assistant message: the model's reasoning to correct
 * (or, for an answer given without reasoning, an empty field to write one), an optional
 * note on what was wrong, a box to keep that note for every answer (a standing preference),
 * and buttons to send it or cancel (Escape cancels too).
 *
 * It checks what `POST /cot/edit` would refuse (empty text, `<think>` tags) before sending.
 */

import { MAX_PREFERENCE_CHARS } from "./corrections.js";
import { el } from "./render.js";

const EDIT_HINT =
  "Keep what is right and rewrite from the first wrong step: " +
  "the model continues from the end of your text.";
const WRITE_HINT =
  "This answer came without reasoning. Write the reasoning it should have followed: " +
  "the model continues from the end of your text.";

let lastId = 0;

/** The editor form prefilled with `reasoning`; `{ form, text }` (the form and its textarea). */
export function editorForm(reasoning, { onSubmit, onCancel }) {
  const id = `edit-${++lastId}`;
  const text = el("textarea", {
    id: `${id}-text`,
    rows: "8",
    "data-testid": "edit-text",
    "aria-describedby": `${id}-hint`,
  });
  text.value = reasoning;
  const feedback = el("input", {
    id: `${id}-feedback`,
    type: "text",
    "data-testid": "edit-feedback",
  });
  const always = el("input", {
    id: `${id}-always`,
    type: "checkbox",
    "data-testid": "edit-always",
  });
  const problem = el("p", {
    class: "note error",
    role: "alert",
    "data-testid": "edit-error",
    hidden: true,
  });
  const submit = el("button", {
    type: "submit",
    "data-testid": "edit-submit",
    "data-needs-idle": true,
    text: "Continue from here",
  });
  const cancel = el("button", {
    type: "button",
    class: "secondary",
    "data-testid": "edit-cancel",
    text: "Cancel",
  });
  const form = el(
    "form",
    { class: "editor", "data-testid": "editor", "aria-label": "Edit reasoning" },
    el("label", { for: text.id, text: "Corrected reasoning" }),
    text,
    el("p", { id: `${id}-hint`, class: "hint", text: reasoning ? EDIT_HINT : WRITE_HINT }),
    el("label", { for: feedback.id, text: "What was wrong? (optional)" }),
    feedback,
    el(
      "label",
      { class: "check", for: always.id },
      always,
      " Remember this note for every answer",
    ),
    problem,
    el("div", { class: "row" }, submit, cancel),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const note = feedback.value.trim();
    problem.textContent = editProblem(text.value, note, always.checked);
    problem.hidden = !problem.textContent;
    if (problem.hidden) onSubmit({ edited: text.value, feedback: note, always: always.checked });
  });
  cancel.addEventListener("click", onCancel);
  form.addEventListener("keydown", (event) => event.key === "Escape" && onCancel());
  return { form, text };
}

/** Why the server would refuse this edit, or "" when it is fine. */
function editProblem(edited, note, always) {
  if (!edited.trim()) return "The corrected reasoning cannot be empty.";
  if (/<\/?think>/.test(edited)) return "Remove the <think> tags: the page adds them.";
  if (always && !note) return "Write the note to remember for every answer.";
  if (always && note.length > MAX_PREFERENCE_CHARS) {
    return `A note to remember is at most ${MAX_PREFERENCE_CHARS} characters.`;
  }
  return "";
}
