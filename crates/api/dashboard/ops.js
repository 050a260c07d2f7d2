// Operations (admin): projections, jobs with retry of dead letters,
// webhooks and their deliveries.

import { ApiProblem } from "./api.js";
import { act, el } from "./dom.js";
import { formatDateTime } from "./time.js";

/** A table with a caption, headers and rows of cells (strings or nodes). */
function table(caption, headers, rows) {
  const wrap = el("div", "table-wrap");
  const t = el("table");
  t.append(el("caption", "visually-hidden", caption));
  const head = el("thead");
  const hr = el("tr");
  for (const h of headers) {
    const th = el("th", "", h);
    th.scope = "col";
    hr.append(th);
  }
  head.append(hr);
  const body = el("tbody");
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) {
      const td = el("td");
      if (cell instanceof Node) td.append(cell);
      else td.textContent = cell ?? "—";
      tr.append(td);
    }
    body.append(tr);
  }
  t.append(head, body);
  wrap.append(t);
  return wrap;
}

const when = (t) => (t ? formatDateTime(new Date(t)) : "—");

export class Operations {
  /** @param {object} ctx `api`, `announce` */
  constructor(ctx) {
    this.ctx = ctx;
    this.projections = document.getElementById("projections");
    this.jobs = document.getElementById("jobs");
    this.jobStatus = document.getElementById("jobs-status");
    this.webhooks = document.getElementById("webhooks");
    this.deliveries = document.getElementById("deliveries");
    document.getElementById("ops-refresh").addEventListener("click", () => this.load());
    this.jobStatus.addEventListener("change", () => this.loadJobs());
    this.jobs.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-retry]");
      if (b) this.retry(b);
    });
    this.webhooks.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-webhook]");
      if (b) this.loadDeliveries(b.dataset.webhook, b.dataset.url);
    });
  }

  load() {
    return Promise.all([this.loadProjections(), this.loadJobs(), this.loadWebhooks()]);
  }

  async guarded(target, what, run) {
    target.setAttribute("aria-busy", "true");
    if (!target.childElementCount) target.replaceChildren(el("p", "loading", `Loading ${what}…`));
    try {
      await run();
    } catch (error) {
      target.replaceChildren(el("p", "error", `Could not load ${what}: ${error instanceof ApiProblem ? error.message : error}`));
    } finally {
      target.removeAttribute("aria-busy");
    }
  }

  loadProjections() {
    return this.guarded(this.projections, "projections", async () => {
      const { projections } = await this.ctx.api.get("/v1/projections");
      if (!projections.length) {
        this.projections.replaceChildren(el("p", "muted", "No projection has run yet."));
        return;
      }
      const rows = projections.map((p) => {
        const state = el("span", `state state-${p.state}`, p.state);
        const cells = [p.name, String(p.position), String(p.head), String(p.lag_events), state, when(p.updated_at)];
        if (p.error) cells[4] = el("span", "state state-failed", `${p.state} at ${p.failed_position}: ${p.error}`);
        return cells;
      });
      this.projections.replaceChildren(table("Projections", ["Name", "Position", "Head", "Lag (events)", "State", "Updated"], rows));
    });
  }

  loadJobs() {
    return this.guarded(this.jobs, "jobs", async () => {
      const query = new URLSearchParams({ limit: "50" });
      if (this.jobStatus.value) query.set("status", this.jobStatus.value);
      const page = await this.ctx.api.get(`/v1/jobs?${query}`);
      if (!page.items.length) {
        this.jobs.replaceChildren(el("p", "muted", "No jobs with that status."));
        return;
      }
      const rows = page.items.map((j) => {
        let action = "";
        if (j.status === "dead") {
          const b = el("button", "small", "Retry");
          b.type = "button";
          b.dataset.retry = j.id;
          b.setAttribute("aria-label", `Retry job ${j.id}`);
          action = b;
        }
        return [j.kind, j.status, `${j.attempts}/${j.max_attempts}`, when(j.run_at), j.last_error || "—", action];
      });
      this.jobs.replaceChildren(table("Jobs", ["Kind", "Status", "Attempts", "Runs at", "Last error", "Action"], rows));
    });
  }

  async retry(b) {
    await act(b, async () => {
      try {
        await this.ctx.api.request("POST", `/v1/jobs/${b.dataset.retry}/retry`);
        this.ctx.announce("The job is queued again.");
        await this.loadJobs();
      } catch (error) {
        this.ctx.announce(`Retry failed: ${error.message}`, true);
      }
    });
  }

  loadWebhooks() {
    return this.guarded(this.webhooks, "webhooks", async () => {
      const page = await this.ctx.api.get("/v1/webhooks?limit=200");
      if (!page.items.length) {
        this.webhooks.replaceChildren(el("p", "muted", "No webhook subscriptions."));
        return;
      }
      const rows = page.items.map((w) => {
        const b = el("button", "small", "Deliveries");
        b.type = "button";
        b.dataset.webhook = w.id;
        b.dataset.url = w.url;
        b.setAttribute("aria-label", `Deliveries to ${w.url}`);
        return [w.url, w.event_types.join(", "), when(w.created_at), b];
      });
      this.webhooks.replaceChildren(table("Webhooks", ["URL", "Event types", "Created", "Action"], rows));
    });
  }

  loadDeliveries(id, url) {
    return this.guarded(this.deliveries, "deliveries", async () => {
      const page = await this.ctx.api.get(`/v1/webhooks/${id}/deliveries?limit=50`);
      const heading = el("h3", "", `Deliveries to ${url}`);
      if (!page.items.length) {
        this.deliveries.replaceChildren(heading, el("p", "muted", "No deliveries yet."));
        return;
      }
      const rows = page.items.map((d) => [
        d.event_type,
        String(d.event_position),
        d.status,
        String(d.attempts),
        d.last_status_code ? String(d.last_status_code) : "—",
        d.last_error || "—",
        when(d.delivered_at || d.created_at),
      ]);
      this.deliveries.replaceChildren(
        heading,
        table(`Deliveries to ${url}`, ["Event", "Position", "Status", "Attempts", "Last status", "Last error", "At"], rows),
      );
      this.deliveries.querySelector("h3").tabIndex = -1;
      this.deliveries.querySelector("h3").focus();
    });
  }
}
