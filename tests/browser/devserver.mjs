// The page from disk in front of a muster built before it: serves
// crates/api/dashboard at `/` and `/dashboard/{file}` with the same headers
// as crates/api/src/routes/dashboard.rs (reading the files on every
// request, so edits show at once), and proxies every other request (the
// streaming /v1/subscribe included) to a muster server. Used by
// `MUSTER_DASHBOARD_DEVSERVER=1 tests/browser/run`. No dependencies.
//
//   node devserver.mjs --listen 127.0.0.1:8090 --upstream http://127.0.0.1:8080

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, "..", "..", "crates", "api", "dashboard");

// Kept identical to routes/dashboard.rs.
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const JS = "text/javascript; charset=utf-8";
const ASSETS = {
  "index.html": "text/html; charset=utf-8",
  "styles.css": "text/css; charset=utf-8",
  "app.js": JS,
  "api.js": JS,
  "booking.js": JS,
  "dom.js": JS,
  "finder.js": JS,
  "live.js": JS,
  "ops.js": JS,
  "time.js": JS,
  "timeline.js": JS,
};

function serveAsset(name, req, res) {
  const type = ASSETS[name];
  if (!type) {
    res.writeHead(404, { "Content-Type": "application/problem+json" });
    res.end(JSON.stringify({ type: "urn:muster:problem:not-found", title: "Not Found", status: 404, detail: "dashboard file not found" }));
    return;
  }
  // Read on every request so that edits show without a restart.
  const body = readFileSync(join(ROOT, name));
  const etag = `"${createHash("sha256").update(body).digest("hex").slice(0, 24)}"`;
  const headers = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    ETag: etag,
  };
  const tags = (req.headers["if-none-match"] || "").split(",").map((t) => t.trim());
  if (tags.includes(etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, "Content-Type": type, "Content-Length": body.length });
  res.end(req.method === "HEAD" ? undefined : body);
}

function proxy(upstream, req, res) {
  const target = new URL(req.url, upstream);
  const outgoing = http.request(
    target,
    { method: req.method, headers: { ...req.headers, host: target.host }, agent: keepAlive },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      res.flushHeaders();
      answer.pipe(res);
    },
  );
  outgoing.on("error", () => {
    if (!res.headersSent) res.writeHead(502, { "Content-Type": "text/plain" });
    res.end();
  });
  // A browser that goes away (a closed live stream) ends the upstream call.
  res.on("close", () => outgoing.destroy());
  req.pipe(outgoing);
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Starts the server; resolves to its `http://host:port` once listening. */
export function startDevServer({ host = "127.0.0.1", port = 0, upstream }) {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if ((req.method === "GET" || req.method === "HEAD") && path === "/") return serveAsset("index.html", req, res);
    if ((req.method === "GET" || req.method === "HEAD") && path.startsWith("/dashboard/")) {
      return serveAsset(decodeURIComponent(path.slice("/dashboard/".length)), req, res);
    }
    return proxy(upstream, req, res);
  });
  return new Promise((resolve) => {
    server.listen(port, host, () => {
      const address = server.address();
      resolve({ url: `http://${host}:${address.port}`, close: () => server.close() });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = Object.fromEntries(
    process.argv
      .slice(2)
      .join(" ")
      .split("--")
      .filter(Boolean)
      .map((a) => a.trim().split(/\s+/)),
  );
  const [host, port] = (args.listen || "127.0.0.1:8090").split(":");
  if (!args.upstream) {
    console.error("usage: node devserver.mjs --listen HOST:PORT --upstream http://HOST:PORT");
    process.exit(2);
  }
  const { url } = await startDevServer({ host, port: Number(port), upstream: args.upstream });
  console.log(`dashboard on ${url}, API proxied to ${args.upstream}`);
}
