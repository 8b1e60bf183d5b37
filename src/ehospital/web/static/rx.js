// The prescription pad's drug search: type a name, pick a drug, its code fills the line.
// Progressive enhancement only: without JavaScript the code is typed, or picked on the search page.
(function () {
  "use strict";
  var DELAY_MS = 200;

  function setSelect(select, value) {
    if (select && value && select.querySelector("option[value='" + value + "']")) {
      select.value = value;
    }
  }

  function attach(input) {
    var url = input.getAttribute("data-drug-search");
    var line = input.getAttribute("data-line");
    var label = document.getElementById(input.getAttribute("data-label"));
    var list = document.createElement("ul");
    list.className = "suggest";
    list.hidden = true;
    list.setAttribute("role", "listbox");
    list.id = "suggest-" + line;
    input.setAttribute("aria-controls", list.id);
    input.parentNode.appendChild(list);
    var timer = null;
    var asked = "";

    function close() {
      list.hidden = true;
      list.textContent = "";
    }

    function choose(drug) {
      input.value = drug.code;
      if (label) {
        label.textContent = drug.label;
      }
      setSelect(document.getElementById("rx-route_" + line), drug.route);
      setSelect(document.getElementById("rx-dose_unit_" + line), drug.unit);
      close();
      var dose = document.getElementById("rx-dose_" + line);
      if (dose) {
        dose.focus();
      }
    }

    function show(drugs) {
      list.textContent = "";
      drugs.forEach(function (drug) {
        var li = document.createElement("li");
        var button = document.createElement("button");
        button.type = "button";
        button.setAttribute("role", "option");
        button.setAttribute("data-code", drug.code);
        button.textContent = drug.label + " — " + drug.code;
        button.addEventListener("click", function () { choose(drug); });
        li.appendChild(button);
        list.appendChild(li);
      });
      list.hidden = drugs.length === 0;
    }

    function search() {
      var q = input.value.trim();
      if (q.length < 2 || q === asked) {
        if (q.length < 2) {
          close();
        }
        return;
      }
      asked = q;
      fetch(url + "?q=" + encodeURIComponent(q), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : { drugs: [] }; })
        .then(function (body) {
          if (input.value.trim() === q) {
            show(body.drugs || []);
          }
        })
        .catch(close);
    }

    input.addEventListener("input", function () {
      if (label) {
        label.textContent = "";
      }
      clearTimeout(timer);
      timer = setTimeout(search, DELAY_MS);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        close();
      } else if (event.key === "ArrowDown" && !list.hidden) {
        event.preventDefault();
        var first = list.querySelector("button");
        if (first) {
          first.focus();
        }
      }
    });
    list.addEventListener("keydown", function (event) {
      var current = document.activeElement;
      if (!current || current.tagName !== "BUTTON") {
        return;
      }
      var item = current.parentNode;
      if (event.key === "ArrowDown" && item.nextSibling) {
        event.preventDefault();
        item.nextSibling.firstChild.focus();
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        (item.previousSibling ? item.previousSibling.firstChild : input).focus();
      } else if (event.key === "Escape") {
        close();
        input.focus();
      }
    });
    document.addEventListener("click", function (event) {
      if (event.target !== input && !list.contains(event.target)) {
        close();
      }
    });
  }

  document.querySelectorAll("input[data-drug-search]").forEach(attach);
  // With the script the search page link is not needed.
  document.querySelectorAll(".no-js-search").forEach(function (link) { link.hidden = true; });
})();
