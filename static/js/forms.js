// Field errors next to the fields they name (the ticket and the dialogs alike).
import {$, $$} from "./dom.js";

export function clearErrors(root) {
  for (const node of $$(".field-error", root)) { node.textContent = ""; delete node.dataset.source; }
  for (const node of $$("[aria-invalid]", root)) node.removeAttribute("aria-invalid");
  for (const node of $$(".form-error", root)) node.textContent = "";
}

/** Put each {field: message} next to the field it names; unknown fields go to `fallback`. */
export function showErrors(root, errors, fallback) {
  let firstInput = null;
  for (const [field, message] of Object.entries(errors)) {
    const slot = $$(".field-error", root).find((n) => (n.dataset.for || "").split(" ").includes(field));
    if (slot && !slot.closest("[hidden]")) {
      slot.textContent = message;
      const box = slot.closest(".field");
      const input = box ? $("input, select", box) : null;
      if (input) {
        input.setAttribute("aria-invalid", "true");
        if (!firstInput) firstInput = input;
      }
    } else if (fallback) {
      fallback.textContent = fallback.textContent ? `${fallback.textContent} ${field}: ${message}` : `${field}: ${message}`;
    }
  }
  return firstInput;
}

/** The number in `input`: null when empty, NaN when it cannot be read (Chromium gives a number
 * field holding "9-5" or "1e" the value "", which read as empty left a bracket's stop out). */
export function numberOf(input) {
  if (input.validity && input.validity.badInput) return NaN;
  const text = String(input.value || "").trim();
  if (text === "") return null;
  const value = Number(text);
  return Number.isNaN(value) ? NaN : value;
}
