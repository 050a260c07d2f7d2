// The planners' dashboard: sign-in, views, and the wiring between the
// timeline, the booking dialogs, the finder, operations and the live stream.

import { Api, ApiProblem, canWrite, forgetKey, rememberKey, storedKey, whoAmI } from "./api.js";
import { Bookings } from "./booking.js";
import { fillSelect } from "./dom.js";
import { Finder } from "./finder.js";
import { Meet } from "./meet.js";
import { LiveStream } from "./live.js";
import { Operations } from "./ops.js";
import { Timeline } from "./timeline.js";
import { Waitlist } from "./waitlist.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["timeline", "finder", "meet", "waitlist", "ops"];
/** Above this many changed bookings at once, re-read the window instead. */
const BULK_REFRESH = 40;
const ROLE_LABELS = { admin: "Admin", planner: "Planner", analyst: "Analyst (read-only)" };

const app = {
  api: null,
  role: null,
  timeline: null,
  bookings: null,
  finder: null,
  meet: null,
  waitlist: null,
  ops: null,
  live: null,
  keyId: null,
  dirty: new Map(),
  flushTimer: null,
  flushing: false,
  resourcesTimer: null,
};

function announce(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("is-error", isError);
}

function resourceName(id) {
  const r = app.timeline?.resourceById.get(id);
  return r ? r.name : `resource ${String(id).slice(0, 8)}`;
}

/** Waits until the browser has painted what was just drawn. */
function afterPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}

// --- sign-in -----------------------------------------------------------------

async function signIn(key, startedAt) {
  const form = $("signin-form");
  const error = $("signin-error");
  const submit = form.querySelector("button");
  submit.disabled = true;
  error.textContent = "";
  announce("Signing in…");
  const api = new Api(key);
  // Both questions at once: who the key is must not delay the timeline.
  const mePromise = whoAmI(api);
  mePromise.catch(() => {});
  // Pools for "any room" and finding a time; a page without them still works.
  const poolsPromise = api.all("/v1/pools").catch(() => []);
  let resources;
  try {
    resources = await api.all("/v1/resources");
  } catch (e) {
    submit.disabled = false;
    forgetKey();
    error.textContent = e instanceof ApiProblem ? e.message : String(e);
    announce("");
    $("api-key").focus();
    return false;
  }
  let role;
  try {
    const me = await mePromise;
    role = me.role;
    // Status history names this key "you".
    app.keyId = me.key_id ? String(me.key_id) : null;
  } catch (e) {
    role = "analyst";
    announce(`Could not tell the key's role (${e.message}); showing read-only.`, true);
  }
  rememberKey(key);
  app.api = api;
  app.role = role;
  api.onUnauthorized = (problem) => signOut(`Signed out: ${problem.detail}`);
  setUpSession(resources, await poolsPromise);
  submit.disabled = false;
  form.reset();
  // The form is gone: put the keyboard at the top of what replaced it.
  $("timeline-heading").focus();
  try {
    await app.timeline.loadSchedules();
    await afterPaint();
    if (startedAt !== undefined) {
      const ms = performance.now() - startedAt;
      if (app.timeline.firstScreenAt !== undefined) $("timeline").dataset.firstScreenMs = (app.timeline.firstScreenAt - startedAt).toFixed(0);
      $("timeline").dataset.drawnMs = ms.toFixed(0);
      performance.mark("muster:bars-drawn");
      performance.measure("muster:sign-in-to-bars", "muster:sign-in", "muster:bars-drawn");
    }
    announce(`Signed in as ${ROLE_LABELS[role]}. ${app.timeline.visibleResources().length} resources, ${$("timeline").dataset.bars} bookings in view.`);
  } catch (e) {
    announce(`Could not load the timeline: ${e.message}`, true);
  }
  return true;
}

function signOut(message) {
  app.live?.stop();
  forgetKey();
  if (message) sessionStorage.setItem("muster.signoutMessage", message);
  // A fresh page forgets every piece of state of the session.
  location.replace(location.pathname);
}

function setUpSession(resources, pools) {
  const writable = canWrite(app.role);
  document.body.dataset.role = app.role;
  $("role-badge").textContent = ROLE_LABELS[app.role];
  for (const node of document.querySelectorAll(".writer-only")) node.hidden = !writable;
  $("nav-ops").hidden = app.role !== "admin";
  $("nav").hidden = false;
  $("session").hidden = false;
  $("signin-view").hidden = true;

  app.timeline = new Timeline($("timeline"), {
    api: app.api,
    writable,
    openBooking: (id) => app.bookings.openDetail(id),
    selectSlot: (slot) => app.bookings.openCreate(slot),
    moveBooking: ({ bookingId, deltaMs }) => app.bookings.moveBy(bookingId, deltaMs),
    changeReservation: ({ bookingId, reservationId, change }) => app.bookings.changeReservation(bookingId, reservationId, change),
  });
  app.timeline.resources = resources;
  app.timeline.resourceById = new Map(resources.map((r) => [r.id, r]));
  const ctx = { api: app.api, writable, admin: app.role === "admin", timeline: app.timeline, announce, resourceName, keyId: app.keyId, pools };
  app.bookings = new Bookings(ctx);
  app.finder = new Finder({ ...ctx, bookings: app.bookings });
  app.meet = new Meet({ ...ctx, bookings: app.bookings });
  app.waitlist = new Waitlist({ ...ctx, bookings: app.bookings });
  if (app.role === "admin") app.ops = new Operations(ctx);
  fillFilters();
  wireToolbar();

  app.live = new LiveStream(app.api, { onEvent: onLiveEvent, onState: showLiveState });
  app.live.start();
  route();
}

function fillFilters() {
  fillSelect($("filter-kind"), app.timeline.kinds(), "All kinds");
  fillSelect($("filter-tag"), app.timeline.tags(), "All tags");
}

async function redraw(work) {
  try {
    await work();
    $("timeline-heading").textContent = app.timeline.title();
    const a = app.timeline.anchor;
    $("goto-date").value = `${a.getFullYear()}-${String(a.getMonth() + 1).padStart(2, "0")}-${String(a.getDate()).padStart(2, "0")}`;
  } catch (e) {
    announce(`Could not load the timeline: ${e.message}`, true);
  }
}

function wireToolbar() {
  const view = $("timeline-view");
  view.addEventListener("click", (e) => {
    const target = e.target.closest("button");
    if (!target) return;
    if (target.dataset.setView) {
      for (const b of view.querySelectorAll("[data-set-view]")) b.setAttribute("aria-pressed", String(b === target));
      redraw(() => app.timeline.setView(target.dataset.setView));
    } else if (target.dataset.shift) {
      redraw(() => app.timeline.shift(Number(target.dataset.shift)));
    } else if (target.hasAttribute("data-today")) {
      redraw(() => app.timeline.today());
    } else if (target.id === "new-booking") {
      app.bookings.openCreate({});
    }
  });
  $("goto-date").addEventListener("change", (e) => {
    if (e.target.value) redraw(() => app.timeline.goTo(new Date(`${e.target.value}T12:00`)));
  });
  $("filter-kind").addEventListener("change", (e) => redraw(() => app.timeline.setFilter({ kind: e.target.value })));
  $("filter-tag").addEventListener("change", (e) => redraw(() => app.timeline.setFilter({ tag: e.target.value })));
  $("timeline-heading").textContent = app.timeline.title();
}

// --- views -------------------------------------------------------------------

function route(event) {
  if (!app.api) return;
  let view = location.hash.replace("#", "") || "timeline";
  if (!VIEWS.includes(view) || (view === "ops" && app.role !== "admin")) view = "timeline";
  for (const name of VIEWS) $(`${name}-view`).hidden = name !== view;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "finder") app.finder.prepare();
  if (view === "meet") app.meet.prepare();
  if (view === "waitlist") app.waitlist.prepare();
  else app.waitlist.hide();
  if (view === "ops") app.ops.load();
  if (view === "timeline") $("timeline-heading").textContent = app.timeline.title();
  // A view chosen from the navigation takes the keyboard to its heading.
  if (event) $(`${view}-heading`).focus();
}

// --- live --------------------------------------------------------------------

function showLiveState(state, detail) {
  const node = $("live-state");
  node.dataset.state = state;
  node.textContent = state === "live" ? "Live" : state === "connecting" ? "Connecting…" : `Offline${detail ? ` — ${detail}` : ""}`;
}

/**
 * One event of the feed. Bookings are re-read, holds drawn from the event
 * itself, and a deployment of the open booking re-reads its list; any
 * other stream or type (series, types newer than this page) changes
 * nothing here.
 */
function onLiveEvent(event) {
  if (!event || typeof event !== "object") return;
  if (event.stream_type === "booking") {
    app.dirty.set(event.stream_id, Math.max(app.dirty.get(event.stream_id) || 0, event.position));
    clearTimeout(app.flushTimer);
    app.flushTimer = setTimeout(flushLive, 50);
  } else if (event.stream_type === "resource") {
    clearTimeout(app.resourcesTimer);
    app.resourcesTimer = setTimeout(async () => {
      await redraw(() => app.timeline.reloadResources());
      fillFilters();
    }, 200);
  } else if (event.stream_type === "hold") {
    if (event.type === "hold.placed" && event.data) app.timeline.applyHold({ id: event.stream_id, ...event.data });
    else if (["hold.released", "hold.converted", "hold.expired"].includes(event.type)) app.timeline.removeHold(event.stream_id);
    app.bookings.onHoldEvent(event);
  } else if (event.stream_type === "deployment") {
    app.bookings.onDeploymentEvent(event);
  } else if (event.stream_type === "waitlist") {
    app.waitlist.onEvent(event);
  } else if (event.stream_type === "calendar") {
    // An external calendar's blocks changed: read the window again.
    clearTimeout(app.calendarTimer);
    app.calendarTimer = setTimeout(() => redraw(() => app.timeline.loadSchedules()), 200);
  }
}

/** Applies the changed bookings; one run at a time, so a flood of events costs a few window reads, not one per burst. */
async function flushLive() {
  if (app.flushing) return; // the run in progress picks these up after it
  app.flushing = true;
  const batch = app.dirty;
  app.dirty = new Map();
  try {
    if (batch.size > BULK_REFRESH) {
      await redraw(() => app.timeline.loadSchedules());
    } else {
      await Promise.all(
        [...batch].map(([id, position]) =>
          app.bookings.refresh(id, position).catch((e) => {
            // A booking of another window or just gone: nothing to draw.
            if (!(e instanceof ApiProblem) || e.status >= 500 || e.status === 0) console.warn("live refresh failed", e);
          }),
        ),
      );
    }
  } finally {
    app.flushing = false;
    if (app.dirty.size) flushLive();
  }
}

// --- start -------------------------------------------------------------------

function start() {
  const form = $("signin-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      $("signin-error").textContent = "Enter an API key.";
      return;
    }
    performance.clearMarks();
    performance.clearMeasures();
    performance.mark("muster:sign-in");
    signIn(key, performance.now());
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", route);
  const message = sessionStorage.getItem("muster.signoutMessage");
  if (message) {
    sessionStorage.removeItem("muster.signoutMessage");
    announce(message);
  }
  const key = storedKey();
  if (key) {
    performance.mark("muster:sign-in");
    signIn(key, performance.now());
  }
}

start();
