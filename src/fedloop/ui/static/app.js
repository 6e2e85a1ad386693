// fedloop dashboard: draws the server-rendered figures with plotly.js and keeps live pages fresh.
// No framework, no build step; every figure is JSON the server embedded or serves.
(function () {
  "use strict";
  var CONFIG = { responsive: true, displaylogo: false };

  function draw(el, figure) {
    if (!window.Plotly) { return; }
    window.Plotly.react(el, figure.data, figure.layout, CONFIG);
  }

  function drawEmbedded() {
    var nodes = document.querySelectorAll("[data-figure]");
    for (var i = 0; i < nodes.length; i++) {
      var source = document.getElementById(nodes[i].getAttribute("data-figure"));
      if (source) { draw(nodes[i], JSON.parse(source.textContent)); }
    }
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    return td;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) { return "–"; }
    return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(digits) : value;
  }

  function bytes(value) {
    var units = ["B", "kB", "MB", "GB"];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(value) < 1000 || i === units.length - 1) {
        return i === 0 ? value.toFixed(0) + " B" : value.toFixed(1) + " " + units[i];
      }
      value /= 1000;
    }
    return String(value);
  }

  function fillClients(rows) {
    var body = document.querySelector("#clients-table tbody");
    if (!body || !rows.length) { return; }
    body.textContent = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      [r.client, r.ok, r.dropped, r.last_round, r.last_status, r.examples, fmt(r.loss, 4),
        bytes(r.bytes_up), bytes(r.bytes_down), fmt(r.seconds, 3), r.reason].forEach(function (v) {
        tr.appendChild(cell(v));
      });
      body.appendChild(tr);
    });
  }

  function live(section) {
    var url = section.getAttribute("data-live");
    var every = parseInt(section.getAttribute("data-poll-ms"), 10) || 2000;
    var state = document.getElementById("live-state");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (answer) {
          if (!answer.ok) { throw new Error("HTTP " + answer.status); }
          return answer.json();
        })
        .then(function (doc) {
          Object.keys(doc.figures).forEach(function (key) {
            var el = document.getElementById("chart-" + key);
            if (el) { draw(el, doc.figures[key]); }
          });
          fillClients(doc.clients);
          var count = document.getElementById("round-count");
          if (count) { count.textContent = doc.rounds + (doc.planned ? " / " + doc.planned : ""); }
          section.setAttribute("data-status", doc.status);
          var badge = document.querySelector("#run-status .badge");
          if (badge) {
            badge.textContent = doc.status;
            badge.className = "badge status-" + doc.status;
          }
          section.setAttribute("data-polls", String(1 + (parseInt(section.getAttribute("data-polls"), 10) || 0)));
          if (doc.status === "running") {
            window.setTimeout(poll, every);
          } else if (state) {
            state.textContent = "run " + doc.status;
          }
        })
        .catch(function (err) {
          if (state) { state.textContent = "live updates paused (" + err.message + "); retrying"; }
          window.setTimeout(poll, every * 2);
        });
    }
    if (section.getAttribute("data-status") === "running") { window.setTimeout(poll, every); }
  }

  drawEmbedded();
  var sections = document.querySelectorAll("[data-live]");
  for (var i = 0; i < sections.length; i++) { live(sections[i]); }
})();
