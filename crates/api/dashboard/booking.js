// Booking commands and the booking detail: create from a slot, move
// (reschedule), the status machine, tasks, deployments. Every write carries
// an Idempotency-Key made once per user action, and its button is disabled
// while the request is in flight, so a double click books once.

import { ApiProblem, newActionKey } from "./api.js";
import { act, button, el, statusLabel } from "./dom.js";
import { formatDateTime, formatRange, formatTime, fromLocalInput, toLocalInput, viewerZone } from "./time.js";

const TRANSITIONS = [
  { action: "confirm", label: "Confirm", from: ["requested"] },
  { action: "check-in", label: "Check in", from: ["requested", "confirmed"] },
  { action: "start", label: "Start", from: ["confirmed"] },
  { action: "complete", label: "Complete", from: ["in_progress"] },
  { action: "cancel", label: "Cancel booking", from: ["requested", "confirmed"] },
];
/** Check-in opens this long before a booking starts (SPEC §12). */
const CHECK_IN_OPENS_MS = 60 * 60 * 1000;
/** How long the create form holds its slot. */
const HOLD_TTL = "PT5M";
/** Problem types of the booking rule that name one limit of a resource. */
const REFUSALS = {
  "urn:muster:problem:outside-working-hours": "Outside working hours",
  "urn:muster:problem:seats-exceeded": "Not enough seats",
  "urn:muster:problem:too-soon": "Too soon",
  "urn:muster:problem:too-far-ahead": "Too far ahead",
  "urn:muster:problem:external-busy": "Busy in its own calendar",
};
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

/** Whether `doc` can be checked in now: from an hour before its start until it ends. */
function checkInOpen(doc) {
  const now = Date.now();
  return !doc.checked_in_at && now >= Date.parse(doc.starts_at) - CHECK_IN_OPENS_MS && now < Date.parse(doc.ends_at);
}

export class Bookings {
  /**
   * @param {object} ctx `api`, `writable`, `timeline`, `announce(text)`,
   *   `resourceName(id)`, `keyId` (the signed-in key's id)
   */
  constructor(ctx) {
    this.ctx = ctx;
    this.createDialog = document.getElementById("create-dialog");
    this.createForm = document.getElementById("create-form");
    this.createError = document.getElementById("create-error");
    this.createSubmit = document.getElementById("create-submit");
    this.holdState = document.getElementById("create-hold");
    // The slot the open form holds (POST /v1/holds), converted on submit
    // and released when the form closes: `{ id, resource_id, starts_at,
    // ends_at, expires_at }`. Hold commands run one at a time (holdChain).
    this.hold = null;
    this.holdWanted = false;
    this.holdChain = Promise.resolve();
    this.detailDialog = document.getElementById("detail-dialog");
    this.detailBody = document.getElementById("detail-body");
    this.detailTitle = document.getElementById("detail-title");
    this.openId = null;
    this.createForm.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submitCreate();
    });
    for (const dialog of [this.createDialog, this.detailDialog]) {
      dialog.addEventListener("click", (e) => {
        if (e.target.closest("[data-close]")) dialog.close();
      });
    }
    for (const name of ["resource_id", "starts_at", "ends_at", "repeat"]) {
      this.createForm.elements[name].addEventListener("change", () => this.syncHold());
    }
    this.createDialog.addEventListener("close", () => {
      this.holdWanted = false;
      this.syncHold();
    });
    window.addEventListener("pagehide", () => this.releaseOnExit());
    this.detailDialog.addEventListener("close", () => {
      this.openId = null;
      this.deployments = null;
      clearTimeout(this.pollTimer);
    });
  }

  get api() {
    return this.ctx.api;
  }

  // --- create ----------------------------------------------------------------

  /**
   * Opens the form for a slot: `{ resourceId, from, to }` (all optional).
   * A slot chosen on the timeline or in the finder is held at once (as a
   * checkout holds a seat), so that nobody takes it while the form is
   * filled in; the hold follows the form's resource and times, becomes
   * the booking on submit and is released when the form closes.
   */
  openCreate({ resourceId, from, to } = {}) {
    if (!this.ctx.writable) return;
    this.createForm.reset();
    const select = this.createForm.elements.resource_id;
    select.replaceChildren();
    for (const resource of this.ctx.timeline.resources) {
      const option = el("option", "", `${resource.name} (${resource.kind})`);
      option.value = resource.id;
      select.append(option);
    }
    // "Any room": the write side picks a free member of the pool.
    if (this.ctx.pools?.length) {
      const group = document.createElement("optgroup");
      group.label = "Any free member of a pool";
      for (const pool of this.ctx.pools) {
        const option = el("option", "", `Any of ${pool.name}`);
        option.value = `pool:${pool.id}`;
        group.append(option);
      }
      select.append(group);
    }
    if (resourceId) select.value = resourceId;
    const start = from || new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000);
    const end = to || new Date(start.getTime() + 3_600_000);
    this.createForm.elements.starts_at.value = toLocalInput(start);
    this.createForm.elements.ends_at.value = toLocalInput(end);
    this.createError.replaceChildren();
    this.holdState.textContent = "";
    this.createDialog.showModal();
    this.createForm.elements.title.focus();
    this.holdWanted = Boolean(resourceId && from && to);
    if (this.holdWanted) this.syncHold();
  }

  /** The slot the form names now, if it is a valid one (and a single booking). */
  formSlot() {
    const f = this.createForm.elements;
    const startsAt = fromLocalInput(f.starts_at.value);
    const endsAt = fromLocalInput(f.ends_at.value);
    if (!f.resource_id.value || !startsAt || !endsAt || endsAt <= startsAt) return null;
    if (f.resource_id.value.startsWith("pool:")) return null; // the member is picked when it books
    if ((Number.parseInt(f.repeat.value, 10) || 1) > 1) return null; // a series books each week itself
    return { resource_id: f.resource_id.value, starts_at: startsAt.toISOString(), ends_at: endsAt.toISOString() };
  }

  /**
   * Makes the hold match the form (place, move, release); returns when it
   * does. `place: false` only releases a hold that no longer matches.
   */
  syncHold({ place = true } = {}) {
    this.holdChain = this.holdChain.then(() => this.holdStep(place)).catch((e) => console.warn("hold", e));
    return this.holdChain;
  }

  async holdStep(place) {
    const want = this.holdWanted && this.createDialog.open ? this.formSlot() : null;
    const have = this.hold;
    const same = (a, b) => a && b && a.resource_id === b.resource_id && a.starts_at === b.starts_at && a.ends_at === b.ends_at;
    if (same(have, want)) return;
    if (have) {
      this.hold = null;
      this.holdState.textContent = "";
      try {
        await this.api.request("DELETE", `/v1/holds/${have.id}`, { idempotencyKey: newActionKey() });
      } catch {
        // Expired or converted meanwhile: nothing left to release.
      }
    }
    if (!want || !place) {
      if (!want) this.holdState.textContent = "";
      return;
    }
    try {
      const answer = await this.api.command("/v1/holds", { ...want, ttl: HOLD_TTL });
      this.hold = { id: answer.id, ...want, expires_at: answer.expires_at };
      this.holdState.textContent = `This slot is held for you until ${formatTime(new Date(answer.expires_at))}.`;
      this.createError.replaceChildren();
      // Closed or changed while it was being placed: the next step fixes it.
      if (!this.holdWanted || !this.createDialog.open) this.syncHold();
    } catch (error) {
      this.holdState.textContent = "";
      await this.showError(this.createError, error, { prefix: "This slot cannot be held: ", create: true });
    }
  }

  /** Releases the form's hold as the page goes away (closed tab, sign-out, reload). */
  releaseOnExit() {
    if (!this.hold) return;
    const { id } = this.hold;
    this.hold = null;
    this.api.request("DELETE", `/v1/holds/${id}`, { idempotencyKey: newActionKey(), keepalive: true }).catch(() => {});
  }

  /** A hold of the form ended elsewhere (expired, released by another tab): forget it. */
  onHoldEvent(event) {
    if (this.hold && event.stream_id === this.hold.id && ["hold.expired", "hold.released"].includes(event.type)) {
      this.hold = null;
      this.holdState.textContent = "The hold on this slot has ended; the booking is checked again when you create it.";
    }
  }

  async submitCreate() {
    const f = this.createForm.elements;
    const startsAt = fromLocalInput(f.starts_at.value);
    const endsAt = fromLocalInput(f.ends_at.value);
    const missing = [];
    if (!f.title.value.trim()) missing.push("a title");
    if (!f.client_name.value.trim()) missing.push("the client's name");
    if (!f.resource_id.value) missing.push("a resource");
    if (!startsAt || !endsAt) missing.push("a start and an end");
    if (missing.length) {
      this.showError(this.createError, `Please give ${missing.join(", ")}.`);
      return;
    }
    if (endsAt <= startsAt) {
      this.showError(this.createError, "The end must be after the start.");
      return;
    }
    const weeks = Number.parseInt(f.repeat.value, 10) || 1;
    if (weeks < 1 || weeks > 52) {
      this.showError(this.createError, "Repeat on 1 to 52 weeks.");
      return;
    }
    const client = { name: f.client_name.value.trim() };
    if (f.client_email.value.trim()) client.email = f.client_email.value.trim();
    const resourceId = f.resource_id.value;
    const poolId = resourceId.startsWith("pool:") ? resourceId.slice("pool:".length) : null;
    if (poolId && weeks > 1) {
      this.showError(this.createError, "A pool's member is picked for one booking; choose a resource to repeat weekly.");
      return;
    }
    const outside = f.outside_working_hours.checked;
    await act(this.createSubmit, async (key) => {
      this.createError.replaceChildren();
      // The hold settles first; one that no longer matches the form is released.
      await this.syncHold({ place: false });
      const slot = { resource_id: resourceId, starts_at: startsAt.toISOString(), ends_at: endsAt.toISOString() };
      const hold = weeks === 1 && this.hold && this.hold.resource_id === slot.resource_id && this.hold.starts_at === slot.starts_at && this.hold.ends_at === slot.ends_at ? this.hold : null;
      const reservation = hold ? { hold_id: hold.id } : poolId ? { pool_id: poolId, starts_at: slot.starts_at, ends_at: slot.ends_at } : { ...slot };
      if (outside) reservation.outside_working_hours = true;
      const body = {
        title: f.title.value.trim(),
        client,
        starts_at: slot.starts_at,
        ends_at: slot.ends_at,
        headcount: Math.max(0, Number.parseInt(f.headcount.value, 10) || 0),
        reservations: [reservation],
      };
      if (weeks > 1) body.recurrence = { rule: `FREQ=WEEKLY;COUNT=${weeks}`, timezone: viewerZone };
      try {
        const answer = await this.api.command("/v1/bookings", body, key);
        if (hold) this.hold = null; // it is the booking now
        this.holdWanted = false;
        this.createDialog.close();
        this.createForm.reset();
        const held = poolId && answer.reservations?.[0] ? answer.reservations[0].resource_id : resourceId;
        const where = `${this.ctx.resourceName(held)}, ${formatRange(startsAt, endsAt)}`;
        if (Array.isArray(answer.bookings)) {
          const skipped = (answer.skipped || []).length;
          this.ctx.announce(`Booked “${body.title}” on ${answer.bookings.length} weeks from ${where}${skipped ? `; ${skipped} week${skipped > 1 ? "s" : ""} left out` : ""}.`);
          await Promise.all(answer.bookings.map((b) => this.refresh(b.id, answer.position).catch(() => {})));
        } else {
          this.ctx.announce(`Booked “${body.title}” on ${where}.`);
          await this.refresh(answer.id, answer.position);
        }
      } catch (error) {
        await this.showError(this.createError, error, { create: true });
      }
    });
  }

  /** Re-reads a booking (after `position`) and redraws its bars. */
  async refresh(id, position) {
    const query = position ? `?consistent_with=${position}` : "";
    const doc = await this.api.get(`/v1/bookings/${id}${query}`);
    this.ctx.timeline.applyBooking(doc);
    // The live stream re-reads what a command here already showed: draw
    // the detail again only if something new is known.
    const unchanged = this.doc && this.doc.id === id && this.doc.version === doc.version;
    if (this.openId === id && !unchanged) this.renderDetail(doc);
    return doc;
  }

  /** A problem's words, with the resources it names by id named by name. */
  humanize(text) {
    return String(text).replace(UUID, (id) => {
      const r = this.ctx.timeline.resourceById.get(id.toLowerCase());
      return r ? `“${r.name}”` : id;
    });
  }

  /**
   * Shows an error: the problem's `detail`; a 409 with conflicts lists the
   * bookings in the way, a series' 409 each week that cannot be booked,
   * and in the create form a working-hours refusal points at the override.
   */
  async showError(target, error, { prefix = "", create = false } = {}) {
    target.replaceChildren();
    if (typeof error === "string") {
      target.append(el("p", "", error));
      return;
    }
    if (!(error instanceof ApiProblem)) {
      target.append(el("p", "", "Something went wrong; see the browser console."));
      console.warn(error);
      return;
    }
    const type = error.problem.type;
    const kind = REFUSALS[type];
    target.append(el("p", "", `${prefix}${kind ? `${kind}: ` : ""}${this.humanize(error.message)}`));
    if (create && type === "urn:muster:problem:outside-working-hours") {
      target.append(el("p", "", "Tick “Book outside working hours” to book it anyway."));
    }
    const quota = error.problem.quota;
    if (type === "urn:muster:problem:quota-exceeded" && quota) {
      target.replaceChildren();
      const limit = quota.max_bookings != null ? `${quota.max_bookings} bookings` : `${quota.max_hours} hours`;
      const used = quota.max_bookings != null ? `${quota.used_bookings} booked` : `${quota.used_hours} hours booked`;
      target.append(
        el(
          "p",
          "",
          `${prefix}Quota “${quota.quota}” reached: ${this.humanize(quota.subject)} may have ${limit} from ${formatRange(new Date(quota.period_starts_at), new Date(quota.period_ends_at))} and has ${used}. Nothing was booked.`,
        ),
      );
      return;
    }
    if (error.conflicts.length) await this.listConflicts(target, error.conflicts);
    const occurrences = Array.isArray(error.problem.occurrences) ? error.problem.occurrences : [];
    if (occurrences.length) {
      target.append(el("p", "", "Weeks that cannot be booked:"));
      const list = el("ul", "conflicts");
      target.append(list);
      for (const o of occurrences) {
        const why = REFUSALS[`urn:muster:problem:${o.reason}`] || (o.reason === "reservation-conflict" ? "already reserved" : o.reason);
        list.append(el("li", "conflict", `${formatRange(new Date(o.starts_at), new Date(o.ends_at))}: ${why}`));
      }
    }
  }

  async listConflicts(target, conflicts) {
    target.append(el("p", "", "In the way:"));
    const list = el("ul", "conflicts");
    target.append(list);
    for (const c of conflicts) {
      const item = el("li", "conflict");
      const known = this.ctx.timeline.entryOf(c.booking_id);
      let title = known ? known.title : null;
      if (!title && c.hold_expires_at) title = `A hold (until ${formatTime(new Date(c.hold_expires_at))})`;
      // A block of the resource's own calendar is not a booking to look up.
      if (!title && c.calendar_id) title = "Busy in its own calendar";
      if (!title) {
        try {
          title = (await this.api.get(`/v1/bookings/${c.booking_id}`)).title;
        } catch {
          title = `booking ${String(c.booking_id).slice(0, 8)}`;
        }
      }
      item.textContent = `${title} — ${this.ctx.resourceName(c.resource_id)}, ${formatRange(new Date(c.starts_at), new Date(c.ends_at))}`;
      list.append(item);
    }
  }

  // --- move -------------------------------------------------------------------

  /** Moves a booking by `deltaMs` (a dragged bar) through the reschedule command. */
  async moveBy(bookingId, deltaMs) {
    try {
      const doc = await this.api.get(`/v1/bookings/${bookingId}`);
      const starts = new Date(Date.parse(doc.starts_at) + deltaMs);
      const ends = new Date(Date.parse(doc.ends_at) + deltaMs);
      const answer = await this.api.request("POST", `/v1/bookings/${bookingId}/reschedule`, {
        body: { starts_at: starts.toISOString(), ends_at: ends.toISOString() },
        idempotencyKey: newActionKey(),
        headers: { "If-Match": String(doc.version) },
      });
      this.ctx.announce(`Moved “${doc.title}” to ${formatRange(starts, ends)}.`);
      await this.refresh(bookingId, answer.position);
    } catch (error) {
      const box = el("div");
      await this.showError(box, error);
      this.ctx.announce(`Could not move the booking: ${box.textContent}`, true);
      // Put the bar back where the server says it is.
      this.refresh(bookingId).catch(() => {});
    }
  }

  /**
   * Changes one reservation (a resized bar, the reservation form):
   * `PATCH /v1/bookings/{id}/reservations/{rid}` with the booking's version
   * as If-Match. Answers the error text, or null.
   */
  async changeReservation(bookingId, reservationId, change, key = newActionKey()) {
    try {
      const doc = await this.api.get(`/v1/bookings/${bookingId}`);
      const answer = await this.api.request("PATCH", `/v1/bookings/${bookingId}/reservations/${reservationId}`, {
        body: change,
        idempotencyKey: key,
        headers: { "If-Match": String(doc.version) },
      });
      const to = change.starts_at ? ` to ${formatRange(new Date(change.starts_at), new Date(change.ends_at))}` : "";
      this.ctx.announce(`Changed a reservation of “${doc.title}”${to}.`);
      await this.refresh(bookingId, answer.position);
      return null;
    } catch (error) {
      const box = el("div");
      await this.showError(box, error);
      this.ctx.announce(`Could not change the reservation: ${box.textContent}`, true);
      this.refresh(bookingId).catch(() => {});
      return box;
    }
  }

  // --- detail -----------------------------------------------------------------

  async openDetail(id) {
    this.openId = id;
    this.detailTitle.textContent = "Booking";
    this.detailBody.replaceChildren(el("p", "loading", "Loading…"));
    if (!this.detailDialog.open) this.detailDialog.showModal();
    try {
      const doc = await this.api.get(`/v1/bookings/${id}`);
      if (this.openId === id) this.renderDetail(doc);
    } catch (error) {
      this.detailBody.replaceChildren();
      await this.showError(this.detailBody, error);
    }
  }

  renderDetail(doc) {
    // Keep the keyboard where it was across the redraw.
    const active = this.detailBody.contains(document.activeElement) ? document.activeElement : null;
    const focusId = active && (active.id || active.getAttribute("aria-label") || active.textContent);
    this.doc = doc;
    this.detailTitle.textContent = doc.title;
    const body = document.createDocumentFragment();

    const status = el("p", "detail-status");
    status.append("Status: ", el("span", `status-pill st-${doc.status}`, statusLabel(doc.status)));
    body.append(status);

    const facts = el("dl", "facts");
    const fact = (term, value) => {
      facts.append(el("dt", "", term), el("dd", "", value));
    };
    fact("When", formatRange(new Date(doc.starts_at), new Date(doc.ends_at)));
    fact("Client", doc.client.erased ? "Erased (their personal data was erased)" : [doc.client.name, doc.client.email, doc.client.phone].filter(Boolean).join(" · "));
    fact("Headcount", String(doc.headcount));
    if (doc.notes) fact("Notes", doc.notes);
    if (doc.checked_in_at) fact("Checked in", formatDateTime(new Date(doc.checked_in_at)));
    if (doc.no_show) fact("No-show", "not checked in by the deadline; its time was released");
    body.append(facts);

    const error = el("div", "error");
    error.setAttribute("role", "alert");

    if (this.ctx.writable) {
      const actions = el("div", "detail-actions");
      actions.setAttribute("role", "group");
      actions.setAttribute("aria-label", "Booking actions");
      for (const t of TRANSITIONS.filter((t) => t.from.includes(doc.status) && (t.action !== "check-in" || checkInOpen(doc)))) {
        const b = button(t.label, t.action === "cancel" ? "danger" : "primary");
        b.addEventListener("click", () =>
          act(b, async (key) => {
            error.replaceChildren();
            try {
              const answer = await this.api.command(`/v1/bookings/${doc.id}/${t.action}`, {}, key);
              this.ctx.announce(
                t.action === "check-in"
                  ? `Checked in: “${doc.title}”.`
                  : `${t.label}: “${doc.title}” is now ${statusLabel(answer.status || "")}.`,
              );
              await this.refresh(doc.id, answer.position);
            } catch (e) {
              await this.showError(error, e);
            }
          }),
        );
        actions.append(b);
      }
      body.append(actions);
    }
    body.append(error);

    if (this.ctx.writable && ["requested", "confirmed"].includes(doc.status)) body.append(this.rescheduleForm(doc, error));
    body.append(this.reservationsSection(doc, error));
    body.append(this.tasksSection(doc, error));
    body.append(this.historySection(doc));
    if (doc.client.email) body.append(this.clientSection(doc));
    body.append(this.pastSection(doc));
    body.append(this.deploymentsSection(doc, error));
    this.detailBody.replaceChildren(body);
    if (active) {
      const same = [...this.detailBody.querySelectorAll("button, input, select")].find(
        (n) => n.id === focusId || n.getAttribute("aria-label") === focusId || n.textContent === focusId,
      );
      (same || this.detailTitle).focus();
    }
  }

  rescheduleForm(doc, error) {
    const section = el("section", "detail-section");
    const heading = el("h3", "", "Move");
    heading.id = "move-heading";
    section.setAttribute("aria-labelledby", heading.id);
    const form = el("form", "inline-form");
    const starts = this.dateField(form, "move-starts", "New start", new Date(doc.starts_at));
    const ends = this.dateField(form, "move-ends", "New end", new Date(doc.ends_at));
    const submit = el("button", "primary", "Move booking");
    submit.type = "submit";
    form.append(submit);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const s = fromLocalInput(starts.value);
      const t = fromLocalInput(ends.value);
      if (!s || !t || t <= s) {
        this.showError(error, "The new end must be after the new start.");
        return;
      }
      act(submit, async (key) => {
        error.replaceChildren();
        try {
          const answer = await this.api.request("POST", `/v1/bookings/${doc.id}/reschedule`, {
            body: { starts_at: s.toISOString(), ends_at: t.toISOString() },
            idempotencyKey: key,
            headers: { "If-Match": String(doc.version) },
          });
          this.ctx.announce(`Moved “${doc.title}” to ${formatRange(s, t)}.`);
          await this.refresh(doc.id, answer.position);
        } catch (err) {
          await this.showError(error, err);
        }
      });
    });
    section.append(heading, form);
    return section;
  }

  dateField(form, id, label, value) {
    const wrap = el("div", "field");
    const l = el("label", "", label);
    l.htmlFor = id;
    const input = el("input");
    input.type = "datetime-local";
    input.id = id;
    input.required = true;
    input.value = toLocalInput(value);
    wrap.append(l, input);
    form.append(wrap);
    return input;
  }

  section(title, id) {
    const section = el("section", "detail-section");
    const heading = el("h3", "", title);
    heading.id = id;
    section.setAttribute("aria-labelledby", id);
    section.append(heading);
    return section;
  }

  reservationsSection(doc, error) {
    const section = this.section("Reservations", "reservations-heading");
    if (!doc.reservations.length) section.append(el("p", "muted", "No reservation holds time."));
    const list = el("ul", "plain-list");
    const changeable = this.ctx.writable && ["requested", "confirmed", "in_progress"].includes(doc.status);
    doc.reservations.forEach((r, i) => {
      const label = r.label ? ` (${r.label})` : "";
      const item = el("li", "", `${this.ctx.resourceName(r.resource_id)}${label}: ${formatRange(new Date(r.starts_at), new Date(r.ends_at))}`);
      if (changeable) item.append(this.reservationForm(doc, r, i, error));
      list.append(item);
    });
    section.append(list);
    return section;
  }

  /** Move one reservation to another resource or time (PATCH). */
  reservationForm(doc, r, i, error) {
    const details = el("details", "reservation-change");
    details.append(el("summary", "", "Change this reservation"));
    const form = el("form", "inline-form");
    const wrap = el("div", "field");
    const label = el("label", "", "Resource");
    label.htmlFor = `res-${i}-resource`;
    const select = el("select");
    select.id = label.htmlFor;
    for (const resource of this.ctx.timeline.resources) select.append(new Option(resource.name, resource.id, false, resource.id === r.resource_id));
    wrap.append(label, select);
    form.append(wrap);
    const starts = this.dateField(form, `res-${i}-starts`, "Reservation start", new Date(r.starts_at));
    const ends = this.dateField(form, `res-${i}-ends`, "Reservation end", new Date(r.ends_at));
    const submit = el("button", "", "Save reservation");
    submit.type = "submit";
    form.append(submit);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const s = fromLocalInput(starts.value);
      const t = fromLocalInput(ends.value);
      if (!s || !t || t <= s) {
        this.showError(error, "The reservation's end must be after its start.");
        return;
      }
      const change = { resource_id: select.value, starts_at: s.toISOString(), ends_at: t.toISOString() };
      act(submit, async (key) => {
        error.replaceChildren();
        const failed = await this.changeReservation(doc.id, r.reservation_id, change, key);
        if (failed) error.replaceChildren(...failed.childNodes);
      });
    });
    details.append(form);
    return details;
  }

  tasksSection(doc, error) {
    const section = this.section("Tasks", "tasks-heading");
    if (!doc.tasks.length) section.append(el("p", "muted", "No tasks."));
    const list = el("ul", "plain-list");
    for (const task of doc.tasks) {
      const item = el("li", task.completed ? "done" : "");
      const due = task.due_at ? `, due ${formatDateTime(new Date(task.due_at))}` : "";
      const assignee = task.assignee_id ? `, ${this.ctx.resourceName(task.assignee_id)}` : "";
      item.append(el("span", "", `${task.title}${due}${assignee}${task.completed ? " — done" : ""}`));
      if (!task.completed && this.ctx.writable) {
        const b = button("Complete task", "small");
        b.setAttribute("aria-label", `Complete task ${task.title}`);
        b.addEventListener("click", () =>
          act(b, async (key) => {
            try {
              const answer = await this.api.command(`/v1/bookings/${doc.id}/tasks/${task.task_id}/complete`, {}, key);
              this.ctx.announce(`Task “${task.title}” done.`);
              await this.refresh(doc.id, answer.position);
            } catch (e) {
              await this.showError(error, e);
            }
          }),
        );
        item.append(" ", b);
      }
      list.append(item);
    }
    section.append(list);
    if (this.ctx.writable) {
      const form = el("form", "inline-form");
      const wrap = el("div", "field");
      const label = el("label", "", "New task");
      label.htmlFor = "task-title";
      const input = el("input");
      input.id = "task-title";
      input.required = true;
      input.autocomplete = "off";
      wrap.append(label, input);
      const submit = el("button", "", "Add task");
      submit.type = "submit";
      form.append(wrap, submit);
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const title = input.value.trim();
        if (!title) return;
        act(submit, async (key) => {
          try {
            const answer = await this.api.command(`/v1/bookings/${doc.id}/tasks`, { title }, key);
            this.ctx.announce(`Task “${title}” added.`);
            await this.refresh(doc.id, answer.position);
          } catch (err) {
            await this.showError(error, err);
          }
        });
      });
      section.append(form);
    }
    return section;
  }

  historySection(doc) {
    const section = this.section("Status history", "history-heading");
    const list = el("ol", "plain-list");
    for (const change of doc.status_history) {
      const who = change.actor ? ` by ${this.actorName(change.actor)}` : "";
      list.append(el("li", "", `${statusLabel(change.status)} — ${formatDateTime(new Date(change.at))}${who}`));
    }
    section.append(list);
    return section;
  }

  /** The client's record (GET /v1/clients/{email}), loaded with the detail; admins may erase the client. */
  clientSection(doc) {
    const section = this.section("Client's history", "client-heading");
    const line = el("p", "", "Loading the client's history…");
    line.setAttribute("aria-live", "polite");
    section.append(line);
    const email = doc.client.email;
    this.api
      .get(`/v1/clients/${encodeURIComponent(email)}?consistent_with=${doc.position}`)
      .then((h) => {
        const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;
        line.textContent = `${email}: ${count(h.bookings, "booking", "bookings")} · ${count(h.cancellations, "cancellation", "cancellations")} · ${count(h.no_shows, "no-show", "no-shows")}`;
      })
      .catch(() => {
        line.textContent = "The client's history could not be read.";
      });
    if (this.ctx.admin) section.append(this.eraseControl(doc));
    return section;
  }

  /** Erase the client's personal data (POST /v1/clients/erase), after a confirmation that names what goes. */
  eraseControl(doc) {
    const box = el("div", "erase");
    const error = el("div", "error");
    error.setAttribute("role", "alert");
    const start = button("Erase this client's personal data…", "danger");
    const confirm = el("div", "confirm-erase");
    confirm.setAttribute("role", "group");
    confirm.setAttribute("aria-label", "Confirm the erasure");
    confirm.hidden = true;
    const warning = el(
      "p",
      "",
      `Erase ${doc.client.name} (${doc.client.email}) for good? Their name, email, phone and notes go from every booking, message and report; the bookings keep their times. This cannot be undone.`,
    );
    const yes = button("Erase for good", "danger");
    const no = button("Keep");
    confirm.append(warning, yes, no);
    start.addEventListener("click", () => {
      confirm.hidden = false;
      start.hidden = true;
      no.focus();
    });
    no.addEventListener("click", () => {
      confirm.hidden = true;
      start.hidden = false;
      start.focus();
    });
    yes.addEventListener("click", () =>
      act(yes, async (key) => {
        error.replaceChildren();
        try {
          const answer = await this.api.command("/v1/clients/erase", { email: doc.client.email }, key);
          const n = answer.bookings.length;
          this.ctx.announce(`The client was erased: ${n} ${n === 1 ? "booking" : "bookings"} no longer name them.`);
          // An erasure leaves the booking's version as it was: draw it again all the same.
          this.doc = null;
          await this.refresh(doc.id, answer.position);
        } catch (e) {
          await this.showError(error, e);
        }
      }),
    );
    box.append(start, confirm, error);
    return box;
  }

  /**
   * The schedules of the resources the booking holds now, on its day, as
   * muster knew them at `instant` (GET /v1/resources/{id}/schedule?as_of=).
   */
  async pastSchedules(doc, instant, out) {
    const day = new Date(doc.starts_at);
    const from = new Date(day.getTime() - 12 * 60 * 60_000).toISOString();
    const to = new Date(new Date(doc.ends_at).getTime() + 12 * 60 * 60_000).toISOString();
    const resources = [...new Set(doc.reservations.map((r) => r.resource_id))];
    for (const id of resources) {
      const schedule = await this.api.get(
        `/v1/resources/${id}/schedule?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&as_of=${encodeURIComponent(instant.toISOString())}`,
      );
      const name = this.ctx.resourceName(id);
      const list = el("ul", "past-schedule");
      list.setAttribute("aria-label", `${name} then`);
      for (const e of schedule.entries) {
        list.append(el("li", "", `${formatRange(new Date(e.starts_at), new Date(e.ends_at))}: ${e.title} (${statusLabel(e.status)})`));
      }
      if (!schedule.entries.length) list.append(el("li", "muted", "Nothing booked then."));
      out.append(el("h4", "", `${name}, as it was`), list);
    }
  }

  /** The booking as muster knew it at an instant (GET /v1/bookings/{id}?as_of=). */
  pastSection(doc) {
    const section = this.section("As it was", "past-heading");
    const form = el("form", "inline-form");
    const at = this.dateField(form, "past-at", "As it was on", new Date(Date.now() + 60_000));
    const submit = el("button", "", "Show");
    submit.type = "submit";
    form.append(submit);
    const out = el("div", "past");
    out.setAttribute("aria-live", "polite");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const instant = fromLocalInput(at.value);
      if (!instant) {
        out.replaceChildren(el("p", "error", "Give a date and time."));
        return;
      }
      try {
        const then = await this.api.get(`/v1/bookings/${doc.id}?as_of=${encodeURIComponent(instant.toISOString())}`);
        const facts = el("dl", "facts");
        const fact = (term, value) => facts.append(el("dt", "", term), el("dd", "", value));
        fact("Status", statusLabel(then.status));
        fact("When", formatRange(new Date(then.starts_at), new Date(then.ends_at)));
        fact("Version", String(then.version));
        for (const r of then.reservations) {
          fact(r.label || this.ctx.resourceName(r.resource_id), formatRange(new Date(r.starts_at), new Date(r.ends_at)));
        }
        out.replaceChildren(el("p", "", `On ${formatDateTime(instant)}:`), facts);
        await this.pastSchedules(doc, instant, out);
      } catch (err) {
        if (err && err.status === 404) {
          out.replaceChildren(el("p", "", `On ${formatDateTime(instant)}, the booking did not exist yet.`));
          await this.pastSchedules(doc, instant, out);
        } else await this.showError(out, err);
      }
    });
    section.append(form, out);
    return section;
  }

  /** Who an actor is: "you" (the signed-in key), "key 1a2b3c4d" (another key), or as named (`worker`, `system:…`). */
  actorName(actor) {
    const id = String(actor);
    if (this.ctx.keyId && id.toLowerCase() === this.ctx.keyId.toLowerCase()) return "you";
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) return `key ${id.slice(0, 8)}`;
    return id;
  }

  // --- deployments --------------------------------------------------------------

  deploymentsSection(doc, error) {
    const section = this.section("Deployments", "deployments-heading");
    const list = el("div", "deployments");
    section.append(list);
    // Drawn again with the detail: the list in place stays until the new read answers.
    const previous = this.deployments && this.deployments.doc.id === doc.id ? this.deployments.list : null;
    if (previous) list.replaceChildren(...previous.childNodes);
    else list.append(el("p", "muted", "Loading deployments…"));
    this.deployments = { doc, list, error, position: this.deployments?.doc.id === doc.id ? this.deployments.position : 0 };
    this.loadDeployments();
    if (this.ctx.writable && ["confirmed", "in_progress"].includes(doc.status)) {
      const b = button("Request deployment", "primary");
      b.addEventListener("click", () =>
        act(b, async (key) => {
          try {
            const answer = await this.api.command("/v1/deployments", { booking_id: doc.id }, key);
            this.ctx.announce(`Deployment requested for “${doc.title}”.`);
            this.reloadDeployments(doc.id, answer.position);
          } catch (err) {
            await this.showError(error, err);
          }
        }),
      );
      section.append(b);
    }
    return section;
  }

  /**
   * A deployment event on the live stream: re-read the open booking's
   * deployments if it is one of them, or a new one of this booking.
   */
  onDeploymentEvent(event) {
    const shown = this.deployments;
    if (!shown || this.openId !== shown.doc.id) return;
    const ours = (event.data && event.data.booking_id === shown.doc.id) || (shown.ids && shown.ids.has(event.stream_id));
    if (ours) this.reloadDeployments(shown.doc.id, event.position);
  }

  /** Re-reads the deployments of the open booking, at least up to `position` (read-your-writes). */
  reloadDeployments(bookingId, position = 0) {
    const shown = this.deployments;
    if (!shown || shown.doc.id !== bookingId || this.openId !== bookingId) return;
    shown.position = Math.max(shown.position || 0, position || 0);
    this.loadDeployments();
  }

  /**
   * Lists the open booking's deployments (`GET /v1/deployments?booking_id`),
   * each with its progress and steps (`GET /v1/deployments/{id}`), and
   * re-reads them every second while one is under way. Only the latest
   * read draws: a newer one (or a closed dialog) makes an older one moot.
   */
  async loadDeployments() {
    const shown = this.deployments;
    if (!shown) return;
    const { doc, list, error } = shown;
    const token = (this.deploymentsToken || 0) + 1;
    this.deploymentsToken = token;
    clearTimeout(this.pollTimer);
    const current = () => this.deploymentsToken === token && this.deployments === shown && this.openId === doc.id;
    const params = { booking_id: doc.id };
    if (shown.position) params.consistent_with = String(shown.position);
    let summaries;
    try {
      summaries = await this.api.all("/v1/deployments", params, 100);
    } catch (e) {
      if (current()) list.replaceChildren(el("p", "error", `Could not list the deployments: ${e.message}`));
      return;
    }
    // Progress and steps of each; the list's own line if that read fails.
    const details = await Promise.all(summaries.map((d) => this.api.get(`/v1/deployments/${d.id}`).catch(() => null)));
    if (!current()) return;
    shown.ids = new Set(summaries.map((d) => d.id));
    const cards = summaries.map((summary, i) => this.deploymentCard(doc, summary, details[i], error));
    if (cards.length) list.replaceChildren(...cards);
    else list.replaceChildren(el("p", "muted", "No deployments."));
    // Progress is shown live: re-read while a deployment is under way.
    const active = summaries.some((d, i) => ["queued", "running"].includes((details[i] || d).status));
    if (active) this.pollTimer = setTimeout(() => current() && this.loadDeployments(), 1000);
  }

  /** One deployment: its line in the list (`summary`) with progress and steps from its own document (`detail`, if read). */
  deploymentCard(doc, summary, detail, error) {
    const d = detail || summary;
    const name = `Deployment ${d.id.slice(0, 8)}`;
    const card = el("div", "deployment");
    card.dataset.deploymentId = d.id;
    const head = el("p", "");
    const requested = summary.requested_at ? `, requested ${formatDateTime(new Date(summary.requested_at))}` : "";
    head.append(el("strong", "", name), ` — ${d.status}, ${d.steps_done}/${d.steps_total} steps${requested}`);
    const progress = el("progress");
    progress.max = 1;
    progress.value = typeof d.progress === "number" ? d.progress : d.steps_total ? d.steps_done / d.steps_total : 0;
    progress.setAttribute("aria-label", `${name} progress`);
    card.append(head, progress);
    const steps = el("ol", "plain-list steps");
    for (const step of (detail && detail.steps) || []) {
      const name = step.resource_id ? `Dispatch ${this.ctx.resourceName(step.resource_id)}` : step.name;
      const tries = step.attempts.length ? ` (${step.attempts.length} attempt${step.attempts.length > 1 ? "s" : ""})` : "";
      steps.append(el("li", `step-${step.status}`, `${name}: ${step.status}${tries}`));
    }
    if (steps.childElementCount) card.append(steps);
    if (d.error) card.append(el("p", "error", d.error));
    if (this.ctx.writable && ["queued", "running"].includes(d.status)) {
      const b = button("Cancel deployment", "danger small");
      b.setAttribute("aria-label", `Cancel deployment ${d.id.slice(0, 8)}`);
      b.addEventListener("click", () =>
        act(b, async (key) => {
          try {
            const answer = await this.api.command(`/v1/deployments/${d.id}/cancel`, {}, key);
            this.ctx.announce("Deployment cancelled.");
            this.reloadDeployments(doc.id, answer && answer.position);
          } catch (e) {
            await this.showError(error, e);
          }
        }),
      );
      card.append(b);
    }
    if (this.ctx.writable && d.status === "failed") {
      // Resumes at the first unfinished step; steps that succeeded are not redone.
      const b = button("Retry", "primary small");
      b.setAttribute("aria-label", `Retry deployment ${d.id.slice(0, 8)}`);
      b.addEventListener("click", () =>
        act(b, async (key) => {
          error.replaceChildren();
          try {
            const answer = await this.api.command(`/v1/deployments/${d.id}/retry`, {}, key);
            this.ctx.announce(`${name} queued again; it resumes at its first unfinished step.`);
            this.reloadDeployments(doc.id, answer && answer.position);
          } catch (e) {
            await this.showError(error, e);
          }
        }),
      );
      card.append(b);
    }
    return card;
  }
}
