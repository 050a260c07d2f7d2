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

  async request(method, path, { body, idempotencyKey, headers = {}, signal } = {}) {
    const init = {
      method,
      headers: { Authorization: `Bearer ${this.key}`, Accept: "application/json", ...headers },
      signal,
      cache: "no-store",
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
 * The signed-in key's role: "admin", "planner" or "analyst".
 *
 * The API has no "who am I" endpoint, so this asks two harmless questions:
 * an admin-only read (GET /v1/projections: 403 means not admin), then a
 * command with an empty body (POST /v1/bookings with {} and no
 * Idempotency-Key): the role check runs before the body is read, so an
 * analyst gets 403 and a writer gets 422 for the missing fields, and
 * nothing is written either way. Replace both with one GET once the API
 * says who the key is.
 */
export async function detectRole(api) {
  try {
    await api.get("/v1/projections");
    return "admin";
  } catch (error) {
    if (!(error instanceof ApiProblem) || error.status !== 403) throw error;
  }
  try {
    await api.request("POST", "/v1/bookings", { body: {} });
    // Not reachable with an empty body; treat a surprise as read-only.
    return "analyst";
  } catch (error) {
    if (!(error instanceof ApiProblem)) throw error;
    if (error.status === 403) return "analyst";
    if (error.status === 422 || error.status === 400) return "planner";
    throw error;
  }
}

export function canWrite(role) {
  return role === "admin" || role === "planner";
}
