// Starts ReDoc on /redoc with the node's OpenAPI document. ReDoc styles itself with <style>
// elements it adds; it gives them the nonce of this script's tag, which the page's
// Content-Security-Policy names, so the policy needs no style 'unsafe-inline'.
"use strict";
window.Redoc.init("/openapi.json", { nonce: document.currentScript.nonce }, document.getElementById("redoc"));
