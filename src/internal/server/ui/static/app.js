// Optional: every page works without it. Changing a select or the checkbox of the issues
// filter applies it at once, and "/" focuses the text filter.
(function () {
  var form = document.getElementById("filters");
  if (!form) return;
  form.querySelectorAll("select, input[type=checkbox]").forEach(function (el) {
    el.addEventListener("change", function () { form.submit(); });
  });
  var q = form.querySelector("input[name=q]");
  document.addEventListener("keydown", function (e) {
    if (e.key === "/" && document.activeElement !== q && !/INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)) {
      e.preventDefault();
      q.focus();
    }
  });
})();
