// The portal's only script (no inline code: the CSP forbids it). It opens the
// dialogs htmx swaps in, puts focus in them and back on what opened them, closes
// them, holds a polling grid still while a tooltip in it is being read, marks
// plain forms busy while they post, and copies secrets to the clipboard.
"use strict";

// What opened the current dialog, and its id: the grids re-render every 2 s, so
// by the time the dialog closes the opener may be a new element with that id.
let opener = null;
let openerId = null;

function rememberOpener(element) {
  // A dialog replacing itself (a form with errors, the release form after
  // Connect) keeps the opener of the first one.
  if (!element || element.closest("dialog")) return;
  opener = element;
  openerId = element.id || null;
}

function returnFocus() {
  let element = opener && opener.isConnected ? opener : null;
  if (!element && openerId) element = document.getElementById(openerId);
  opener = null;
  openerId = null;
  if (element) element.focus();
}

// A form sent back with errors: its first wrong field. Otherwise the field or
// control the dialog marks (autofocus), the first field, the main button; the
// close button only when there is nothing else.
function firstControl(dialog) {
  return dialog.querySelector("[aria-invalid=true]")
    || dialog.querySelector("[autofocus]")
    || dialog.querySelector("input:not([type=hidden]):not([readonly]):not([disabled]), select:not([disabled]), textarea:not([disabled])")
    || dialog.querySelector(".modal-actions .primary")
    || dialog.querySelector("a[href]:not([data-close-dialog]), button:not([data-close-dialog]):not([disabled])")
    || dialog.querySelector("button");
}

function openSwappedDialog(event) {
  const dialog = event.detail.target.querySelector("dialog.modal");
  if (dialog && !dialog.open) {
    dialog.showModal();
    const first = firstControl(dialog);
    if (first) first.focus();
  }
}

function closeOpenDialog() {
  document.querySelectorAll("dialog.modal[open]").forEach((dialog) => dialog.close());
}

document.addEventListener("htmx:beforeRequest", (event) => {
  const detail = event.detail;
  const element = detail.elt;
  // A poll (no triggering event) waits while the pointer rests on something
  // whose tooltip is showing: re-rendering the grid would take the tooltip away.
  // Refreshes after a change (webhooks-changed, …) always go through.
  if (!detail.requestConfig.triggeringEvent && element.matches("[hx-trigger*='every']")
      && element.querySelector("[title]:hover, svg:hover")) {
    event.preventDefault();
    return;
  }
  if (detail.target && detail.target.id === "dialog-host") rememberOpener(element);
  if (element.matches("form, button, .button")) element.setAttribute("aria-busy", "true");
});

document.addEventListener("htmx:afterRequest", (event) => {
  event.detail.elt.removeAttribute("aria-busy");
});

document.addEventListener("htmx:afterSwap", openSwappedDialog);
document.body.addEventListener("close-dialog", closeOpenDialog);

document.addEventListener("click", (event) => {
  const closer = event.target.closest("[data-close-dialog]");
  if (closer && closer.closest("dialog")) {
    closer.closest("dialog").close();
    return;
  }
  const copier = event.target.closest("[data-copy]");
  if (copier) {
    const text = document.getElementById(copier.dataset.copy).textContent.trim();
    navigator.clipboard.writeText(text).then(() => { copier.textContent = "Copied"; });
  }
});

// A closed dialog (Escape, Cancel, ×, or a save) leaves the page, so the next one
// starts fresh, and focus goes back to what opened it — unless another dialog
// has taken its place meanwhile.
document.addEventListener("close", (event) => {
  const dialog = event.target;
  if (!dialog.matches("dialog.modal")) return;
  if (dialog.parentElement && dialog.parentElement.id === "dialog-host") dialog.remove();
  if (!document.querySelector("dialog.modal[open]")) returnFocus();
}, true);

// Plain (non-htmx) forms: busy while the next page loads, and their submit
// buttons off so a second click sends nothing twice. Disabled a moment later,
// once the browser has taken the form's data.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (event.defaultPrevented || form.hasAttribute("hx-post")) return;
  form.classList.add("is-submitting");
  form.setAttribute("aria-busy", "true");
  setTimeout(() => {
    form.querySelectorAll("button[type=submit]").forEach((button) => { button.disabled = true; });
  }, 0);
});

// Back to a page from the browser's cache: its forms are not busy any more.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  document.querySelectorAll("form.is-submitting").forEach((form) => {
    form.classList.remove("is-submitting");
    form.removeAttribute("aria-busy");
    form.querySelectorAll("button[type=submit]").forEach((button) => { button.disabled = false; });
  });
});
