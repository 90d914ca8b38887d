// The portal's only script (no inline code: the CSP forbids it). It opens the
// dialogs htmx swaps in, closes them, and copies secrets to the clipboard.
"use strict";

function openSwappedDialog(event) {
  const dialog = event.detail.target.querySelector("dialog.modal");
  if (dialog && !dialog.open) {
    dialog.showModal();
    const first = dialog.querySelector("[autofocus]") || dialog.querySelector("input:not([type=hidden]), button");
    if (first) first.focus();
  }
}

function closeOpenDialog() {
  document.querySelectorAll("dialog.modal[open]").forEach((dialog) => dialog.close());
}

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

// A closed dialog leaves the page, so the next one starts fresh.
document.addEventListener("close", (event) => {
  if (event.target.matches("dialog.modal") && event.target.parentElement.id === "dialog-host") {
    event.target.remove();
  }
}, true);
