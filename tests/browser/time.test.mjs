// The dashboard's working-hours rule (crates/api/dashboard/time.js) against
// the cases the domain's rule passes too (crates/domain/tests/time_cases.rs),
// so the timeline shades the hours the write side enforces. No browser and
// no server: `node --test tests/browser/time.test.mjs` (tests/browser/run
// runs it first). time.js is an ES module without a package.json of its
// own, so this needs Node's module syntax detection (Node >= 20.19).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { withinWorkingHours, workingIntervals } from "../../crates/api/dashboard/time.js";

const { cases } = JSON.parse(readFileSync(new URL("../../crates/domain/tests/time_cases.json", import.meta.url), "utf8"));

const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");

test("the shared file has cases, each asking one question", () => {
  assert.ok(cases.length > 0);
  for (const c of cases) assert.equal(("periods" in c) + ("within" in c), 1, c.name);
});

for (const c of cases) {
  test(c.name, () => {
    const from = new Date(c.range.starts_at);
    const to = new Date(c.range.ends_at);
    if ("periods" in c) {
      // Empty working hours mean "always" (null here); the domain answers
      // that only through `within`, so the file asks it only there.
      assert.ok(c.working_hours.length > 0, "a periods case needs working hours");
      const got = workingIntervals(c.working_hours, c.timezone, from, to).map(([a, b]) => ({ starts_at: iso(a), ends_at: iso(b) }));
      assert.deepEqual(got, c.periods);
    } else {
      assert.equal(withinWorkingHours(c.working_hours, c.timezone, from, to), c.within);
    }
  });
}
