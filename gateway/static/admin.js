// The operators' live page: every room's figures, refreshed every 2 s, with the last two
// minutes of the line and of the admission rate drawn. The admin key stays in this tab
// (sessionStorage) and goes only to this gateway's admin API.
(function () {
  "use strict";
  var KEY = "waitroom:admin-key";
  var form = document.getElementById("login");
  var board = document.getElementById("rooms");
  var note = document.getElementById("note");
  var history = {};  // room -> [{waiting, rate}]
  var timer = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function draw(canvas, points, field, color) {
    var ctx = canvas.getContext("2d");
    var w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    var max = Math.max.apply(null, points.map(function (p) { return p[field]; }).concat([1]));
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach(function (p, i) {
      var x = points.length > 1 ? (i / (points.length - 1)) * (w - 4) + 2 : w / 2;
      var y = h - 3 - (p[field] / max) * (h - 6);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = "#5b6470";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText("max " + (Math.round(max * 10) / 10), 4, 12);
  }

  function figure(label, value) {
    var box = el("div", "figure");
    box.appendChild(el("span", "value", String(value)));
    box.appendChild(el("span", "label", label));
    return box;
  }

  function render(rooms) {
    board.textContent = "";
    if (!rooms.length) board.appendChild(el("p", "fine", "No rooms yet."));
    rooms.forEach(function (r) {
      var f = r.figures, c = r.config;
      var h = history[r.room] = (history[r.room] || []).concat([{ waiting: f.waiting, rate: f.admit_rate }]).slice(-60);
      var card = el("section", "card");
      card.setAttribute("data-room", r.room);
      var head = el("h2", "", r.room + " ");
      head.appendChild(el("span", "badge " + c.status, c.status));
      card.appendChild(head);
      var row = el("div", "figures");
      row.appendChild(figure("waiting", f.waiting));
      row.appendChild(figure("admitted", f.admitted));
      row.appendChild(figure("active", f.active));
      row.appendChild(figure("admitted/s", f.admit_rate));
      row.appendChild(figure("outbox", f.outbox));
      card.appendChild(row);
      var used = el("div", "bar");
      used.setAttribute("role", "progressbar");
      used.setAttribute("aria-label", "units in use");
      used.setAttribute("aria-valuemin", "0");
      used.setAttribute("aria-valuemax", String(c.max_active));
      used.setAttribute("aria-valuenow", String(f.used_units));
      var fill = el("span");
      fill.style.width = Math.min(100, Math.round(100 * f.used_units / c.max_active)) + "%";
      used.appendChild(fill);
      card.appendChild(el("p", "fine", "units in use: " + f.used_units + " of " + c.max_active +
        " \u00b7 release rate " + c.release_rate + "/s \u00b7 admitted " + f.admitted_total +
        ", completed " + f.completed_total + ", expired " + f.expired_total + ", left " + f.left_total));
      card.appendChild(used);
      var charts = el("div", "charts");
      [["waiting", "#1f5f99", "people waiting"], ["rate", "#2e9d5b", "admitted per second"]].forEach(function (spec) {
        var wrap = el("figure");
        var canvas = el("canvas");
        canvas.width = 260; canvas.height = 60;
        canvas.setAttribute("aria-hidden", "true");
        wrap.appendChild(canvas);
        wrap.appendChild(el("figcaption", "", spec[2] + ", last 2 minutes"));
        charts.appendChild(wrap);
        draw(canvas, h, spec[0], spec[1]);
      });
      card.appendChild(charts);
      board.appendChild(card);
    });
  }

  function refresh() {
    var key = sessionStorage.getItem(KEY);
    fetch("/v1/admin/rooms", { headers: { "Authorization": "Bearer " + key, "Accept": "application/json" } })
      .then(function (r) {
        if (r.status === 401) { stop(); sessionStorage.removeItem(KEY); form.hidden = false; note.textContent = "That key was refused."; return null; }
        return r.json();
      })
      .then(function (body) {
        if (!body) return;
        note.textContent = "Updated " + new Date().toLocaleTimeString();
        render(body.rooms);
      })
      .catch(function () { note.textContent = "The gateway did not answer; trying again."; });
  }

  function start() { form.hidden = true; refresh(); timer = setInterval(refresh, 2000); }
  function stop() { if (timer) clearInterval(timer); timer = null; }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("key").value);
    start();
  });
  if (sessionStorage.getItem(KEY)) start();
})();
