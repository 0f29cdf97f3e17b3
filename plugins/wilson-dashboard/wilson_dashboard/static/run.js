/* Run view: fold long texts (never cut them); the whole text stays in the page. */
"use strict";
for (const pre of document.querySelectorAll("pre.fold")) {
  const text = pre.textContent;
  const lines = text.split("\n").length;
  if (text.length <= 1200 && lines <= 18) continue;
  pre.classList.add("folded");
  const label = `Show all · ${text.length.toLocaleString()} chars, ${lines} lines`;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "unfold";
  button.textContent = label;
  button.addEventListener("click", () => {
    button.textContent = pre.classList.toggle("folded") ? label : "Fold";
  });
  pre.after(button);
}
