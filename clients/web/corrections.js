/**
 * The "Corrections" panel: the reasoning corrections this API key has stored
 * (`GET /v1/memory`, newest first), each with a button that deletes it
 * (`DELETE /v1/memory/{id}`). Later answers are guided by these records.
 */

import { describe } from "./api.js";
import { el, excerpt } from "./render.js";

const LIMIT = 20;

export class CorrectionsPanel {
  /**
   * `parts`: the toggle button, the panel section, its list and its status line.
   * `api()` gives the current `Api`; `onRefused()` runs when the server refuses the key.
   */
  constructor({ toggle, section, list, status }, { api, onRefused }) {
    Object.assign(this, { toggle, section, list, status, api, onRefused });
    toggle.addEventListener("click", () => (this.isOpen() ? this.close() : this.open()));
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
    if (!data.length) this.status.textContent = "No corrections stored yet.";
    else this.status.textContent = hasMore ? `The ${LIMIT} newest corrections.` : "";
  }

  fail(error) {
    if (error.status === 401) return this.onRefused();
    this.list.replaceChildren();
    this.status.textContent =
      error.status === 404 ? "The correction memory is off on this server." : describe(error);
  }

  item(record) {
    const remove = el("button", {
      type: "button",
      class: "secondary",
      "data-testid": "delete-correction",
      "aria-label": `Delete correction ${record.id}`,
      text: "Delete",
    });
    remove.addEventListener("click", () => this.remove(record.id, remove));
    return el(
      "li",
      { class: "correction", "data-testid": "correction" },
      el("p", { class: "question", text: record.question }),
      el("p", { class: "excerpt", text: excerpt(record.corrected_reasoning, 200) }),
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
}
