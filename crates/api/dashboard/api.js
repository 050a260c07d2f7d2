// The dashboard's only way to muster: the public /v1 API with the signed-in
// key. Errors arrive as problem+json (RFC 9457) and are thrown as
// ApiProblem so that every view shows the server's own `detail`.

const KEY_STORAGE = "muster.apiKey";

/** A problem answered by the API (or a network failure, status 0). */
export class ApiProblem extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
  get conflicts() {
    return Array.isArray(this.problem.conflicts) ? this.problem.conflicts : [];
  }
}

/** The key kept for this browser tab only (sessionStorage). */
export function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function rememberKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

/** A fresh Idempotency-Key: one per user action, reused only by retries of it. */
export function newActionKey() {
  return crypto.randomUUID();
}

export class Api {
  constructor(key) {
    this.key = key;
    // Called with every 401, so the page can return to the sign-in form.
    this.onUnauthorized = null;
  }

  async request(method, path, { body, idempotencyKey, headers = {}, signal, keepalive = false } = {}) {
    const init = {
      method,
      headers: { Authorization: `Bearer ${this.key}`, Accept: "application/json", ...headers },
      signal,
      cache: "no-store",
      // Outlives the page (a hold released as the tab closes).
      keepalive,
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (idempotencyKey) init.headers["Idempotency-Key"] = idempotencyKey;
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiProblem(0, { title: "Network error", detail: "muster could not be reached; check the connection and try again." });
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { detail: text };
      }
    }
    if (!response.ok) {
      const problem = data && typeof data === "object" ? data : {};
      if (!problem.detail) problem.detail = `${response.status} ${response.statusText}`;
      if (response.status === 401 && this.onUnauthorized) this.onUnauthorized(problem);
      throw new ApiProblem(response.status, problem);
    }
    return data;
  }

  get(path, options) {
    return this.request("GET", path, options);
  }

  /** A command: always with an Idempotency-Key (the caller's, or a new one). */
  command(path, body = {}, idempotencyKey = newActionKey()) {
    return this.request("POST", path, { body, idempotencyKey });
  }

  /** Every item of a cursor-paginated list. */
  async all(path, params = {}, limit = 500) {
    const items = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ ...params, limit: String(limit) });
      if (cursor) query.set("cursor", cursor);
      const page = await this.get(`${path}?${query}`);
      items.push(...page.items);
      cursor = page.next_cursor || null;
    } while (cursor);
    return items;
  }
}

/**
 * Who the signed-in key is: `{ tenant, key_id, role }` from GET /v1/whoami
 * (every role may ask), where role is "admin", "planner" or "analyst".
 * The one place that decides what the page offers.
 */
export async function whoAmI(api) {
  const me = await api.get("/v1/whoami");
  if (!["admin", "planner", "analyst"].includes(me.role)) me.role = "analyst"; // an unknown role reads only
  return me;
}

export function canWrite(role) {
  return role === "admin" || role === "planner";
}
