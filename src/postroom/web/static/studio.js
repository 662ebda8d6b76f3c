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

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-presets]").forEach(fillFromPresets);
    document.querySelectorAll("form[data-live-preview]").forEach(livePreview);
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () {
        select.form.submit();
      });
    });
  });
})();
