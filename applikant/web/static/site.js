// Small helpers for every page; each page works without them.
// - Copy buttons: <button class="copy" data-copy="ID"> copies the value of #ID.
// - Line links in code views: a click on a line number selects that line
//   (#L12), a shift-click a range (#L12-L20); the range is highlighted.
// - Applikant.timeElement / buildSummary: times and build states worded as the
//   server words them (timefmt.py, pages_builds.build_summary), for live updates.
(function () {
  "use strict";
  var UNITS = [[365 * 86400, "year"], [30 * 86400, "month"], [7 * 86400, "week"],
               [86400, "day"], [3600, "hour"], [60, "minute"]];
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function absolute(d) {
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }
  function relative(d) {
    var s = (Date.now() - d.getTime()) / 1000, future = s < 0;
    s = Math.abs(s);
    if (s < 45) return "just now";
    for (var i = 0; i < UNITS.length; i++) {
      if (s >= UNITS[i][0]) {
        var n = Math.floor(s / UNITS[i][0]);
        var words = n + " " + UNITS[i][1] + (n !== 1 ? "s" : "");
        return future ? "in " + words : words + " ago";
      }
    }
    return future ? "in 1 minute" : "1 minute ago";
  }
  function duration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
    var m = Math.floor((s % 3600) / 60);
    return Math.floor(s / 3600) + " h" + (m ? " " + m + " min" : "");
  }
  var WORDS = {queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed",
               "timed-out": "Timed out", cancelled: "Cancelled"};
  window.Applikant = {
    timeElement: function (iso, absoluteText) {
      var d = new Date(iso), el = document.createElement("time");
      el.setAttribute("datetime", iso);
      el.textContent = absoluteText ? absolute(d) : relative(d);
      el.title = absoluteText ? relative(d) : absolute(d);
      return el;
    },
    buildSummary: function (status, started, finished) {
      var words = WORDS[status] || status;
      if (!started || !finished) return words;
      var took = (new Date(finished) - new Date(started)) / 1000;
      return words + (status === "succeeded" ? " in " : " after ") + duration(took);
    }
  };

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy") : null;
    if (!button) return;
    var input = document.getElementById(button.dataset.copy);
    if (!input) return;
    function done() {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () {
        input.select(); document.execCommand("copy"); done();
      });
    } else {
      input.select(); document.execCommand("copy"); done();
    }
  });

  var anchor = 0;
  function markLines() {
    var rows = document.querySelectorAll("table.code tr.selected");
    for (var i = 0; i < rows.length; i++) rows[i].classList.remove("selected");
    var m = /^#L(\d+)(?:-L(\d+))?$/.exec(location.hash);
    if (!m) return;
    var a = parseInt(m[1], 10), b = m[2] ? parseInt(m[2], 10) : a;
    if (b < a) { var t = a; a = b; b = t; }
    for (var n = a; n <= b && n - a < 10000; n++) {
      var row = document.getElementById("L" + n);
      if (row) row.classList.add("selected");
    }
  }
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("td.ln a[href^='#L']") : null;
    if (!link) return;
    event.preventDefault();
    var n = parseInt(link.getAttribute("href").slice(2), 10);
    var hash = event.shiftKey && anchor ? "#L" + Math.min(anchor, n) + "-L" + Math.max(anchor, n) : "#L" + n;
    if (!event.shiftKey) anchor = n;
    history.replaceState(null, "", hash);
    markLines();
  });
  window.addEventListener("hashchange", markLines);
  document.addEventListener("DOMContentLoaded", function () {
    markLines();
    var m = /^#L(\d+)/.exec(location.hash);
    if (m) {
      anchor = parseInt(m[1], 10);
      var row = document.getElementById("L" + anchor);
      if (row) row.scrollIntoView({block: "center"});
    }
  });
})();
