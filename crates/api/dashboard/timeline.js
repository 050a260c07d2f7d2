// The timeline: resources as rows, the viewer's time as columns. Each row
// has one absolutely positioned track holding its working-hours shading and
// its bars; rows are built in a DocumentFragment and swapped in at once.
// Bars get no listeners of their own: the timeline listens once (event
// delegation) for clicks, drags and keys.

import { ApiProblem } from "./api.js";
import { el, statusLabel } from "./dom.js";
import {
  DAY,
  HOUR,
  MINUTE,
  addDays,
  formatDay,
  formatDuration,
  formatRange,
  formatTime,
  formatWindowTitle,
  parseDuration,
  snap,
  viewWindow,
  workingIntervals,
} from "./time.js";

const STATUSES = ["requested", "confirmed", "in_progress", "completed", "cancelled"];
/** Reservations per schedule page (the API's maximum): a busy week in one read. */
const SCHEDULE_PAGE = 5000;
/** Resources named per request when only some rows need their schedule. */
const IDS_PER_READ = 100;
/** A press this close (px) to a bar's right edge resizes it. */
const RESIZE_EDGE = 6;
/** A drag shorter than this (px) is a click. */
const DRAG_THRESHOLD = 5;

/** Set-up and clean-up time of a resource's policy, in ms. */
export function buffersOf(resource) {
  const policy = (resource && resource.policy) || {};
  return { before: parseDuration(policy.buffer_before), after: parseDuration(policy.buffer_after) };
}

export class Timeline {
  /**
   * @param {HTMLElement} root where the timeline draws itself
   * @param {object} options `api`, `writable`, and callbacks `openBooking(id)`,
   *   `selectSlot({resourceId, from, to})`, `moveBooking({bookingId, deltaMs})`,
   *   `changeReservation({bookingId, reservationId, change})`,
   *   `announce(text)`, `fail(error)`
   */
  constructor(root, options) {
    this.root = root;
    this.api = options.api;
    this.writable = options.writable;
    this.callbacks = options;
    this.view = "week";
    this.anchor = new Date();
    this.filter = { kind: "", tag: "" };
    this.resources = [];
    this.resourceById = new Map();
    // resource id -> schedule entries (reservations) in the current window
    this.entries = new Map();
    // hold id -> an unexpired hold in the window: a schedule entry with
    // `resource_id` and `expires_at`; drawn until it expires
    this.holds = new Map();
    // resource id -> its external calendars' busy blocks in the window
    this.blocks = new Map();
    this.expiryTimer = 0;
    // booking id -> set of resource ids whose rows show it
    this.rowsOfBooking = new Map();
    this.loadedWindowKey = null;
    this.shading = new Map();
    this.loadGeneration = 0;
    this.focusKey = null;
    this.build();
  }

  get window() {
    return viewWindow(this.view, this.anchor);
  }

  build() {
    this.root.replaceChildren();
    this.scroller = el("div", "tl-scroll");
    this.scroller.tabIndex = -1;
    this.grid = el("div", "tl-grid");
    this.head = el("div", "tl-head");
    this.head.setAttribute("aria-hidden", "true");
    this.body = el("div", "tl-body");
    this.grid.append(this.head, this.body);
    this.scroller.append(this.grid);
    this.root.append(this.scroller);
    this.root.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    this.root.addEventListener("click", (e) => this.onClick(e));
    this.root.addEventListener("keydown", (e) => this.onKeyDown(e));
  }

  // --- data ---------------------------------------------------------------

  /** Loads resources (all pages) then the current window's schedules. */
  async load() {
    this.resources = await this.api.all("/v1/resources");
    this.resourceById = new Map(this.resources.map((r) => [r.id, r]));
    this.loadedWindowKey = null;
    await this.loadSchedules();
  }

  async reloadResources() {
    this.resources = await this.api.all("/v1/resources");
    this.resourceById = new Map(this.resources.map((r) => [r.id, r]));
    await this.loadSchedules({ onlyMissing: true });
  }

  visibleResources() {
    const { kind, tag } = this.filter;
    return this.resources.filter((r) => (!kind || r.kind === kind) && (!tag || r.tags.includes(tag)));
  }

  kinds() {
    return [...new Set(this.resources.map((r) => r.kind))].sort();
  }

  tags() {
    return [...new Set(this.resources.flatMap((r) => r.tags))].sort();
  }

  /**
   * Schedules of the visible resources for the window, from
   * `GET /v1/schedule` (every resource's reservations in start order, the
   * unexpired holds on the first page): a busy week is one or two reads.
   * The rows (names, working hours) draw at once, the bars when the
   * schedule is in. `onlyMissing` reads only rows not read yet (a filter
   * widened, a resource registered), by id.
   */
  async loadSchedules({ onlyMissing = false } = {}) {
    const { from, to } = this.window;
    const key = `${from.toISOString()}/${to.toISOString()}`;
    if (this.loadedWindowKey !== key) {
      this.entries = new Map();
      this.holds = new Map();
      this.blocks = new Map();
      this.shading = new Map();
      this.loadedWindowKey = key;
      onlyMissing = false;
    }
    const generation = ++this.loadGeneration;
    this.firstScreenAt = undefined;
    const visible = this.visibleResources();
    const wanted = visible.filter((r) => !onlyMissing || !this.entries.has(r.id));
    this.root.setAttribute("aria-busy", "true");
    this.draw();
    performance.mark("muster:schedules-start");
    const span = { from: from.toISOString(), to: to.toISOString() };
    let reads;
    if (!onlyMissing) {
      // The whole tenant (or the filter's kind and tag): one scan.
      const scope = {};
      if (this.filter.kind) scope.kind = this.filter.kind;
      if (this.filter.tag) scope.tag = this.filter.tag;
      reads = [scope];
    } else {
      reads = [];
      for (let i = 0; i < wanted.length; i += IDS_PER_READ) {
        reads.push({ resource_ids: wanted.slice(i, i + IDS_PER_READ).map((r) => r.id).join(",") });
      }
    }
    let pages;
    try {
      pages = await Promise.all(reads.map((scope) => this.readSchedule({ ...span, ...scope }, generation)));
    } finally {
      if (generation === this.loadGeneration) this.root.removeAttribute("aria-busy");
    }
    if (generation !== this.loadGeneration || pages.includes(null)) return false;
    const fresh = new Map(wanted.map((r) => [r.id, []]));
    if (!onlyMissing) this.holds = new Map();
    const freshBlocks = new Map(wanted.map((r) => [r.id, []]));
    for (const { items, holds, blocks } of pages) {
      for (const item of items) {
        if (!fresh.has(item.resource_id)) fresh.set(item.resource_id, []);
        fresh.get(item.resource_id).push(item);
      }
      for (const hold of holds) this.holds.set(hold.reservation_id, hold);
      for (const block of blocks) {
        if (!freshBlocks.has(block.resource_id)) freshBlocks.set(block.resource_id, []);
        freshBlocks.get(block.resource_id).push(block);
      }
    }
    for (const [id, entries] of fresh) this.entries.set(id, entries);
    for (const [id, blocks] of freshBlocks) this.blocks.set(id, blocks);
    this.reindex();
    this.draw();
    this.firstScreenAt = performance.now();
    performance.mark("muster:first-screen");
    this.scheduleExpiry();
    performance.mark("muster:drawn");
    return true;
  }

  /** Every page of one schedule read; null if a newer load started meanwhile. */
  async readSchedule(params, generation) {
    const items = [];
    let holds = [];
    let blocks = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ ...params, limit: String(SCHEDULE_PAGE) });
      if (cursor) query.set("cursor", cursor);
      const page = await this.api.get(`/v1/schedule?${query}`);
      if (generation !== this.loadGeneration) return null;
      items.push(...page.items);
      if (!cursor && Array.isArray(page.holds)) holds = page.holds;
      if (!cursor && Array.isArray(page.blocks)) blocks = page.blocks;
      cursor = page.next_cursor || null;
    } while (cursor);
    return { items, holds, blocks };
  }

  // --- holds ------------------------------------------------------------------

  /**
   * Draws a hold (`{ id, resource_id, starts_at, ends_at, expires_at }`, as
   * `hold.placed` carries it) until it expires, if it is in view.
   */
  applyHold(hold) {
    const { from, to } = this.window;
    if (!hold || !hold.resource_id || !this.entries.has(hold.resource_id)) return;
    if (Date.parse(hold.expires_at) <= Date.now()) return;
    if (Date.parse(hold.ends_at) <= from.getTime() || Date.parse(hold.starts_at) >= to.getTime()) return;
    this.holds.set(hold.id, {
      resource_id: hold.resource_id,
      reservation_id: hold.id,
      booking_id: hold.id,
      title: "Hold",
      status: "held",
      starts_at: hold.starts_at,
      ends_at: hold.ends_at,
      expires_at: hold.expires_at,
    });
    this.redrawRow(hold.resource_id);
    this.markDrawn();
    this.scheduleExpiry();
  }

  /** Takes a hold off the timeline (released, converted, expired). */
  removeHold(id) {
    const hold = this.holds.get(id);
    if (!hold) return;
    this.holds.delete(id);
    this.redrawRow(hold.resource_id);
    this.markDrawn();
  }

  /** Holds stop counting at `expires_at`: they leave the timeline at that instant. */
  scheduleExpiry() {
    clearTimeout(this.expiryTimer);
    let next = Infinity;
    for (const hold of this.holds.values()) next = Math.min(next, Date.parse(hold.expires_at));
    if (next === Infinity) return;
    this.expiryTimer = setTimeout(() => {
      const now = Date.now();
      for (const [id, hold] of this.holds) if (Date.parse(hold.expires_at) <= now) this.removeHold(id);
      this.scheduleExpiry();
    }, Math.min(Math.max(next - Date.now(), 0), 2 ** 31 - 1));
  }

  holdsOf(resourceId) {
    const found = [];
    for (const hold of this.holds.values()) if (hold.resource_id === resourceId) found.push(hold);
    return found;
  }

  reindex() {
    this.rowsOfBooking = new Map();
    for (const [resourceId, entries] of this.entries) {
      for (const entry of entries) {
        if (!this.rowsOfBooking.has(entry.booking_id)) this.rowsOfBooking.set(entry.booking_id, new Set());
        this.rowsOfBooking.get(entry.booking_id).add(resourceId);
      }
    }
  }

  /**
   * Applies a booking as `GET /v1/bookings/{id}` answers it (live updates,
   * own commands): its bars move to where its reservations are now.
   */
  applyBooking(doc) {
    const { from, to } = this.window;
    const before = this.signature(doc.id);
    const touched = new Set(this.rowsOfBooking.get(doc.id) || []);
    for (const resourceId of touched) {
      const entries = this.entries.get(resourceId);
      if (entries) this.entries.set(resourceId, entries.filter((e) => e.booking_id !== doc.id));
    }
    const rows = new Set();
    for (const r of doc.reservations || []) {
      if (new Date(r.ends_at) <= from || new Date(r.starts_at) >= to) continue;
      const entries = this.entries.get(r.resource_id);
      if (!entries) continue; // not a loaded row (filtered out or unknown)
      entries.push({
        reservation_id: r.reservation_id,
        booking_id: doc.id,
        title: doc.title,
        status: doc.status,
        starts_at: r.starts_at,
        ends_at: r.ends_at,
        label: r.label,
      });
      entries.sort((a, b) => a.starts_at.localeCompare(b.starts_at));
      rows.add(r.resource_id);
      touched.add(r.resource_id);
    }
    if (rows.size) this.rowsOfBooking.set(doc.id, rows);
    else this.rowsOfBooking.delete(doc.id);
    // The live echo of a change already drawn redraws nothing (and so
    // leaves the keyboard focus and a drag in progress alone).
    if (this.signature(doc.id) === before) return;
    for (const resourceId of touched) this.redrawRow(resourceId);
    this.markDrawn();
  }

  /** What the bars of a booking show, as one string. */
  signature(bookingId) {
    const parts = [];
    for (const resourceId of this.rowsOfBooking.get(bookingId) || []) {
      for (const e of this.entries.get(resourceId) || []) {
        if (e.booking_id === bookingId) parts.push([resourceId, e.reservation_id, e.starts_at, e.ends_at, e.title, e.status, e.label].join("|"));
      }
    }
    return parts.sort().join("\n");
  }

  /** Whether a booking has a bar in view. */
  shows(bookingId) {
    return this.rowsOfBooking.has(bookingId);
  }

  entryOf(bookingId) {
    for (const resourceId of this.rowsOfBooking.get(bookingId) || []) {
      const entry = (this.entries.get(resourceId) || []).find((e) => e.booking_id === bookingId);
      if (entry) return entry;
    }
    return null;
  }

  // --- navigation -----------------------------------------------------------

  setView(view) {
    this.view = view;
    return this.loadSchedules();
  }

  shift(direction) {
    this.anchor = addDays(this.anchor, direction * (this.view === "week" ? 7 : 1));
    return this.loadSchedules();
  }

  today() {
    this.anchor = new Date();
    return this.loadSchedules();
  }

  goTo(date) {
    this.anchor = new Date(date);
    return this.loadSchedules();
  }

  setFilter(filter) {
    this.filter = { ...this.filter, ...filter };
    return this.loadSchedules({ onlyMissing: true });
  }

  title() {
    return formatWindowTitle(this.view, this.window.from);
  }

  // --- drawing -------------------------------------------------------------

  columns() {
    const { from } = this.window;
    if (this.view === "week") {
      return Array.from({ length: 7 }, (_, i) => {
        const day = addDays(from, i);
        return { label: formatDay(day), at: day };
      });
    }
    return Array.from({ length: 24 }, (_, i) => {
      const at = new Date(from.getTime());
      at.setHours(i, 0, 0, 0);
      return { label: formatTime(at), at };
    });
  }

  /** Position of an instant as a percentage of the window. */
  pct(ms) {
    const { from, to } = this.window;
    const span = to.getTime() - from.getTime();
    return Math.min(100, Math.max(0, ((ms - from.getTime()) / span) * 100));
  }

  draw() {
    const columns = this.columns();
    this.grid.dataset.view = this.view;
    this.grid.style.setProperty("--columns", String(columns.length));
    const head = document.createDocumentFragment();
    head.append(el("div", "tl-corner", "Resource"));
    const scale = el("div", "tl-scale");
    for (const column of columns) {
      const cell = el("div", "tl-col", column.label);
      if (this.view === "week" && column.at.toDateString() === new Date().toDateString()) cell.classList.add("tl-today");
      scale.append(cell);
    }
    head.append(scale);
    this.head.replaceChildren(head);

    const visible = this.visibleResources();
    const rows = document.createDocumentFragment();
    if (visible.length === 0) {
      rows.append(el("p", "tl-empty", this.resources.length ? "No resource matches the filter." : "No resources yet. Register one through POST /v1/resources."));
    }
    for (const resource of visible) rows.append(this.buildRow(resource));
    this.body.replaceChildren(rows);
    this.restoreFocusStop();
    this.markDrawn();
  }

  redrawRow(resourceId, { keepFocus = true } = {}) {
    const old = this.body.querySelector(`.tl-row[data-resource-id="${resourceId}"]`);
    const resource = this.resourceById.get(resourceId);
    if (!old || !resource) return;
    const hadFocus = old.contains(document.activeElement);
    const focused = hadFocus && document.activeElement.classList.contains("bar") ? document.activeElement.dataset.reservationId : null;
    const row = this.buildRow(resource);
    old.replaceWith(row);
    if (hadFocus) {
      // The focused bar was rebuilt: focus its successor (or the row).
      const again = (focused && row.querySelector(`.bar[data-reservation-id="${focused}"]`)) || row.querySelector(".tl-track");
      this.focusStop(again);
    } else if (keepFocus) this.restoreFocusStop();
  }

  buildRow(resource) {
    const shadingCache = this.shading;
    const { from, to } = this.window;
    const row = el("div", "tl-row");
    row.dataset.resourceId = resource.id;
    const label = el("div", "tl-label");
    label.append(el("span", "tl-name", resource.name));
    label.append(el("span", "tl-meta", [resource.kind, ...resource.tags].join(" · ")));
    const track = el("div", "tl-track");
    track.dataset.resourceId = resource.id;
    track.tabIndex = -1;
    track.setAttribute("role", "group");
    track.setAttribute("aria-label", `${resource.name}, ${resource.kind}${this.writable ? ": press Enter to book" : ""}`);

    // Working hours, computed once per (zone, hours) for the window.
    const shadingKey = `${resource.timezone}|${JSON.stringify(resource.working_hours)}`;
    let intervals = shadingCache.get(shadingKey);
    if (intervals === undefined) {
      intervals = workingIntervals(resource.working_hours, resource.timezone, from, to);
      shadingCache.set(shadingKey, intervals);
    }
    if (intervals === null) {
      track.classList.add("tl-always");
    } else {
      for (const [a, b] of intervals) {
        const band = el("div", "tl-work");
        band.style.setProperty("--left", `${this.pct(a)}%`);
        band.style.setProperty("--width", `${this.pct(b) - this.pct(a)}%`);
        track.append(band);
      }
    }

    // Bars and holds, each with its set-up and clean-up buffers, stacked
    // in lanes where what they occupy overlaps (capacity > 1).
    const { before, after } = buffersOf(resource);
    const claims = [];
    for (const entry of this.entries.get(resource.id) || []) claims.push(entry);
    for (const hold of this.holdsOf(resource.id)) claims.push(hold);
    const blocks = this.blocks.get(resource.id) || [];
    for (const block of blocks) claims.push(block);
    const laneEnds = [];
    const placed = claims
      .map((entry) => {
        const start = Date.parse(entry.starts_at);
        const end = Date.parse(entry.ends_at);
        // A cancelled booking no longer occupies anything; a block is the
        // calendar's own time, without buffers.
        const buffered = entry.status !== "cancelled" && entry.status !== "external";
        const pre = buffered ? before : 0;
        const post = buffered ? after : 0;
        return { entry, start, end, pre, post };
      })
      .sort((a, b) => a.start - a.pre - (b.start - b.pre));
    for (const claim of placed) {
      const { entry, start, end, pre, post } = claim;
      let lane = laneEnds.findIndex((laneEnd) => laneEnd <= start - pre);
      if (lane === -1) {
        lane = laneEnds.length;
        laneEnds.push(end + post);
      } else laneEnds[lane] = end + post;
      if (pre) track.append(this.buildBuffer("before", start - pre, start, lane, pre));
      if (post) track.append(this.buildBuffer("after", end, end + post, lane, post));
      if (entry.status === "held") track.append(this.buildHold(entry, resource, start, end, lane));
      else if (entry.status === "external") track.append(this.buildBlock(entry, resource, start, end, lane));
      else {
        // A booking that a block of the resource's own calendar meets (a
        // calendar.conflict): the booking stays, the planner decides.
        const meets = entry.status !== "cancelled" && blocks.some((b) => Date.parse(b.starts_at) < end && start < Date.parse(b.ends_at));
        track.append(this.buildBar(entry, resource, start, end, lane, pre, post, meets));
      }
    }
    row.style.setProperty("--lanes", String(Math.max(1, laneEnds.length)));
    row.append(label, track);
    return row;
  }

  /** Positions a bar-like element on its lane. */
  place(node, start, end, lane, minWidth = 0.15) {
    const left = this.pct(start);
    node.style.setProperty("--left", `${left}%`);
    node.style.setProperty("--width", `${Math.max(this.pct(end) - left, minWidth)}%`);
    node.style.setProperty("--lane", String(lane));
  }

  buildBar(entry, resource, start, end, lane, pre = 0, post = 0, meetsBlock = false) {
    const bar = el("button", `bar st-${STATUSES.includes(entry.status) ? entry.status : "unknown"}${meetsBlock ? " meets-block" : ""}`);
    bar.type = "button";
    bar.tabIndex = -1;
    bar.dataset.bookingId = entry.booking_id;
    bar.dataset.reservationId = entry.reservation_id;
    bar.dataset.start = String(start);
    bar.dataset.end = String(end);
    this.place(bar, start, end, lane);
    const when = formatRange(new Date(start), new Date(end));
    // The buffers are drawn beside the bar but told here, where a screen
    // reader hears the booking.
    const buffers = [pre ? `set-up ${formatDuration(pre)} before` : "", post ? `clean-up ${formatDuration(post)} after` : ""].filter(Boolean);
    const conflict = meetsBlock ? `${resource.name}'s own calendar is busy then` : "";
    const aside = [...buffers, conflict].filter(Boolean).map((part) => `, ${part}`).join("");
    bar.setAttribute("aria-label", `${entry.title}, ${statusLabel(entry.status)}, ${resource.name}, ${when}${aside}`);
    bar.title = `${entry.title} (${statusLabel(entry.status)})\n${when}${entry.label ? `\n${entry.label}` : ""}${buffers.length ? `\n${buffers.join(", ")}` : ""}${conflict ? `\nConflict: ${conflict}` : ""}`;
    bar.append(el("span", "bar-title", entry.title));
    return bar;
  }

  /** A set-up (`before`) or clean-up (`after`) buffer: a lighter extension of its bar. */
  buildBuffer(side, start, end, lane, ms) {
    const name = side === "before" ? "set-up" : "clean-up";
    const buffer = el("div", `tl-buffer tl-buffer-${side}`, name);
    buffer.setAttribute("aria-hidden", "true");
    buffer.title = `${side === "before" ? "Set-up" : "Clean-up"}: ${formatDuration(ms)}`;
    buffer.dataset.start = String(start);
    buffer.dataset.end = String(end);
    this.place(buffer, start, end, lane, 0);
    return buffer;
  }

  /** A hold: hatched, not a booking (nothing to open), gone when it expires. */
  buildHold(entry, resource, start, end, lane) {
    const expires = formatTime(new Date(entry.expires_at));
    const hold = el("div", "tl-hold");
    hold.dataset.holdId = entry.reservation_id;
    hold.dataset.start = String(start);
    hold.dataset.end = String(end);
    hold.dataset.expiresAt = String(Date.parse(entry.expires_at));
    hold.setAttribute("role", "img");
    const when = formatRange(new Date(start), new Date(end));
    hold.setAttribute("aria-label", `Hold on ${resource.name}, ${when}, expires ${expires}`);
    hold.title = `Hold · expires ${expires}\n${when}`;
    hold.append(el("span", "bar-title", `Hold · expires ${expires}`));
    this.place(hold, start, end, lane);
    return hold;
  }

  /**
   * A block of the resource's own calendar (an external calendar's busy
   * time): not a booking (nothing to open), titled only where its link
   * shows titles.
   */
  buildBlock(entry, resource, start, end, lane) {
    const block = el("div", "tl-block");
    block.dataset.blockId = entry.reservation_id;
    block.dataset.start = String(start);
    block.dataset.end = String(end);
    block.setAttribute("role", "img");
    const when = formatRange(new Date(start), new Date(end));
    const what = entry.title && entry.title !== "Busy" ? `: ${entry.title}` : "";
    block.setAttribute("aria-label", `Busy in ${resource.name}'s own calendar${what}, ${when}`);
    block.title = `Own calendar: busy${what}\n${when}`;
    block.append(el("span", "bar-title", entry.title || "Busy"));
    this.place(block, start, end, lane);
    return block;
  }

  /** Counts the bars and records when they were drawn (see the browser test). */
  markDrawn() {
    const bars = this.body.getElementsByClassName("bar").length;
    this.root.dataset.bars = String(bars);
    this.root.dataset.drawnAt = String(performance.now());
  }

  // --- keyboard: one tab stop, arrows move between bars and rows -----------

  stops() {
    return this.body.querySelectorAll(".tl-track, .bar");
  }

  restoreFocusStop(focused) {
    let stop = null;
    if (focused && focused.isConnected) stop = focused;
    if (!stop && this.focusKey) stop = this.body.querySelector(this.focusKey);
    if (!stop) stop = this.body.querySelector(".bar") || this.body.querySelector(".tl-track");
    for (const node of this.body.querySelectorAll('[tabindex="0"]')) node.tabIndex = -1;
    if (stop) stop.tabIndex = 0;
  }

  focusStop(node) {
    if (!node) return;
    for (const other of this.body.querySelectorAll('[tabindex="0"]')) other.tabIndex = -1;
    node.tabIndex = 0;
    node.focus();
    this.focusKey = node.classList.contains("bar")
      ? `.bar[data-reservation-id="${node.dataset.reservationId}"]`
      : `.tl-track[data-resource-id="${node.dataset.resourceId}"]`;
  }

  onKeyDown(event) {
    const target = event.target;
    if (!(target instanceof HTMLElement) || !(target.classList.contains("bar") || target.classList.contains("tl-track"))) return;
    const row = target.closest(".tl-row");
    const bars = [...row.querySelectorAll(".bar")];
    const index = bars.indexOf(target);
    switch (event.key) {
      case "ArrowRight":
        this.focusStop(bars[index + 1] || bars[0] || row.querySelector(".tl-track"));
        break;
      case "ArrowLeft":
        this.focusStop(index > 0 ? bars[index - 1] : row.querySelector(".tl-track"));
        break;
      case "ArrowDown":
      case "ArrowUp": {
        const sibling = event.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling;
        if (!sibling || !sibling.classList.contains("tl-row")) return;
        const at = target.classList.contains("bar") ? Number(target.dataset.start) : this.window.from.getTime();
        const candidates = [...sibling.querySelectorAll(".bar")];
        const nearest = candidates.sort((a, b) => Math.abs(a.dataset.start - at) - Math.abs(b.dataset.start - at))[0];
        this.focusStop(nearest || sibling.querySelector(".tl-track"));
        break;
      }
      case "Home":
        this.focusStop(this.body.querySelector(".bar, .tl-track"));
        break;
      case "End": {
        const all = this.stops();
        this.focusStop(all[all.length - 1]);
        break;
      }
      case "Enter":
      case " ":
        if (target.classList.contains("tl-track") && this.writable) {
          const { from } = this.window;
          const start = new Date(Math.max(snap(new Date(), 60).getTime() + HOUR, from.getTime()));
          const inView = start < this.window.to ? start : new Date(from.getTime() + 9 * HOUR);
          this.callbacks.selectSlot({ resourceId: target.dataset.resourceId, from: inView, to: new Date(inView.getTime() + HOUR) });
        } else return;
        break;
      default:
        return;
    }
    event.preventDefault();
  }

  // --- pointer: select a free slot, drag a bar to move its booking ----------

  timeAt(track, clientX) {
    const box = track.getBoundingClientRect();
    const { from, to } = this.window;
    const ratio = Math.min(1, Math.max(0, (clientX - box.left) / box.width));
    return new Date(from.getTime() + ratio * (to.getTime() - from.getTime()));
  }

  /** Snapping step in minutes: 15 in the day view, 60 in the week view. */
  step() {
    return this.view === "day" ? 15 : 60;
  }

  onPointerDown(event) {
    if (event.button !== 0 || !this.writable) return;
    const bar = event.target.closest(".bar");
    const track = event.target.closest(".tl-track");
    if (!track) return;
    const startX = event.clientX;
    const pointer = event.pointerId;
    // A press on a bar's right edge resizes its reservation; elsewhere on
    // the bar it moves the whole booking.
    const resizing = bar !== null && startX >= bar.getBoundingClientRect().right - RESIZE_EDGE;
    let moved = false;
    let ghost = null;
    const range = (e) => {
      const delta = this.snapDelta(this.timeAt(track, e.clientX) - this.timeAt(track, startX));
      const start = Number(bar.dataset.start);
      const end = Number(bar.dataset.end);
      if (resizing) return [start, Math.max(end + delta, start + this.step() * MINUTE), delta];
      return [start + delta, end + delta, delta];
    };
    const move = (e) => {
      if (e.pointerId !== pointer) return;
      if (!moved && Math.abs(e.clientX - startX) < DRAG_THRESHOLD) return;
      if (!moved) {
        moved = true;
        track.setPointerCapture?.(pointer);
        ghost = el("div", bar ? "tl-ghost" : "tl-selection");
        ghost.setAttribute("aria-hidden", "true");
        track.append(ghost);
      }
      if (bar) {
        const [start, end] = range(e);
        ghost.style.setProperty("--left", `${this.pct(start)}%`);
        ghost.style.setProperty("--width", `${this.pct(end) - this.pct(start)}%`);
        ghost.style.setProperty("--lane", bar.style.getPropertyValue("--lane"));
        ghost.textContent = formatRange(new Date(start), new Date(end));
      } else {
        const [a, b] = this.selectionRange(track, startX, e.clientX);
        ghost.style.setProperty("--left", `${this.pct(a.getTime())}%`);
        ghost.style.setProperty("--width", `${this.pct(b.getTime()) - this.pct(a.getTime())}%`);
      }
    };
    const up = (e) => {
      if (e.pointerId !== pointer) return;
      this.root.removeEventListener("pointermove", move);
      this.root.removeEventListener("pointerup", up);
      this.root.removeEventListener("pointercancel", up);
      ghost?.remove();
      if (e.type === "pointercancel") return;
      if (bar && moved) {
        this.suppressClick = true;
        const [start, end, delta] = range(e);
        if (delta === 0) return;
        if (resizing) {
          this.callbacks.changeReservation({
            bookingId: bar.dataset.bookingId,
            reservationId: bar.dataset.reservationId,
            change: { starts_at: new Date(start).toISOString(), ends_at: new Date(end).toISOString() },
          });
        } else this.callbacks.moveBooking({ bookingId: bar.dataset.bookingId, deltaMs: delta });
      } else if (!bar) {
        this.suppressClick = true;
        const [a, b] = moved
          ? this.selectionRange(track, startX, e.clientX)
          : [snap(this.timeAt(track, startX), this.step()), null];
        const to = b || new Date(a.getTime() + HOUR);
        this.callbacks.selectSlot({ resourceId: track.dataset.resourceId, from: a, to });
      }
    };
    this.root.addEventListener("pointermove", move);
    this.root.addEventListener("pointerup", up);
    this.root.addEventListener("pointercancel", up);
  }

  snapDelta(ms) {
    const step = this.step() * MINUTE;
    return Math.round(ms / step) * step;
  }

  selectionRange(track, x1, x2) {
    const step = this.step();
    const a = snap(this.timeAt(track, Math.min(x1, x2)), step);
    let b = snap(this.timeAt(track, Math.max(x1, x2)), step);
    b = new Date(b.getTime() + step * MINUTE);
    return [a, b];
  }

  onClick(event) {
    if (this.suppressClick) {
      this.suppressClick = false;
      if (event.detail > 0) return; // a real pointer click that ended a drag
    }
    const bar = event.target.closest(".bar");
    if (bar) {
      this.focusStop(bar);
      this.callbacks.openBooking(bar.dataset.bookingId);
    }
  }
}
