// The live parts of claritycast's pages, in plain JavaScript; each page works without it.
// - A pull (Test & Connect, Refresh now): its groups arrive one by one from the server-sent
//   events of /api/v1/sources/{id}/pulls/{pull}/events; if the stream fails, the poll
//   endpoint is read every second instead.
// - A delivery being sent: its page reloads once the delivery log says it is final.
// - A chart wider than a phone scrolls sideways in its box: that box takes the focus, so
//   the arrow keys scroll it too (only while it scrolls: no idle stops on a desktop).
"use strict";

function showGroup(row, group) {
  const badge = row.querySelector(".outcome .badge");
  const kind = group.outcome === "stored" ? "ok" : group.outcome === "pending" ? "wait" : "bad";
  badge.className = "badge " + kind;
  badge.textContent = group.outcome;
  row.querySelector(".detail").textContent = group.detail || "";
}

function followPull(section) {
  const finish = () => {
    document.getElementById("pull-waiting").hidden = true;
    document.getElementById("pull-done").hidden = false;
    section.dataset.done = "true";
  };
  const update = (group) => {
    const row = section.querySelector('tr[data-group="' + CSS.escape(group.group) + '"]');
    if (row) showGroup(row, group);
  };
  const poll = async () => {
    const answer = await fetch(section.dataset.poll, { headers: { Accept: "application/json" } });
    if (answer.ok) {
      const pull = await answer.json();
      pull.groups.forEach(update);
      if (pull.done) return finish();
    }
    setTimeout(poll, 1000);
  };
  if (!window.EventSource) return poll();
  const events = new EventSource(section.dataset.events);
  events.addEventListener("group", (event) => update(JSON.parse(event.data)));
  events.addEventListener("done", () => { events.close(); poll(); });
  events.onerror = () => { events.close(); poll(); };
}

function followDelivery(section) {
  const check = async () => {
    const answer = await fetch(section.dataset.poll, { headers: { Accept: "application/json" } });
    if (answer.ok) {
      const delivery = await answer.json();
      if (["sent", "failed", "skipped"].includes(delivery.state)) return window.location.reload();
    }
    setTimeout(check, 1000);
  };
  setTimeout(check, 1000);
}

function focusWhereScrolling() {
  for (const box of document.querySelectorAll(".chart-scroll")) {
    if (box.scrollWidth > box.clientWidth) box.setAttribute("tabindex", "0");
    else box.removeAttribute("tabindex");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  focusWhereScrolling();
  window.addEventListener("resize", focusWhereScrolling);
  const pull = document.getElementById("pull");
  if (pull && pull.dataset.done === "false") followPull(pull);
  const delivery = document.getElementById("delivery");
  if (delivery && delivery.dataset.final === "false") followDelivery(delivery);
});
