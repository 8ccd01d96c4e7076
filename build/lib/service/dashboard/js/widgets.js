// jobwire dashboard: Pieces more than one view uses: the stats hand-off, the confirm dialog, a card.

import { samples } from "./charts.js";
import { $, h, setText } from "./format.js";
import { page } from "./session.js";

export function onStats(queues) {
  page.stats = queues;
  samples.add(queues);
}

// ---- confirm dialog ---------------------------------------------------------------------------------

export function confirmDialog({ title, body, ok = "Confirm", danger = false }) {
  const dialog = $("#confirm");
  setText($("#confirm-title"), title);
  setText($("#confirm-body"), body);
  const okButton = $("#confirm-ok");
  setText(okButton, ok);
  okButton.className = `btn ${danger ? "btn-danger" : "btn-primary"}`;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    okButton.focus();
  });
}

// ---- a card: one titled section of a view ----------------------------------------------------------

export function card(title, ...children) {
  return h(
    "section",
    { class: "card", "aria-label": title },
    h("h2", { class: "card-title", text: title }),
    ...children,
  );
}
