// Canned replies in a conversation's message box. Typing "/" at the start
// of the box lists the tenant's canned replies whose shortcut matches what
// follows; the arrow keys choose, Enter (or a click) puts the reply's text
// in the box, Escape closes the list. The replies are read from the page's
// "Canned reply" form, which does the same without this script.
(function () {
  "use strict";
  var box = document.getElementById("message");
  var list = document.getElementById("canned-options");
  var select = document.getElementById("canned");
  if (!box || !list || !select) {
    return;
  }
  var replies = Array.prototype.map.call(select.options, function (o) {
    return { shortcut: o.getAttribute("data-shortcut") || "", text: o.getAttribute("data-text") || "" };
  });
  var MAX_SHOWN = 10;
  var shown = [];
  var active = -1;
  box.setAttribute("aria-autocomplete", "list");
  box.setAttribute("aria-controls", list.id);

  // What follows a "/" that starts the box, or null.
  function typed() {
    var m = /^\/([a-z0-9_-]*)$/.exec(box.value);
    return m ? m[1] : null;
  }

  function close() {
    list.hidden = true;
    list.textContent = "";
    shown = [];
    active = -1;
    box.removeAttribute("aria-activedescendant");
  }

  function highlight(i) {
    active = i;
    for (var j = 0; j < list.children.length; j++) {
      list.children[j].setAttribute("aria-selected", j === i ? "true" : "false");
    }
    if (i >= 0 && list.children[i]) {
      box.setAttribute("aria-activedescendant", list.children[i].id);
      list.children[i].scrollIntoView({ block: "nearest" });
    } else {
      box.removeAttribute("aria-activedescendant");
    }
  }

  function choose(i) {
    var reply = shown[i];
    if (!reply) {
      return;
    }
    box.value = reply.text;
    close();
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function open() {
    var q = typed();
    if (q === null) {
      close();
      return;
    }
    // Shortcuts that start with what was typed first, then those that
    // contain it.
    var starts = replies.filter(function (r) { return r.shortcut.indexOf(q) === 0; });
    var contains = replies.filter(function (r) { return r.shortcut.indexOf(q) > 0; });
    shown = starts.concat(contains).slice(0, MAX_SHOWN);
    if (shown.length === 0) {
      close();
      return;
    }
    list.textContent = "";
    shown.forEach(function (r, i) {
      var li = document.createElement("li");
      li.id = "canned-option-" + i;
      li.setAttribute("role", "option");
      var name = document.createElement("span");
      name.className = "shortcut";
      name.textContent = "/" + r.shortcut;
      li.appendChild(name);
      li.appendChild(document.createTextNode(" " + (r.text.length > 80 ? r.text.slice(0, 80) + "…" : r.text)));
      li.addEventListener("mousedown", function (e) {
        e.preventDefault();
        choose(i);
      });
      list.appendChild(li);
    });
    list.hidden = false;
    highlight(0);
  }

  box.addEventListener("input", open);
  box.addEventListener("blur", close);
  box.addEventListener("keydown", function (e) {
    if (list.hidden || shown.length === 0) {
      return;
    }
    if (e.key === "ArrowDown") {
      e.preventDefault();
      highlight((active + 1) % shown.length);
    } else if (e.key === "ArrowUp") {
      e.preventDefault();
      highlight((active - 1 + shown.length) % shown.length);
    } else if (e.key === "Enter") {
      e.preventDefault();
      choose(active < 0 ? 0 : active);
    } else if (e.key === "Escape") {
      e.preventDefault();
      close();
    } else if (e.key === "Tab") {
      close();
    }
  });
})();
