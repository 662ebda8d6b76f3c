// Admin Studio: small progressive enhancements; every page works without them.
(function () {
  "use strict";

  function fillFromPresets(form) {
    var source = document.getElementById(form.getAttribute("data-presets"));
    var provider = form.querySelector("[name=provider]");
    if (!source || !provider) {
      return;
    }
    var presets = JSON.parse(source.textContent || "{}");
    provider.addEventListener("change", function () {
      var preset = presets[provider.value];
      if (!preset) {
        return; // custom: keep what is typed
      }
      form.querySelector("[name=host]").value = preset.host;
      form.querySelector("[name=port]").value = String(preset.port);
      form.querySelector("[name=security]").value = preset.security;
    });
  }

  function livePreview(form) {
    var button = document.getElementById("preview-button");
    if (!button || typeof form.requestSubmit !== "function") {
      return;
    }
    var timer = null;
    function refresh() {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        form.requestSubmit(button);
      }, 400);
    }
    form.addEventListener("input", refresh);
    form.addEventListener("change", refresh);
    refresh();
  }


  // --- Live updates ----------------------------------------------------------------
  // Elements with data-live and an id are refreshed from the same URL every ~2 s. The
  // page stays usable without this: a reload shows the same content.
  var LIVE_EVERY = 2000;
  var LIVE_MAX_FAILURES = 5;
  var FIELDS = "input, select, textarea";
  var FOCUSABLE = "a[href], button, input, select, textarea, [tabindex]";

  function statusSummary(element) {
    // What a screen reader hears: the statuses shown, not every refreshed timestamp.
    var seen = {};
    element.querySelectorAll(".status").forEach(function (badge) {
      var text = (badge.textContent || "").trim();
      seen[text] = (seen[text] || 0) + 1;
    });
    return Object.keys(seen).sort().map(function (key) {
      return seen[key] + " " + key;
    }).join(", ");
  }

  function openDetails(element) {
    var open = [];
    element.querySelectorAll("details").forEach(function (details, index) {
      if (details.open) {
        open.push(index);
      }
    });
    return open;
  }

  var SCROLLERS = ".table-wrap, .chart-wrap";

  // Where the user had scrolled the wide tables and the chart to, kept across an update.
  function scrollPositions(element) {
    return Array.prototype.map.call(element.querySelectorAll(SCROLLERS), function (scroller) {
      return scroller.scrollLeft;
    });
  }

  function focusIndex(element) {
    var active = document.activeElement;
    if (!active || !element.contains(active)) {
      return -1;
    }
    return Array.prototype.indexOf.call(element.querySelectorAll(FOCUSABLE), active);
  }

  // ``served`` holds each element's HTML as the server sent it: the page's own changes
  // (sort buttons, hidden rows) do not count as news.
  function liveUpdates(elements, served) {
    var status = document.getElementById("live-status");
    var failures = 0;
    var timer = null;
    var busy = false;

    function say(text, stopped) {
      if (!status) {
        return;
      }
      status.textContent = text;
      status.classList.toggle("stopped", Boolean(stopped));
    }

    function editing(element) {
      var active = document.activeElement;
      return active && active !== document.body && element.contains(active) &&
        active.matches(FIELDS);
    }

    function apply(fresh) {
      var changed = [];
      elements.forEach(function (element) {
        var next = fresh.getElementById(element.id);
        if (!next || editing(element) || next.innerHTML === served[element.id]) {
          return;
        }
        served[element.id] = next.innerHTML;
        var before = statusSummary(element);
        var open = openDetails(element);
        var scrolled = scrollPositions(element);
        var focused = focusIndex(element);
        element.innerHTML = next.innerHTML;
        element.querySelectorAll("details").forEach(function (details, index) {
          details.open = open.indexOf(index) >= 0;
        });
        enhance(element);
        element.querySelectorAll(SCROLLERS).forEach(function (scroller, index) {
          if (index < scrolled.length) {
            scroller.scrollLeft = scrolled[index];
          }
        });
        if (focused >= 0) {
          // A keyboard user keeps their place: the same link or button has the focus again.
          var again = element.querySelectorAll(FOCUSABLE)[focused];
          if (again) {
            again.focus({ preventScroll: true });
          }
        }
        var after = statusSummary(element);
        if (after !== before && after) {
          changed.push(after);
        }
      });
      if (changed.length) {
        say("Updated: " + changed.join("; ") + ".");
      }
    }

    function setBusy(on) {
      elements.forEach(function (element) {
        if (on) {
          element.setAttribute("aria-busy", "true");
        } else {
          element.removeAttribute("aria-busy");
        }
      });
    }

    function schedule(delay) {
      window.clearTimeout(timer);
      timer = window.setTimeout(tick, delay);
    }

    function tick() {
      if (document.hidden || busy) {
        return; // resumed by visibilitychange
      }
      busy = true;
      setBusy(true);
      fetch(window.location.href, {
        credentials: "same-origin",
        headers: { "X-Postroom-Live": "1" },
        cache: "no-store",
        redirect: "error"
      }).then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      }).then(function (html) {
        apply(new DOMParser().parseFromString(html, "text/html"));
        failures = 0;
        busy = false;
        setBusy(false);
        schedule(LIVE_EVERY);
      }).catch(function () {
        busy = false;
        setBusy(false);
        failures += 1;
        if (failures >= LIVE_MAX_FAILURES) {
          say("Live updates paused after repeated failures — reload the page to resume.", true);
          return;
        }
        // Back off: 4 s, 8 s, 16 s, ... so a struggling server is not hammered.
        schedule(LIVE_EVERY * Math.pow(2, failures));
      });
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && failures < LIVE_MAX_FAILURES) {
        schedule(200);
      }
    });
    schedule(LIVE_EVERY);
  }

  // --- Tables: wrapping, client-side sorting and filtering -----------------------------

  function wrapTables(root) {
    root.querySelectorAll("main table").forEach(function (table) {
      var parent = table.parentElement;
      if (!parent || parent.classList.contains("table-wrap")) {
        return;
      }
      var wrap = document.createElement("div");
      wrap.className = "table-wrap";
      // Focusable, so a keyboard can scroll a table wider than the screen.
      wrap.tabIndex = 0;
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", table.getAttribute("aria-label") || table.id || "Table");
      parent.insertBefore(wrap, table);
      wrap.appendChild(table);
    });
  }

  var DATE = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}/;
  var NUMBER = /^[-+]?[\d\s.,]*\d(\s*%)?$/;

  function sortValue(cell) {
    var text = (cell ? cell.textContent || "" : "").trim();
    if (DATE.test(text)) {
      return { kind: 1, value: Date.parse(text.slice(0, 19).replace(" ", "T") + "Z") || 0 };
    }
    if (NUMBER.test(text.replace(/^#/, ""))) {
      return { kind: 0, value: parseFloat(text.replace(/^#/, "").replace(/[\s,%]/g, "")) };
    }
    return { kind: 2, value: text.toLowerCase() };
  }

  function compare(a, b) {
    if (a.kind !== b.kind) {
      return a.kind - b.kind;
    }
    if (a.kind === 2) {
      return a.value.localeCompare(b.value);
    }
    return a.value - b.value;
  }

  var sortState = {};

  function sortBy(table, column, ascending) {
    var body = table.tBodies[0];
    if (!body) {
      return;
    }
    var rows = Array.prototype.slice.call(body.rows).filter(function (row) {
      return row.cells.length > column && !row.querySelector("td[colspan]");
    });
    rows.sort(function (x, y) {
      var order = compare(sortValue(x.cells[column]), sortValue(y.cells[column]));
      return ascending ? order : -order;
    });
    rows.forEach(function (row) {
      body.appendChild(row);
    });
    table.querySelectorAll("thead th").forEach(function (th, index) {
      if (index === column) {
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      } else if (th.hasAttribute("aria-sort")) {
        th.removeAttribute("aria-sort");
      }
    });
    if (table.id) {
      sortState[table.id] = { column: column, ascending: ascending };
    }
  }

  function sortable(table) {
    if (table.hasAttribute("data-sort-ready")) {
      return;
    }
    table.setAttribute("data-sort-ready", "");
    table.querySelectorAll("thead th").forEach(function (th, index) {
      if (th.hasAttribute("data-nosort") || !(th.textContent || "").trim()) {
        return;
      }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) {
        button.appendChild(th.firstChild);
      }
      th.appendChild(button);
      button.addEventListener("click", function () {
        sortBy(table, index, th.getAttribute("aria-sort") !== "ascending");
      });
    });
  }

  function filterRows(input) {
    var table = document.getElementById(input.getAttribute("data-filter-for"));
    if (!table || !table.tBodies[0]) {
      return;
    }
    var needle = input.value.trim().toLowerCase();
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var text = (row.textContent || "").toLowerCase();
      row.hidden = needle !== "" && text.indexOf(needle) < 0;
    });
  }

  // Enhances tables inside ``root``: after a live update the fresh rows get the same
  // sort order and filter the user had chosen.
  function enhance(root) {
    wrapTables(root);
    root.querySelectorAll("table[data-sortable]").forEach(function (table) {
      sortable(table);
      var state = table.id ? sortState[table.id] : null;
      if (state) {
        sortBy(table, state.column, state.ascending);
      }
    });
    document.querySelectorAll("input[data-filter-for]").forEach(filterRows);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-presets]").forEach(fillFromPresets);
    document.querySelectorAll("form[data-live-preview]").forEach(livePreview);
    var live = Array.prototype.slice.call(document.querySelectorAll("[data-live][id]"));
    var served = {};
    live.forEach(function (element) {
      served[element.id] = element.innerHTML;
    });
    enhance(document);
    // The chart's newest minutes are on the right: show them first on a narrow screen.
    document.querySelectorAll(".chart-wrap").forEach(function (wrap) {
      wrap.scrollLeft = wrap.scrollWidth;
    });
    document.querySelectorAll("input[data-filter-for]").forEach(function (input) {
      input.addEventListener("input", function () {
        filterRows(input);
      });
    });
    if (live.length && window.fetch && window.DOMParser) {
      liveUpdates(live, served);
    }
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        select.form.submit();
      });
    });
  });
})();
