// The build page: while the build is queued or running, fetch new log lines
// and the status every second and show them. The page works without this.
(function () {
  "use strict";
  var section = document.getElementById("build");
  if (!section || section.dataset.final === "true") return;
  var log = document.getElementById("build-log");
  var next = parseInt(section.dataset.next, 10) || 0;
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
        status.className = "tag status-" + page.status;
        if (page.started_at) document.getElementById("build-started").textContent = page.started_at;
        if (page.final) {
          document.getElementById("build-finished").textContent = page.finished_at || "";
          document.getElementById("build-reason").textContent = page.reason +
            (page.exit_code !== null ? " (exit code " + page.exit_code + ")" : "");
          var live = document.getElementById("build-live");
          if (live) live.textContent = "This build is " + page.status + ".";
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
