// The waitlist (GET/POST /v1/waitlist, DELETE /v1/waitlist/{id}): who
// waits for which range of a resource or a pool, and the offers muster made
// by itself when capacity freed (a hold until its expiry), each booked in
// one click by converting its hold. Redrawn when waitlist events arrive on
// the live stream.

import { ApiProblem } from "./api.js";
import { act, button, el } from "./dom.js";
import { HOUR, formatDateTime, formatRange, fromLocalInput, toLocalInput } from "./time.js";

const STATUS_LABELS = {
  waiting: "Waiting",
  offered: "Offered",
  fulfilled: "Booked",
  lapsed: "Offer lapsed",
  left: "Left",
};

export class Waitlist {
  /** @param {object} ctx `api`, `writable`, `timeline`, `pools`, `bookings`, `announce`, `resourceName` */
  constructor(ctx) {
    this.ctx = ctx;
    this.form = document.getElementById("waitlist-form");
    this.target = document.getElementById("waitlist-target");
    this.from = document.getElementById("waitlist-from");
    this.to = document.getElementById("waitlist-to");
    this.client = document.getElementById("waitlist-client");
    this.email = document.getElementById("waitlist-email");
    this.ttl = document.getElementById("waitlist-ttl");
    this.priority = document.getElementById("waitlist-priority");
    this.status = document.getElementById("waitlist-status");
    this.error = document.getElementById("waitlist-error");
    this.list = document.getElementById("waitlist-list");
    this.visible = false;
    this.timer = null;
    this.entries = [];
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      act(this.form.querySelector("button[type=submit]"), (key) => this.join(key));
    });
    this.status.addEventListener("change", () => this.load());
    this.list.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-action]");
      if (!b) return;
      const entry = this.entries.find((x) => x.id === b.dataset.entry);
      if (!entry) return;
      if (b.dataset.action === "book") act(b, (key) => this.book(entry, key));
      if (b.dataset.action === "leave") act(b, (key) => this.leave(entry, key));
    });
  }

  /** Shown: fills the choices and reads the list. */
  async prepare() {
    this.visible = true;
    const chosen = this.target.value;
    const options = this.ctx.timeline.resources.map((r) => new Option(`${r.name} (${r.kind})`, r.id));
    for (const p of this.ctx.pools) options.push(new Option(`Any of ${p.name}`, `pool:${p.id}`));
    this.target.replaceChildren(...options);
    if (chosen) this.target.value = chosen;
    if (!this.from.value) {
      const start = new Date(Math.ceil(Date.now() / HOUR) * HOUR + 24 * HOUR);
      this.from.value = toLocalInput(start);
      this.to.value = toLocalInput(new Date(start.getTime() + HOUR));
    }
    await this.load();
  }

  hide() {
    this.visible = false;
  }

  /** A waitlist event on the live stream: re-read the list soon, if shown. */
  onEvent() {
    if (!this.visible) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), 100);
  }

  async load() {
    const params = this.status.value ? { status: this.status.value } : {};
    try {
      this.entries = await this.ctx.api.all("/v1/waitlist", params);
      this.render();
    } catch (error) {
      this.error.textContent = error instanceof ApiProblem ? error.message : String(error);
    }
  }

  /** What an entry waits for, in words. */
  targetName(entry) {
    if (entry.resource_id) return this.ctx.resourceName(entry.resource_id);
    const pool = this.ctx.pools.find((p) => p.id === entry.pool_id);
    return `any of ${pool ? pool.name : "a pool"}`;
  }

  render() {
    if (!this.entries.length) {
      this.list.replaceChildren(el("p", "muted", "Nobody waits."));
      return;
    }
    const wrap = el("div", "table-wrap");
    const table = el("table");
    const caption = el("caption", "visually-hidden", "Waitlist entries, in the order they joined");
    const head = el("tr");
    for (const h of ["Client", "Waits for", "When", "Priority", "Status"]) head.append(el("th", "", h));
    const actionsHead = el("th");
    actionsHead.append(el("span", "visually-hidden", "Actions"));
    head.append(actionsHead);
    head.querySelectorAll("th").forEach((th) => th.setAttribute("scope", "col"));
    const body = el("tbody");
    for (const entry of this.entries) {
      const row = el("tr");
      row.dataset.entry = entry.id;
      row.append(
        el("td", "", entry.client.email ? `${entry.client.name} <${entry.client.email}>` : entry.client.name),
        el("td", "", this.targetName(entry)),
        el("td", "", formatRange(new Date(entry.starts_at), new Date(entry.ends_at))),
        el("td", "", String(entry.priority)),
      );
      const status = el("td");
      status.append(el("span", `status-pill wl-${entry.status}`, STATUS_LABELS[entry.status] || entry.status));
      if (entry.status === "offered") {
        status.append(
          el("span", "muted", ` ${this.ctx.resourceName(entry.offered_resource_id)}, held until ${formatDateTime(new Date(entry.expires_at))}`),
        );
      }
      row.append(status);
      const actions = el("td");
      if (this.ctx.writable && entry.status === "offered") {
        const book = button("Book", "small");
        book.dataset.action = "book";
        book.dataset.entry = entry.id;
        book.setAttribute("aria-label", `Book the offer to ${entry.client.name}`);
        actions.append(book, " ");
      }
      if (this.ctx.writable && (entry.status === "waiting" || entry.status === "offered")) {
        const leave = button("Remove", "small");
        leave.dataset.action = "leave";
        leave.dataset.entry = entry.id;
        leave.setAttribute("aria-label", `Remove ${entry.client.name} from the waitlist`);
        actions.append(leave);
      }
      row.append(actions);
      body.append(row);
    }
    const thead = el("thead");
    thead.append(head);
    table.append(caption, thead, body);
    wrap.append(table);
    this.list.replaceChildren(wrap);
  }

  async join(key) {
    this.error.textContent = "";
    const from = fromLocalInput(this.from.value);
    const to = fromLocalInput(this.to.value);
    const minutes = Number.parseInt(this.ttl.value, 10);
    if (!from || !to || to <= from) {
      this.error.textContent = "Give a range whose end is after its start.";
      return;
    }
    if (!minutes || minutes < 1 || minutes > 60) {
      this.error.textContent = "An offer is held from 1 to 60 minutes.";
      return;
    }
    const target = this.target.value;
    const body = {
      starts_at: from.toISOString(),
      ends_at: to.toISOString(),
      client: { name: this.client.value.trim() },
      offer_ttl: `PT${minutes}M`,
      priority: Number.parseInt(this.priority.value, 10) || 0,
    };
    if (this.email.value.trim()) body.client.email = this.email.value.trim();
    if (target.startsWith("pool:")) body.pool_id = target.slice("pool:".length);
    else body.resource_id = target;
    try {
      await this.ctx.api.command("/v1/waitlist", body, key);
      this.ctx.announce(`${body.client.name} waits for ${formatRange(from, to)}.`);
      await this.load();
    } catch (error) {
      this.error.textContent = error instanceof ApiProblem ? error.message : String(error);
    }
  }

  /** Converts the offer's hold into a booking for the entry's client. */
  async book(entry, key) {
    this.error.textContent = "";
    try {
      const answer = await this.ctx.api.command(
        "/v1/bookings",
        {
          title: `${entry.client.name} (waitlist)`,
          client: entry.client,
          starts_at: entry.starts_at,
          ends_at: entry.ends_at,
          headcount: 1,
          reservations: [{ hold_id: entry.hold_id }],
        },
        key,
      );
      this.ctx.announce(`Booked the offer to ${entry.client.name}.`);
      await this.ctx.bookings.refresh(answer.id, answer.position).catch(() => {});
      await this.load();
    } catch (error) {
      this.error.textContent = error instanceof ApiProblem ? error.message : String(error);
    }
  }

  async leave(entry, key) {
    this.error.textContent = "";
    try {
      await this.ctx.api.request("DELETE", `/v1/waitlist/${entry.id}`, { idempotencyKey: key });
      this.ctx.announce(`${entry.client.name} left the waitlist.`);
      await this.load();
    } catch (error) {
      this.error.textContent = error instanceof ApiProblem ? error.message : String(error);
    }
  }
}
