"use strict";
// The server renders and escapes the highlighted markup (persuasion.highlight); this only moves text around.
const text = document.getElementById("text");
const file = document.getElementById("file");
const button = document.getElementById("detect");
const statusLine = document.getElementById("status");
const result = document.getElementById("result");
const minScore = document.getElementById("min-score");
const minScoreValue = document.getElementById("min-score-value");

function showMinScore() { minScoreValue.textContent = Number(minScore.value).toFixed(2); }
minScore.addEventListener("input", () => { minScore.dataset.touched = "yes"; showMinScore(); });
// Start from the served model's own min_score (0 unless the server was given another), unless moved already.
fetch("healthz").then((response) => response.json()).then((health) => {
  if (typeof health.min_score === "number" && minScore.dataset.touched !== "yes") {
    minScore.value = health.min_score;
    showMinScore();
  }
}).catch(() => {});

function report(message, isError) {
  statusLine.textContent = message;
  statusLine.className = isError ? "error" : "";
}

file.addEventListener("change", () => {
  const chosen = file.files[0];
  if (!chosen) return;
  const reader = new FileReader();
  reader.onload = () => { text.value = reader.result; report(`Loaded ${chosen.name}; press Detect.`, false); };
  reader.onerror = () => report(`Could not read ${chosen.name}.`, true);
  reader.readAsText(chosen);
});

async function detect() {
  button.disabled = true;
  result.dataset.state = "running";
  report("Detecting\u2026", false);
  const started = performance.now();
  try {
    const response = await fetch("api/detect", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({text: text.value, min_score: Number(minScore.value)}),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    result.innerHTML = answer.html;
    const elapsed = performance.now() - started;
    const took = elapsed < 1000 ? `${Math.round(elapsed)} ms` : `${(elapsed / 1000).toFixed(1)} s`;
    const count = answer.spans.length;
    report(`${count} ${count === 1 ? "span" : "spans"} found in ${took}.`, false);
    result.dataset.state = "done";
  } catch (error) {
    report(`Error: ${error.message}`, true);
    result.dataset.state = "error";
  } finally {
    button.disabled = false;
  }
}

button.addEventListener("click", detect);
text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) detect();
});
