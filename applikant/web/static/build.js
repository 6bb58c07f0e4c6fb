// The build page: while the build is queued or running, fetch new log lines
// and the status every second and show them, worded and timed as the server
// words them (site.js: Applikant.time, Applikant.buildSummary). The page works
// without this.
(function () {
  "use strict";
  var section = document.getElementById("build");
  if (!section || section.dataset.final === "true") return;
  var log = document.getElementById("build-log");
  var next = parseInt(section.dataset.next, 10) || 0;
  function setTime(id, iso) {
    var el = document.getElementById(id);
    if (!el || !iso) return;
    el.textContent = "";
    el.appendChild(window.Applikant.timeElement(iso, true));
  }
  function poll() {
    fetch("/api/builds/" + section.dataset.build + "/log?after=" + next, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (page) {
        if (page.lines.length) {
          log.appendChild(document.createTextNode(
            page.lines.map(function (l) { return l[1] + "\n"; }).join("")));
          next = page.next;
        }
        var status = document.getElementById("build-status");
        status.textContent = page.status;
        status.className = "badge status-" + page.status;
        document.getElementById("build-summary").textContent =
          window.Applikant.buildSummary(page.status, page.started_at, page.finished_at);
        setTime("build-started", page.started_at);
        var live = document.getElementById("build-live");
        if (live && page.status === "running") live.textContent = "Running: the log grows here as it runs.";
        if (page.final) {
          setTime("build-finished", page.finished_at);
          document.getElementById("build-reason").textContent = page.reason +
            (page.exit_code !== null ? " (exit code " + page.exit_code + ")" : "");
          if (live) live.remove();
          var cancel = document.getElementById("build-cancel");
          if (cancel) cancel.form.remove();
          return;
        }
        setTimeout(poll, page.lines.length >= 5000 ? 0 : 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
