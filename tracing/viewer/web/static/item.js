// Queue item actions: POST with the bearer token typed in (kept for this
// tab only, in sessionStorage); the result is shown as text.
(function () {
  "use strict";
  var form = document.getElementById("actions");
  if (!form) { return; }
  var token = document.getElementById("token");
  var out = document.getElementById("action-result");
  token.value = sessionStorage.getItem("estafeta-token") || "";
  form.querySelectorAll("button[data-action]").forEach(function (b) {
    b.addEventListener("click", function () {
      sessionStorage.setItem("estafeta-token", token.value);
      out.textContent = b.dataset.action + "...";
      fetch(b.dataset.url, { method: "POST", headers: { "Authorization": "Bearer " + token.value, "Accept": "application/json" } })
        .then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
        .then(function (res) {
          var j = res[1];
          out.textContent = res[0] === 200 ? b.dataset.action + ": done" : b.dataset.action + " failed (" + res[0] + "): " + (j.error || "");
        })
        .catch(function (e) { out.textContent = b.dataset.action + " failed: " + e.message; });
    });
  });
})();
