// The skin pages, progressively enhanced: every form works without JavaScript.
// - the upload button says the photo is being analysed (it takes a few seconds);
// - the framing guide highlights the last photo of the view chosen;
// - the dermatologist adds a lesion by clicking the photo and removes one by clicking its marker;
//   the corrected list travels in the review form's hidden "lesions" field as JSON
//   ([[x, y, radius, kind], …] in fractions of the photo's width and height).
(function () {
  "use strict";
  var SVG_NS = "http://www.w3.org/2000/svg";

  // --- the upload form ---------------------------------------------------------------------------
  var upload = document.getElementById("skin-upload-form");
  if (upload) {
    upload.addEventListener("submit", function () {
      var button = document.getElementById("upload-submit");
      if (button && button.getAttribute("data-busy")) {
        // After this event: a button disabled before the post would still post, but be safe.
        window.setTimeout(function () {
          button.disabled = true;
          button.textContent = button.getAttribute("data-busy");
        }, 0);
      }
    });
    var last = document.getElementById("last-photos");
    if (last) {
      upload.querySelectorAll("input[name=view]").forEach(function (radio) {
        radio.addEventListener("change", function () {
          last.querySelectorAll("li[data-view]").forEach(function (item) {
            item.classList.toggle("on", item.getAttribute("data-view") === radio.value);
          });
        });
      });
    }
  }

  // --- the lesion editor on the dermatologist's page ---------------------------------------------
  var stage = document.getElementById("stage");
  var svg = document.getElementById("marks");
  var field = document.getElementById("review-lesions");
  var editor = document.getElementById("editor");
  if (!stage || !svg || !field || !editor) {
    return;
  }
  var width = parseFloat(stage.getAttribute("data-width")) || 1;
  var height = parseFloat(stage.getAttribute("data-height")) || 1;
  var radius = parseFloat(stage.getAttribute("data-radius")) || 0.018;
  var removeLabel = stage.getAttribute("data-remove-label") || "{kind}";
  var initial = [];
  try {
    initial = JSON.parse(stage.getAttribute("data-lesions") || "[]");
  } catch (err) {
    initial = [];
  }
  var lesions = initial.slice();
  var undoStack = [];
  var count = document.getElementById("mark-count");
  var undoButton = document.getElementById("marks-undo");
  var resetButton = document.getElementById("marks-reset");
  var colours = {};
  var names = {};
  editor.querySelectorAll("input[name=add_kind]").forEach(function (radio) {
    colours[radio.value] = radio.getAttribute("data-colour");
    names[radio.value] = radio.getAttribute("data-name");
  });

  function chosenKind() {
    var checked = editor.querySelector("input[name=add_kind]:checked");
    return checked ? checked.value : "papule";
  }

  function round(value) {
    return Math.round(value * 100000) / 100000;
  }

  function draw(focusIndex) {
    while (svg.firstChild) {
      svg.removeChild(svg.firstChild);
    }
    var minimum = width * 0.006;
    lesions.forEach(function (lesion, index) {
      var circle = document.createElementNS(SVG_NS, "circle");
      circle.setAttribute("class", "skin-mark");
      circle.setAttribute("cx", (lesion.x * width).toFixed(1));
      circle.setAttribute("cy", (lesion.y * height).toFixed(1));
      circle.setAttribute("r", Math.max(minimum, lesion.r * width).toFixed(1));
      circle.setAttribute("stroke", colours[lesion.kind] || "#888888");
      circle.setAttribute("data-index", String(index));
      circle.setAttribute("data-kind", lesion.kind);
      circle.setAttribute("tabindex", "0");
      circle.setAttribute("role", "button");
      circle.setAttribute("aria-label", removeLabel.replace("{kind}", names[lesion.kind] || lesion.kind));
      var title = document.createElementNS(SVG_NS, "title");
      title.textContent = names[lesion.kind] || lesion.kind;
      circle.appendChild(title);
      svg.appendChild(circle);
    });
    if (count) {
      count.textContent = (count.getAttribute("data-template") || "{n}").replace("{n}", String(lesions.length));
    }
    if (typeof focusIndex === "number" && svg.childNodes.length) {
      var next = svg.childNodes[Math.min(focusIndex, svg.childNodes.length - 1)];
      if (next && next.focus) {
        next.focus();
      }
    }
  }

  function changed(focusIndex) {
    field.value = JSON.stringify(
      lesions.map(function (lesion) {
        return [round(lesion.x), round(lesion.y), round(lesion.r), lesion.kind];
      })
    );
    undoButton.disabled = undoStack.length === 0;
    draw(focusIndex);
  }

  function remember() {
    undoStack.push(lesions.slice());
  }

  function removeAt(index, refocus) {
    if (index < 0 || index >= lesions.length) {
      return;
    }
    remember();
    lesions.splice(index, 1);
    changed(refocus ? index : undefined);
  }

  svg.addEventListener("click", function (event) {
    var target = event.target;
    if (target && target.nodeName === "title") {
      target = target.parentNode;
    }
    if (target && target.getAttribute && target.getAttribute("class") === "skin-mark") {
      removeAt(parseInt(target.getAttribute("data-index"), 10), false);
      return;
    }
    var box = svg.getBoundingClientRect();
    if (!box.width || !box.height) {
      return;
    }
    var x = (event.clientX - box.left) / box.width;
    var y = (event.clientY - box.top) / box.height;
    if (x < 0 || x > 1 || y < 0 || y > 1) {
      return;
    }
    remember();
    lesions.push({ x: x, y: y, r: radius, kind: chosenKind() });
    changed();
  });

  svg.addEventListener("keydown", function (event) {
    var target = event.target;
    if (!target || !target.getAttribute || target.getAttribute("class") !== "skin-mark") {
      return;
    }
    if (event.key === "Enter" || event.key === " " || event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      removeAt(parseInt(target.getAttribute("data-index"), 10), true);
    }
  });

  undoButton.addEventListener("click", function () {
    if (undoStack.length) {
      lesions = undoStack.pop();
      changed();
      if (!undoStack.length) {
        field.value = field.defaultValue;
      }
    }
  });

  resetButton.addEventListener("click", function () {
    undoStack = [];
    lesions = initial.slice();
    field.value = field.defaultValue;
    undoButton.disabled = true;
    draw();
  });

  // Lesions are fractions of the photo: only its proportions matter, and those of the stored
  // (upright) image are the truth once it has loaded.
  var base = document.getElementById("photo-image");
  function fit() {
    if (base && base.naturalWidth && base.naturalHeight &&
        base.naturalWidth / base.naturalHeight !== width / height) {
      width = base.naturalWidth;
      height = base.naturalHeight;
      svg.setAttribute("viewBox", "0 0 " + width + " " + height);
      draw();
    }
  }
  if (base) {
    if (base.complete) {
      fit();
    } else {
      base.addEventListener("load", fit);
    }
  }

  editor.hidden = false;
  var legend = document.getElementById("photo-legend");
  if (legend) {
    legend.hidden = true; // the lesion type picker shows the same colours
  }
  stage.classList.add("editing");
  draw();
})();
