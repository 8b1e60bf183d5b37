// Progressive enhancement only: every page works without JavaScript.
(function () {
  "use strict";
  // On the new-consultation form, show only the clinics and doctors of the chosen centre.
  function filterByCentre(select, centre) {
    var changed = false;
    Array.prototype.forEach.call(select.querySelectorAll("optgroup, option[data-centre]"), function (el) {
      var show = !centre || el.getAttribute("data-centre") === centre;
      el.hidden = !show;
      el.disabled = !show;
      if (!show && el.tagName === "OPTION" && el.selected) {
        changed = true;
      }
    });
    if (changed) {
      select.value = "";
    }
  }
  document.querySelectorAll("select[data-filter-by]").forEach(function (select) {
    var source = document.getElementById(select.getAttribute("data-filter-by"));
    if (!source) {
      return;
    }
    var update = function () { filterByCentre(select, source.value); };
    source.addEventListener("change", update);
    update();
  });
})();
