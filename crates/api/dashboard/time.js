// Time in two zones: the viewer's (the browser's own, which Date uses) for
// the columns, and each resource's IANA zone for its working hours,
// converted with Intl.DateTimeFormat.

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

export const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** Local midnight (viewer's zone) of the day holding `date`. */
export function startOfDay(date) {
  const d = new Date(date);
  d.setHours(0, 0, 0, 0);
  return d;
}

/** Local midnight of the Monday of `date`'s week. */
export function startOfWeek(date) {
  const d = startOfDay(date);
  const offset = (d.getDay() + 6) % 7;
  d.setDate(d.getDate() - offset);
  return d;
}

/** `date` moved by `days` calendar days in the viewer's zone (DST-safe). */
export function addDays(date, days) {
  const d = new Date(date);
  d.setDate(d.getDate() + days);
  return d;
}

/** The visible window of a view: `{ from, to }` as Dates. */
export function viewWindow(view, anchor) {
  if (view === "week") {
    const from = startOfWeek(anchor);
    return { from, to: addDays(from, 7) };
  }
  const from = startOfDay(anchor);
  return { from, to: addDays(from, 1) };
}

const formatters = new Map();
function formatter(key, make) {
  let f = formatters.get(key);
  if (!f) {
    f = make();
    formatters.set(key, f);
  }
  return f;
}

export function formatTime(date) {
  return formatter("time", () => new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" })).format(date);
}

export function formatDateTime(date) {
  return formatter("datetime", () =>
    new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }),
  ).format(date);
}

export function formatDay(date) {
  return formatter("day", () => new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short" })).format(date);
}

export function formatRange(from, to) {
  const sameDay = startOfDay(from).getTime() === startOfDay(to).getTime();
  return sameDay ? `${formatDateTime(from)}–${formatTime(to)}` : `${formatDateTime(from)} – ${formatDateTime(to)}`;
}

export function formatWindowTitle(view, from) {
  if (view === "day") {
    return formatter("title-day", () => new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" })).format(from);
  }
  const last = addDays(from, 6);
  const f = formatter("title-week", () => new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" }));
  return `Week of ${f.format(from)} – ${f.format(last)}`;
}

/** `YYYY-MM-DDTHH:MM` for an `<input type="datetime-local">`, viewer's zone. */
export function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** The instant an `<input type="datetime-local">` value means in the viewer's zone. */
export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** Rounds `ms` down to a multiple of `step` minutes (viewer's zone offsets are whole minutes). */
export function snap(date, stepMinutes) {
  const d = new Date(date);
  const minutes = d.getHours() * 60 + d.getMinutes();
  const snapped = Math.floor(minutes / stepMinutes) * stepMinutes;
  d.setHours(0, snapped, 0, 0);
  return d;
}

// --- a resource's zone ---------------------------------------------------

const WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

function zoneParts(zone) {
  return formatter(`parts:${zone}`, () =>
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    }),
  );
}

/** The wall-clock fields of instant `ms` in `zone`. */
function wallClock(ms, zone) {
  const fields = {};
  for (const part of zoneParts(zone).formatToParts(ms)) fields[part.type] = part.value;
  return {
    year: Number(fields.year),
    month: Number(fields.month),
    day: Number(fields.day),
    hour: Number(fields.hour) % 24,
    minute: Number(fields.minute),
    second: Number(fields.second),
  };
}

/** Offset of `zone` from UTC at instant `ms`, in ms. */
function zoneOffset(ms, zone) {
  const w = wallClock(ms, zone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - (ms - (ms % 1000));
}

/**
 * The instant of wall-clock time `minutes` after local midnight of the civil
 * date (y, m, d) in `zone`; `minutes` may be 1440, midnight of the next day.
 * A time the clocks skip (spring forward) stands for the instant they
 * jumped, the first wall-clock minute after it that exists; a time they
 * repeat (fall back) for its first occurrence, or with `occurrence` "last"
 * its second. The rule of `local_instant` in crates/domain/src/availability.rs.
 */
export function zonedToInstant(y, m, d, minutes, zone, occurrence = "first") {
  const wall = Date.UTC(y, m - 1, d, 0, minutes);
  // The instant lies within 14 h of `wall`; zones change offset at most
  // once in two days, so these two offsets are all it can have.
  const before = zoneOffset(wall - DAY, zone);
  const after = zoneOffset(wall + DAY, zone);
  if (before === after) return wall - before;
  const candidates = [wall - before, wall - after].filter((t, i) => zoneOffset(t, zone) === (i === 0 ? before : after));
  if (candidates.length > 0) return occurrence === "last" ? Math.max(...candidates) : Math.min(...candidates);
  // Skipped: `wall` read with the new offset is an instant still on the old
  // one, read with the old offset one already on the new; find the second
  // between them when the clocks jumped.
  let lo = wall - after;
  let hi = wall - before;
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
    if (zoneOffset(mid, zone) === before) lo = mid;
    else hi = mid;
  }
  return Math.ceil((hi + after) / MINUTE) * MINUTE - after;
}

function validZone(zone) {
  try {
    zoneParts(zone);
    return true;
  } catch {
    return false;
  }
}

/**
 * Working windows of a resource that overlap [from, to), as instants:
 * `[[startMs, endMs], ...]`, clipped to [from, to) and joined where they
 * touch (18:00–24:00 and the next day's 00:00–06:00 are one). A window
 * starts at the first occurrence of its start time and ends at the last of
 * its end time. `null` means always available (no working hours). The rule
 * of `working_periods` in crates/domain/src/availability.rs.
 */
export function workingIntervals(workingHours, zone, from, to) {
  if (!workingHours || workingHours.length === 0) return null;
  const tz = validZone(zone) ? zone : "UTC";
  const byDay = new Map();
  for (const w of workingHours) {
    const [sh, sm] = w.start.split(":").map(Number);
    const [eh, em] = w.end.split(":").map(Number);
    if (!byDay.has(w.weekday)) byDay.set(w.weekday, []);
    byDay.get(w.weekday).push([sh * 60 + sm, eh * 60 + em]);
  }
  const lower = from.getTime();
  const upper = to.getTime();
  const intervals = [];
  // Civil dates in the resource's zone, from the day before `from`'s to the
  // day after `to`'s: a window of one of them may reach into [from, to).
  const first = wallClock(lower, tz);
  const last = wallClock(upper, tz);
  const cursor = new Date(Date.UTC(first.year, first.month - 1, first.day - 1));
  const stop = Date.UTC(last.year, last.month - 1, last.day + 1);
  for (; cursor.getTime() <= stop; cursor.setUTCDate(cursor.getUTCDate() + 1)) {
    const y = cursor.getUTCFullYear();
    const m = cursor.getUTCMonth() + 1;
    const d = cursor.getUTCDate();
    for (const [start, end] of byDay.get(WEEKDAYS[cursor.getUTCDay()]) || []) {
      const a = Math.max(zonedToInstant(y, m, d, start, tz, "first"), lower);
      const b = Math.min(zonedToInstant(y, m, d, end, tz, "last"), upper);
      if (a < b) intervals.push([a, b]);
    }
  }
  intervals.sort((p, q) => p[0] - q[0]);
  const joined = [];
  for (const interval of intervals) {
    const previous = joined[joined.length - 1];
    if (previous && interval[0] <= previous[1]) previous[1] = Math.max(previous[1], interval[1]);
    else joined.push(interval);
  }
  return joined;
}

/**
 * Whether [from, to) lies within the working hours: inside one joined
 * working period. The rule of `ResourceRules::within_working_hours` in
 * crates/domain/src/policy.rs, which refuses a reservation outside them.
 */
export function withinWorkingHours(workingHours, zone, from, to) {
  const periods = workingIntervals(workingHours, zone, from, to);
  if (periods === null) return true;
  return periods.length === 1 && periods[0][0] === from.getTime() && periods[0][1] === to.getTime();
}

// --- durations (a resource's policy) ---------------------------------------

const DURATION = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

/** An ISO 8601 duration (`PT1H30M`, `P1D`) in ms; 0 for none or one it cannot read. */
export function parseDuration(iso) {
  const m = typeof iso === "string" ? DURATION.exec(iso) : null;
  if (!m) return 0;
  const [w, d, h, min, s] = m.slice(1).map((part) => Number(part || 0));
  return (w * 7 + d) * DAY + h * HOUR + min * MINUTE + s * 1000;
}

/** A length of time in words: "30 min", "1 h", "1 h 15 min", "1 day". */
export function formatDuration(ms) {
  if (ms >= DAY && ms % DAY === 0) return ms === DAY ? "1 day" : `${ms / DAY} days`;
  const hours = Math.floor(ms / HOUR);
  const minutes = Math.round((ms % HOUR) / MINUTE);
  return [hours ? `${hours} h` : "", minutes ? `${minutes} min` : ""].filter(Boolean).join(" ") || `${Math.round(ms / 1000)} s`;
}
