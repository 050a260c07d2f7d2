// Finding a time for several resources (POST /v1/find-time): chosen
// resources each required, a pool's members by count, the earliest
// candidates each booked in one click, and the reasons per requirement
// when nothing fits in the window.

import { ApiProblem } from "./api.js";
import { el } from "./dom.js";
import { DAY, MINUTE, addDays, formatRange, fromLocalInput, startOfDay, toLocalInput } from "./time.js";

const REASONS = {
  "outside-working-hours": "outside its working hours",
  "reservation-conflict": "booked",
  "seats-exceeded": "too few seats",
  "too-soon": "too soon (minimum notice)",
  "too-far-ahead": "too far ahead (booking horizon)",
  "resource-retired": "retired",
  "not-together": "each fits at some time, never all at once",
};

export class Meet {
  /** @param {object} ctx `api`, `writable`, `timeline`, `pools`, `bookings`, `announce`, `resourceName` */
  constructor(ctx) {
    this.ctx = ctx;
    this.form = document.getElementById("meet-form");
    this.resources = document.getElementById("meet-resources");
    this.pool = document.getElementById("meet-pool");
    this.count = document.getElementById("meet-count");
    this.duration = document.getElementById("meet-duration");
    this.from = document.getElementById("meet-from");
    this.to = document.getElementById("meet-to");
    this.title = document.getElementById("meet-title");
    this.error = document.getElementById("meet-error");
    this.results = document.getElementById("meet-results");
    this.requirements = [];
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.search();
    });
    this.results.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-candidate]");
      if (b) this.book(b, this.candidates[Number(b.dataset.candidate)]);
    });
  }

  /** Fills the choices (pools read again) and a default window (the next 7 days). */
  async prepare() {
    try {
      const pools = await this.ctx.api.all("/v1/pools");
      this.ctx.pools.splice(0, this.ctx.pools.length, ...pools);
    } catch {
      // The pools known at sign-in stay offered.
    }
    const chosen = new Set([...this.resources.selectedOptions].map((o) => o.value));
    this.resources.replaceChildren(
      ...this.ctx.timeline.resources.map((r) => {
        const option = el("option", "", `${r.name} (${r.kind})`);
        option.value = r.id;
        option.selected = chosen.has(r.id);
        return option;
      }),
    );
    const pool = this.pool.value;
    const none = el("option", "", "No pool");
    none.value = "";
    this.pool.replaceChildren(
      none,
      ...this.ctx.pools.map((p) => {
        const option = el("option", "", `${p.name} (${(p.members || []).length || "selector"})`);
        option.value = p.id;
        return option;
      }),
    );
    this.pool.value = pool;
    if (!this.from.value) {
      const start = new Date(Math.ceil(Date.now() / (30 * MINUTE)) * 30 * MINUTE);
      this.from.value = toLocalInput(start);
      this.to.value = toLocalInput(addDays(startOfDay(start), 7));
    }
  }

  /** Asks for candidates; `announceFound` says how many in the status line (not after a booking, whose message stays). */
  async search(announceFound = true) {
    const minutes = Number.parseInt(this.duration.value, 10);
    const from = fromLocalInput(this.from.value);
    const to = fromLocalInput(this.to.value);
    this.error.textContent = "";
    const requirements = [...this.resources.selectedOptions].map((o) => ({ resource_id: o.value }));
    if (this.pool.value) requirements.push({ pool_id: this.pool.value, count: Math.max(1, Number.parseInt(this.count.value, 10) || 1) });
    if (!requirements.length) {
      this.error.textContent = "Choose at least one resource or a pool.";
      return;
    }
    if (!minutes || minutes < 1 || !from || !to || to <= from) {
      this.error.textContent = "Give a duration of at least one minute and a window whose end is after its start.";
      return;
    }
    if (to - from > 62 * DAY) {
      this.error.textContent = "The window may be at most 62 days long.";
      return;
    }
    this.requirements = requirements;
    this.results.setAttribute("aria-busy", "true");
    this.results.replaceChildren(el("p", "loading", "Searching…"));
    try {
      const answer = await this.ctx.api.request("POST", "/v1/find-time", {
        body: { duration: String(minutes), from: from.toISOString(), to: to.toISOString(), limit: 10, requirements },
      });
      this.candidates = answer.candidates;
      this.render(answer);
      if (announceFound) this.ctx.announce(answer.candidates.length ? `${answer.candidates.length} times found.` : "Nothing fits in the window.");
    } catch (error) {
      this.results.replaceChildren();
      this.error.textContent = error instanceof ApiProblem ? error.message : String(error);
    } finally {
      this.results.removeAttribute("aria-busy");
    }
  }

  /** What requirement `i` asked for, in words. */
  requirementName(i) {
    const r = this.requirements[i];
    if (!r) return "The optional resources";
    if (r.resource_id) return this.ctx.resourceName(r.resource_id);
    const pool = this.ctx.pools.find((p) => p.id === r.pool_id);
    return `${r.count} of ${pool ? pool.name : "the pool"}`;
  }

  render(answer) {
    const section = el("section", "panel");
    const heading = el("h2", "", answer.candidates.length ? "Earliest times" : "Nothing fits");
    heading.id = "meet-results-heading";
    section.setAttribute("aria-labelledby", heading.id);
    section.append(heading);
    if (answer.candidates.length) {
      const list = el("ul", "plain-list result-list");
      answer.candidates.forEach((c, i) => {
        const a = new Date(c.starts_at);
        const b = new Date(c.ends_at);
        const names = c.reservations.map((r) => this.ctx.resourceName(r.resource_id)).join(", ");
        const item = el("li");
        item.append(el("span", "", `${formatRange(a, b)}: ${names}`));
        if (this.ctx.writable) {
          const book = el("button", "small", "Book");
          book.type = "button";
          book.dataset.candidate = String(i);
          book.setAttribute("aria-label", `Book ${formatRange(a, b)} with ${names}`);
          item.append(" ", book);
        }
        list.append(item);
      });
      section.append(list);
    } else {
      const list = el("ul", "plain-list reasons");
      for (const reason of answer.reasons) {
        const name = reason.requirement === undefined || reason.requirement === null ? "Together" : this.requirementName(reason.requirement);
        const item = el("li");
        item.append(el("strong", "", `${name}: `), el("span", "", REASONS[reason.reason] || reason.reason));
        item.append(el("span", "muted", ` (${reason.detail})`));
        list.append(item);
      }
      section.append(list);
    }
    this.results.replaceChildren(section);
  }

  /** Books a candidate as it is: one reservation per resource it names. */
  async book(button, candidate) {
    if (!candidate) return;
    const title = this.title.value.trim() || "Meeting";
    button.disabled = true;
    try {
      const answer = await this.ctx.api.command("/v1/bookings", {
        title,
        client: { name: title },
        starts_at: candidate.starts_at,
        ends_at: candidate.ends_at,
        headcount: 1,
        reservations: candidate.reservations.map((r) => ({ resource_id: r.resource_id, starts_at: candidate.starts_at, ends_at: candidate.ends_at })),
      });
      const booked = `Booked “${title}”, ${formatRange(new Date(candidate.starts_at), new Date(candidate.ends_at))}.`;
      this.ctx.announce(booked);
      await this.ctx.bookings.refresh(answer.id, answer.position).catch(() => {});
      // The candidates again (this one is taken now), without replacing
      // the booking's message.
      await this.search(false);
      this.ctx.announce(booked);
    } catch (error) {
      this.error.textContent = error instanceof ApiProblem ? error.message : String(error);
      button.disabled = false;
    }
  }
}
