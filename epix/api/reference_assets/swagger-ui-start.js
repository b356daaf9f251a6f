// Starts Swagger UI on /docs with the node's OpenAPI document. A file of the node rather than
// an inline script, so the page's Content-Security-Policy needs no 'unsafe-inline'.
"use strict";
window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
});
