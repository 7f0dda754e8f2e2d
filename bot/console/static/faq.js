// FAQ publication page: follows the running publication's progress, reloads when it ends.
(function () {
  "use strict";
  var box = document.querySelector("[data-publication]");
  if (!box) { return; }
  var url = "/faq/publish/" + box.getAttribute("data-publication");
  function poll() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (job) {
        if (!job) { return; }
        box.querySelector("[data-phase]").textContent = job.phase_label;
        box.querySelector("[data-message]").textContent = job.message;
        var bar = box.querySelector("[data-progress]");
        bar.value = Math.round(job.progress * 100);
        bar.textContent = bar.value + " %";
        if (job.status === "queued" || job.status === "running") { window.setTimeout(poll, 2000); }
        else { window.location.reload(); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 2000);
})();
