// The free-slot finder: free slots per resource from GET /v1/availability
// (50 resources per question, asked in parallel) and the resources free
// for the first such range from GET /v1/resources/free; any result books.

import { ApiProblem } from "./api.js";
import { el, fillSelect } from "./dom.js";
import { DAY, MINUTE, addDays, formatRange, fromLocalInput, startOfDay, toLocalInput } from "./time.js";

const PER_QUESTION = 50;
const SHOWN_SLOTS = 6;

export class Finder {
  /** @param {object} ctx `api`, `writable`, `timeline`, `bookings`, `announce` */
  constructor(ctx) {
    this.ctx = ctx;
    this.form = document.getElementById("finder-form");
    this.results = document.getElementById("finder-results");
    this.error = document.getElementById("finder-error");
    this.kind = document.getElementById("finder-kind");
    this.tag = document.getElementById("finder-tag");
    this.duration = document.getElementById("finder-duration");
    this.from = document.getElementById("finder-from");
    this.to = document.getElementById("finder-to");
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.search();
    });
    // One listener for every "Book" button of the results.
    this.results.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-resource-id]");
      if (!b) return;
      this.ctx.bookings.openCreate({
        resourceId: b.dataset.resourceId,
        from: new Date(Number(b.dataset.from)),
        to: new Date(Number(b.dataset.to)),
      });
    });
  }

  /** Fills the kind and tag choices and a default window (the next 7 days). */
  prepare() {
    fillSelect(this.kind, this.ctx.timeline.kinds(), "Any kind");
    fillSelect(this.tag, this.ctx.timeline.tags(), "Any tag");
    if (!this.from.value) {
      const start = new Date(Math.ceil(Date.now() / (30 * MINUTE)) * 30 * MINUTE);
      this.from.value = toLocalInput(start);
      this.to.value = toLocalInput(addDays(startOfDay(start), 7));
    }
  }

  async search() {
    const minutes = Number.parseInt(this.duration.value, 10);
    const from = fromLocalInput(this.from.value);
    const to = fromLocalInput(this.to.value);
    this.error.textContent = "";
    if (!minutes || minutes < 1 || !from || !to || to <= from) {
      this.error.textContent = "Give a duration of at least one minute and a window whose end is after its start.";
      return;
    }
    if (to - from > 62 * DAY) {
      this.error.textContent = "The window may be at most 62 days long.";
      return;
    }
    const kind = this.kind.value;
    const tag = this.tag.value;
    const candidates = this.ctx.timeline.resources.filter((r) => (!kind || r.kind === kind) && (!tag || r.tags.includes(tag)));
    if (!candidates.length) {
      this.results.replaceChildren(el("p", "muted", "No resource of that kind and tag."));
      return;
    }
    this.results.setAttribute("aria-busy", "true");
    this.results.replaceChildren(el("p", "loading", "Searching…"));
    const durationMs = minutes * MINUTE;
    try {
      const batches = [];
      for (let i = 0; i < candidates.length; i += PER_QUESTION) batches.push(candidates.slice(i, i + PER_QUESTION));
      const slotsQuery = (batch) =>
        new URLSearchParams({
          resource_ids: batch.map((r) => r.id).join(","),
          from: from.toISOString(),
          to: to.toISOString(),
          duration: String(minutes),
        });
      const freeQuery = new URLSearchParams({ starts_at: from.toISOString(), ends_at: new Date(from.getTime() + durationMs).toISOString() });
      if (kind) freeQuery.set("kind", kind);
      if (tag) freeQuery.set("tag", tag);
      const [answers, free] = await Promise.all([
        Promise.all(batches.map((batch) => this.ctx.api.get(`/v1/availability?${slotsQuery(batch)}`))),
        this.ctx.api.get(`/v1/resources/free?${freeQuery}&limit=50`),
      ]);
      this.render(answers.flatMap((a) => a.resources), free.items, from, durationMs);
      this.ctx.announce("Search done.");
    } catch (error) {
      this.results.replaceChildren();
      this.error.textContent = error instanceof ApiProblem ? error.message : String(error);
    } finally {
      this.results.removeAttribute("aria-busy");
    }
  }

  bookButton(resource, from, to) {
    const b = el("button", "small", "Book");
    b.type = "button";
    b.dataset.resourceId = resource.id;
    b.dataset.from = String(from.getTime());
    b.dataset.to = String(to.getTime());
    b.setAttribute("aria-label", `Book ${resource.name}, ${formatRange(from, to)}`);
    return b;
  }

  render(slotAnswers, freeResources, from, durationMs) {
    const byId = this.ctx.timeline.resourceById;
    const out = document.createDocumentFragment();
    const to = new Date(from.getTime() + durationMs);

    const freeSection = el("section", "panel");
    const freeHeading = el("h2", "", `Free for ${formatRange(from, to)}`);
    freeHeading.id = "free-heading";
    freeSection.setAttribute("aria-labelledby", freeHeading.id);
    freeSection.append(freeHeading);
    if (!freeResources.length) freeSection.append(el("p", "muted", "No resource is free for exactly that range."));
    const freeList = el("ul", "plain-list result-list");
    for (const r of freeResources) {
      const item = el("li");
      item.append(el("span", "", `${r.name} (${r.kind})`));
      if (this.ctx.writable) item.append(" ", this.bookButton(r, from, to));
      freeList.append(item);
    }
    freeSection.append(freeList);
    out.append(freeSection);

    const slotSection = el("section", "panel");
    const slotHeading = el("h2", "", "Free slots");
    slotHeading.id = "slots-heading";
    slotSection.setAttribute("aria-labelledby", slotHeading.id);
    slotSection.append(slotHeading);
    const withSlots = slotAnswers.filter((a) => a.slots.length);
    if (!withSlots.length) slotSection.append(el("p", "muted", "No free slot of that length in the window."));
    const list = el("ul", "plain-list result-list");
    for (const answer of withSlots) {
      const resource = byId.get(answer.resource_id) || { id: answer.resource_id, name: answer.resource_id, kind: "" };
      const item = el("li", "slot-resource");
      item.append(el("strong", "", resource.name));
      const slots = el("ul", "plain-list slots");
      for (const slot of answer.slots.slice(0, SHOWN_SLOTS)) {
        const a = new Date(slot.starts_at);
        const b = new Date(slot.ends_at);
        const s = el("li");
        s.append(el("span", "", formatRange(a, b)));
        if (this.ctx.writable) s.append(" ", this.bookButton(resource, a, new Date(a.getTime() + durationMs)));
        slots.append(s);
      }
      if (answer.slots.length > SHOWN_SLOTS) slots.append(el("li", "muted", `and ${answer.slots.length - SHOWN_SLOTS} more`));
      item.append(slots);
      list.append(item);
    }
    slotSection.append(list);
    out.append(slotSection);
    this.results.replaceChildren(out);
  }
}
