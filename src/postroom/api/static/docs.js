// Starts Swagger UI on the API's OpenAPI document. A file of its own, not an inline
// script: the page's Content-Security-Policy allows scripts from the service only.
"use strict";
(function () {
  var script = document.currentScript;
  window.ui = SwaggerUIBundle({
    url: script.dataset.openapi,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    displayRequestDuration: true,
    // Nothing leaves the service: no badge from the public validator.
    validatorUrl: null,
  });
})();
