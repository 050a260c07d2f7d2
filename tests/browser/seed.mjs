// Talks to muster's API from the test (as "another client" would) and
// seeds data, a dozen requests at a time.

import { randomUUID } from "node:crypto";

export class Client {
  constructor(base, key) {
    this.base = base;
    this.key = key;
  }

  async request(method, path, body) {
    const headers = { Authorization: `Bearer ${this.key}` };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Idempotency-Key"] = randomUUID();
    }
    const response = await fetch(this.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = new Error(`${method} ${path}: ${response.status} ${data && data.detail}`);
      error.status = response.status;
      error.problem = data;
      throw error;
    }
    return data;
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body = {}) {
    return this.request("POST", path, body);
  }

  /** DELETE with an Idempotency-Key (a command without a body). */
  async del(path) {
    const response = await fetch(this.base + path, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${this.key}`, "Idempotency-Key": randomUUID() },
    });
    if (!response.ok) throw new Error(`DELETE ${path}: ${response.status} ${await response.text()}`);
    return response.json();
  }

  resource(name, kind, { timezone = "UTC", hours = [], tags = [], capacity = 1, policy } = {}) {
    const body = { name, kind, timezone, working_hours: hours, tags, capacity };
    if (policy) body.policy = policy;
    return this.post("/v1/resources", body);
  }

  /** A hold on a resource: `{ id, expires_at, … }`. */
  hold(resourceId, startsAt, endsAt, ttl = "PT5M") {
    return this.post("/v1/holds", {
      resource_id: resourceId,
      starts_at: new Date(startsAt).toISOString(),
      ends_at: new Date(endsAt).toISOString(),
      ttl,
    });
  }

  booking(title, resourceId, startsAt, endsAt, client = { name: "Test Client", email: "client@example.com" }) {
    const starts_at = new Date(startsAt).toISOString();
    const ends_at = new Date(endsAt).toISOString();
    return this.post("/v1/bookings", {
      title,
      client,
      starts_at,
      ends_at,
      headcount: 10,
      reservations: [{ resource_id: resourceId, starts_at, ends_at }],
    });
  }
}

/** Runs `task(i)` for i in 0..count, `parallel` at a time. */
export async function parallel(count, limit, task) {
  let next = 0;
  const results = new Array(count);
  await Promise.all(
    Array.from({ length: Math.min(limit, count) }, async () => {
      while (next < count) {
        const i = next;
        next += 1;
        results[i] = await task(i);
      }
    }),
  );
  return results;
}

export const weekdays = (start, end) => ["mon", "tue", "wed", "thu", "fri"].map((weekday) => ({ weekday, start, end }));

export const everyDay = (start, end) => ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].map((weekday) => ({ weekday, start, end }));

/** The instant (ms) of wall-clock `minutes` after midnight of y-m-d in `zone`. */
export function zonedTime(y, m, d, minutes, zone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric",
  });
  const offset = (ms) => {
    const f = Object.fromEntries(parts.formatToParts(ms).map((p) => [p.type, p.value]));
    return Date.UTC(Number(f.year), Number(f.month) - 1, Number(f.day), Number(f.hour) % 24, Number(f.minute)) - ms;
  };
  const guess = Date.UTC(y, m - 1, d, 0, minutes);
  return guess - offset(guess - offset(guess));
}
