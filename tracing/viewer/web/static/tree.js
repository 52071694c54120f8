// The live supervision tree: fetch the server-rendered (escaped) fragment
// every second and swap it in, keeping which supervisors were folded.
(function () {
  "use strict";
  var box = document.getElementById("tree");
  var stamp = document.getElementById("updated");
  if (!box) { return; }
  function folded() {
    var out = {};
    box.querySelectorAll("details.sup").forEach(function (d) { if (!d.open) { out[d.dataset.sup] = true; } });
    return out;
  }
  function refresh() {
    fetch(box.dataset.src, { headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        var closed = folded();
        box.innerHTML = html;
        box.querySelectorAll("details.sup").forEach(function (d) { if (closed[d.dataset.sup]) { d.open = false; } });
        stamp.textContent = "updated " + new Date().toLocaleTimeString();
        box.dataset.refreshes = String(Number(box.dataset.refreshes || 0) + 1);
      })
      .catch(function (e) { stamp.textContent = "update failed: " + e.message; })
      .finally(function () { setTimeout(refresh, 1000); });
  }
  setTimeout(refresh, 1000);
})();
