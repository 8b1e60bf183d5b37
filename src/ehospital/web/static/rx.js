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

  // The clinical check as the doctor types: the pad posts its fields (nothing is saved) and the
  // engine's findings replace the box above the form. Without the script the box shows the
  // check of the saved draft.
  function liveCheck(form) {
    var url = form.getAttribute("data-check-url");
    var box = document.getElementById("rx-clinical");
    if (!url || !box) {
      return;
    }
    var body = box.querySelector(".clinical-body");
    var timer = null;
    var sent = 0;

    function render(result) {
      body.textContent = "";
      if (!result.findings.length) {
        var none = document.createElement("p");
        none.className = "muted small";
        none.textContent = result.none;
        body.appendChild(none);
      } else {
        var list = document.createElement("ul");
        list.className = "findings";
        result.findings.forEach(function (f) {
          var li = document.createElement("li");
          li.setAttribute("data-severity", f.severity);
          var sev = document.createElement("span");
          sev.className = "sev sev-" + f.severity;
          sev.textContent = f.label;
          var source = document.createElement("span");
          source.className = "muted small";
          source.textContent = " · " + result.source_label + ": " + f.source;
          li.appendChild(sev);
          li.appendChild(document.createTextNode(" " + f.text));
          li.appendChild(source);
          list.appendChild(li);
        });
        body.appendChild(list);
      }
      box.hidden = false;
    }

    function check() {
      var mine = ++sent;
      fetch(url, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "application/json" }
      })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (result) {
          if (result && mine === sent) {
            render(result);
          }
        })
        .catch(function () {});
    }

    function soon() {
      clearTimeout(timer);
      timer = setTimeout(check, 400);
    }
    form.addEventListener("input", soon);
    form.addEventListener("change", soon);
  }

  document.querySelectorAll("input[data-drug-search]").forEach(attach);
  document.querySelectorAll("form[data-check-url]").forEach(liveCheck);
  // With the script the search page link is not needed.
  document.querySelectorAll(".no-js-search").forEach(function (link) { link.hidden = true; });
})();
