// What every view builds its part of the page with: elements, buttons and
// selects, the guard that runs one user action at a time, and the words
// shown for a booking's status. Views import these from here and never from
// each other; app.js alone wires the views together.

import { newActionKey } from "./api.js";

/** A new `<tag>` with an optional class and text. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A `<button type="button">` labelled `label`. */
export function button(label, className = "") {
  const b = el("button", className, label);
  b.type = "button";
  return b;
}

/** Fills a `<select>` with `values` after an "any" option, keeping the choice when it is still there. */
export function fillSelect(select, values, anyLabel) {
  const current = select.value;
  const options = [new Option(anyLabel, "")];
  for (const v of values) options.push(new Option(v, v));
  select.replaceChildren(...options);
  if (values.includes(current)) select.value = current;
}

/**
 * Runs one user action: `run(idempotencyKey)` with the control disabled
 * while it is in flight. The key is made once, when the action starts.
 */
export async function act(control, run) {
  if (control.disabled) return undefined;
  const key = newActionKey();
  control.disabled = true;
  control.setAttribute("aria-busy", "true");
  try {
    return await run(key);
  } finally {
    control.disabled = false;
    control.removeAttribute("aria-busy");
  }
}

const STATUS_LABELS = {
  held: "Held",
  requested: "Requested",
  confirmed: "Confirmed",
  in_progress: "In progress",
  completed: "Completed",
  cancelled: "Cancelled",
};

/** The words for a booking (or hold) status, on pills, bars and announcements. */
export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}
