/**
 * The "Memory" panel: what this API key has stored (`GET /v1/memory`, newest first):
 * reasoning corrections, which guide later answers to similar questions, and standing
 * preferences, which guide every answer. Each has a button that deletes it
 * (`DELETE /v1/memory/{id}`); a form at the top stores a new preference
 * (`POST /v1/memory` of kind `preference`).
 */

import { describe } from "./api.js";
import { el, excerpt } from "./render.js";

const LIMIT = 20;
/** The server's limit on a preference's length. */
export const MAX_PREFERENCE_CHARS = 1000;

export class CorrectionsPanel {
  /**
   * `parts`: the toggle button, the panel section, its list and its status line, and the
   * preference form with its text field and error line.
   * `api()` gives the current `Api`; `onRefused()` runs when the server refuses the key.
   */
  constructor(parts, { api, onRefused }) {
    Object.assign(this, parts, { api, onRefused });
    this.toggle.addEventListener("click", () => (this.isOpen() ? this.close() : this.open()));
    this.preferText.maxLength = MAX_PREFERENCE_CHARS;
    this.preferForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.prefer();
    });
  }

  isOpen() {
    return !this.section.hidden;
  }

  open() {
    this.section.hidden = false;
    this.toggle.setAttribute("aria-expanded", "true");
    return this.refresh();
  }

  close() {
    this.section.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
  }

  async refresh() {
    this.status.textContent = "Loading…";
    try {
      this.show(await this.api().memories(LIMIT));
    } catch (error) {
      this.fail(error);
    }
  }

  show({ data, has_more: hasMore }) {
    this.list.replaceChildren(...data.map((record) => this.item(record)));
    if (!data.length) this.status.textContent = "Nothing stored yet.";
    else this.status.textContent = hasMore ? `The ${LIMIT} newest records.` : "";
  }

  fail(error) {
    if (error.status === 401) return this.onRefused();
    this.list.replaceChildren();
    this.status.textContent =
      error.status === 404 ? "The memory is off on this server." : describe(error);
  }

  item(record) {
    const preference = record.kind === "preference";
    const what = preference ? "preference" : "correction";
    const remove = el("button", {
      type: "button",
      class: "secondary",
      "data-testid": `delete-${what}`,
      "aria-label": `Delete ${what} ${record.id}`,
      text: "Delete",
    });
    remove.addEventListener("click", () => this.remove(record.id, remove));
    const body = preference
      ? [
          el("p", { class: "scope", text: "Every answer" }),
          el("p", { class: "question", text: record.text ?? "" }),
        ]
      : [
          el("p", { class: "question", text: record.question }),
          el("p", { class: "excerpt", text: excerpt(record.corrected_reasoning, 200) }),
        ];
    return el(
      "li",
      { class: `correction ${what}`, "data-testid": what },
      ...body,
      el("p", { class: "row" }, el("code", { text: record.id }), remove),
    );
  }

  async remove(id, button) {
    button.disabled = true;
    try {
      await this.api().deleteMemory(id);
      await this.refresh();
    } catch (error) {
      this.fail(error);
    }
  }

  /** Store the form's text as a standing preference; say why when the server refuses. */
  async prefer() {
    const text = this.preferText.value.trim();
    this.preferError.hidden = true;
    if (!text) return this.showPreferError("Write what every answer should follow.");
    this.preferSubmit.disabled = true;
    try {
      await this.api().prefer(text);
      this.preferText.value = "";
      await this.refresh();
    } catch (error) {
      if (error.status === 401) return this.onRefused();
      this.showPreferError(describe(error));
    } finally {
      this.preferSubmit.disabled = false;
    }
  }

  showPreferError(message) {
    this.preferError.textContent = message;
    this.preferError.hidden = false;
  }
}
