// The timeline: resources as rows, the viewer's time as columns. Each row
// has one absolutely positioned track holding its working-hours shading and
// its bars; rows are built in a DocumentFragment and swapped in at once.
// Bars get no listeners of their own: the timeline listens once (event
// delegation) for clicks, drags and keys.

import { ApiProblem } from "./api.js";
import {
  DAY,
  HOUR,
  MINUTE,
  addDays,
  formatDay,
  formatRange,
  formatTime,
  formatWindowTitle,
  snap,
  viewWindow,
  workingIntervals,
} from "./time.js";

const STATUSES = ["requested", "confirmed", "in_progress", "completed", "cancelled"];
const STATUS_LABELS = {
  requested: "Requested",
  confirmed: "Confirmed",
  in_progress: "In progress",
  completed: "Completed",
  cancelled: "Cancelled",
};
/** Parallel schedule reads (the browser allows 6 connections; one is the live stream). */
const PARALLEL_READS = 5;
/** Rows that fill a screen: when their bars are drawn the timeline is usable. */
const FIRST_SCREEN_ROWS = 30;
/** A press this close (px) to a bar's right edge resizes it. */
const RESIZE_EDGE = 6;
/** A drag shorter than this (px) is a click. */
const DRAG_THRESHOLD = 5;

export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Runs `task` over `items`, `limit` at a time. */
async function inPool(items, limit, task) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next];
      next += 1;
      await task(item);
    }
  });
  await Promise.all(workers);
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
    // resource id -> schedule entries in the current window
    this.entries = new Map();
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
   * Schedules of the visible resources for the window. The rows (names,
   * working hours) draw at once; each row's bars draw as its schedule
   * arrives, top rows (those in view) first, one batch per frame.
   */
  async loadSchedules({ onlyMissing = false } = {}) {
    const { from, to } = this.window;
    const key = `${from.toISOString()}/${to.toISOString()}`;
    if (this.loadedWindowKey !== key) {
      this.entries = new Map();
      this.shading = new Map();
      this.loadedWindowKey = key;
      onlyMissing = false;
    }
    const generation = ++this.loadGeneration;
    this.firstScreenAt = undefined;
    const wanted = this.visibleResources().filter((r) => !onlyMissing || !this.entries.has(r.id));
    this.root.setAttribute("aria-busy", "true");
    this.draw();
    const query = new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
    const pending = new Set();
    const firstScreen = Math.min(wanted.length, FIRST_SCREEN_ROWS);
    let loaded = 0;
    let frame = 0;
    let failure = null;
    const flush = () => {
      frame = 0;
      if (generation !== this.loadGeneration) return;
      for (const id of pending) this.redrawRow(id, { keepFocus: false });
      pending.clear();
      this.restoreFocusStop();
      this.markDrawn();
      if (loaded >= firstScreen && this.firstScreenAt === undefined) {
        this.firstScreenAt = performance.now();
        performance.mark("muster:first-screen");
      }
    };
    performance.mark("muster:schedules-start");
    await inPool(wanted, PARALLEL_READS, async (resource) => {
      if (failure || generation !== this.loadGeneration) return;
      let entries;
      try {
        entries = (await this.api.get(`/v1/resources/${resource.id}/schedule?${query}`)).entries;
      } catch (error) {
        // A resource retired or gone meanwhile draws as empty.
        if (error instanceof ApiProblem && error.status === 404) entries = [];
        else {
          failure = error;
          return;
        }
      }
      if (generation !== this.loadGeneration) return;
      this.entries.set(resource.id, entries);
      loaded += 1;
      pending.add(resource.id);
      // Rows in view draw as they come; the rest in one go at the end,
      // so that drawing does not slow down the reads.
      if (!frame && this.firstScreenAt === undefined) frame = requestAnimationFrame(flush);
    });
    if (generation !== this.loadGeneration) return false;
    cancelAnimationFrame(frame);
    flush();
    this.root.removeAttribute("aria-busy");
    if (failure) throw failure;
    this.reindex();
    performance.mark("muster:drawn");
    return true;
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

    // Bars, stacked in lanes where they overlap (capacity > 1).
    const laneEnds = [];
    for (const entry of this.entries.get(resource.id) || []) {
      const start = Date.parse(entry.starts_at);
      const end = Date.parse(entry.ends_at);
      let lane = laneEnds.findIndex((laneEnd) => laneEnd <= start);
      if (lane === -1) {
        lane = laneEnds.length;
        laneEnds.push(end);
      } else laneEnds[lane] = end;
      track.append(this.buildBar(entry, resource, start, end, lane));
    }
    row.style.setProperty("--lanes", String(Math.max(1, laneEnds.length)));
    row.append(label, track);
    return row;
  }

  buildBar(entry, resource, start, end, lane) {
    const bar = el("button", `bar st-${STATUSES.includes(entry.status) ? entry.status : "unknown"}`);
    bar.type = "button";
    bar.tabIndex = -1;
    bar.dataset.bookingId = entry.booking_id;
    bar.dataset.reservationId = entry.reservation_id;
    bar.dataset.start = String(start);
    bar.dataset.end = String(end);
    const left = this.pct(start);
    bar.style.setProperty("--left", `${left}%`);
    bar.style.setProperty("--width", `${Math.max(this.pct(end) - left, 0.15)}%`);
    bar.style.setProperty("--lane", String(lane));
    const when = formatRange(new Date(start), new Date(end));
    bar.setAttribute("aria-label", `${entry.title}, ${statusLabel(entry.status)}, ${resource.name}, ${when}`);
    bar.title = `${entry.title} (${statusLabel(entry.status)})\n${when}${entry.label ? `\n${entry.label}` : ""}`;
    bar.append(el("span", "bar-title", entry.title));
    return bar;
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

export { STATUSES, DAY };
