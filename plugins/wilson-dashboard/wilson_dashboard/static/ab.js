/* Blind A/B review: answers shown as A, B, C; the systems are revealed only after a pick.
   Captured text is hostile input: only textContent is ever set. */
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const prompt = document.getElementById("ab-prompt");
  const answersBox = document.getElementById("ab-answers");
  const status = document.getElementById("ab-status");
  const progress = document.getElementById("ab-progress");
  let item = null;
  let picked = false;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function answerText(answer) {
    const calls = answer.tool_calls.map((c) => `${c.name}(${JSON.stringify(c.arguments)})`);
    return [answer.content, ...calls].filter((part) => part).join("\n") || "(empty answer)";
  }

  function render() {
    prompt.replaceChildren();
    answersBox.replaceChildren();
    status.textContent = "";
    if (!item) {
      prompt.append(el("p", "ab-done", "Nothing left to review."));
      return;
    }
    progress.textContent = `${item.progress.picked} of ${item.progress.items} picked · set ${item.set}`;
    for (const message of item.messages) {
      if (message.role === "system") continue;
      const block = el("div", `ab-message role-${message.role}`);
      block.append(el("span", "ab-role", message.role), el("pre", "ab-text", String(message.content ?? "")));
      prompt.append(block);
    }
    for (const answer of item.answers) {
      const card = el("article", "ab-answer");
      card.dataset.slot = String(answer.slot);
      const head = el("header", "ab-label", `Answer ${answer.label}`);
      const system = el("span", "ab-system");
      system.hidden = true;
      head.append(system);
      card.append(head, el("pre", "ab-text", answerText(answer)));
      card.addEventListener("click", () => choose(answer.slot));
      answersBox.append(card);
    }
  }

  async function load() {
    picked = false;
    const response = await fetch("/api/ab/next", { headers: { accept: "application/json" } });
    const data = await response.json();
    if (!response.ok) {
      status.textContent = data.error || "could not load the next item";
      return;
    }
    item = data.item;
    render();
  }

  async function choose(slot) {
    if (!item || picked) return;
    picked = true;
    const response = await fetch(`/api/ab/${encodeURIComponent(item.id)}/pick`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify({ slot }),
    });
    const data = await response.json();
    if (!response.ok) {
      picked = false;
      status.textContent = data.error || "the pick was not saved";
      return;
    }
    for (const answer of data.answers) {
      const card = answersBox.querySelector(`[data-slot="${answer.slot}"]`);
      const system = card.querySelector(".ab-system");
      system.textContent = answer.system;
      system.hidden = false;
      card.classList.toggle("ab-chosen", slot === answer.slot);
    }
    progress.textContent = `${data.progress.picked} of ${data.progress.items} picked · set ${data.set}`;
    status.textContent = slot === null ? "Tie saved. N or Enter: next." :
      `Saved: ${data.pairs.length} preference pair(s). N or Enter: next.`;
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    const slots = { "1": 0, a: 0, "2": 1, b: 1, "3": 2, c: 2 };
    if (key in slots && item && slots[key] < item.answers.length) {
      choose(slots[key]);
    } else if ((key === "t" || key === "0") && item) {
      choose(null);
    } else if ((key === "n" || key === "enter") && picked) {
      load();
    }
  });
  load();
})();
