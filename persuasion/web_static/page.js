"use strict";
// The server renders and escapes the highlighted markup (persuasion.highlight); this only moves text around.
const text = document.getElementById("text");
const file = document.getElementById("file");
const url = document.getElementById("url");
const urlControl = document.getElementById("url-control");
const button = document.getElementById("detect");
const statusLine = document.getElementById("status");
const result = document.getElementById("result");
const minScore = document.getElementById("min-score");
const minScoreValue = document.getElementById("min-score-value");

let pageHtml = null;  // a web page opened from a file, until Detect sends it
let last = null;  // the last detection, every span: {text, spans, sentences, html, took}

function showMinScore() { minScoreValue.textContent = Number(minScore.value).toFixed(2); }
minScore.addEventListener("input", () => {
  minScore.dataset.touched = "yes";
  showMinScore();
  if (last) show();
});
// Start from the served model's own min_score (0 unless the server was given another), unless moved already.
fetch("healthz").then((response) => response.json()).then((health) => {
  if (typeof health.min_score === "number" && minScore.dataset.touched !== "yes") {
    minScore.value = health.min_score;
    showMinScore();
  }
  urlControl.hidden = !health.allow_urls;
}).catch(() => {});

function report(message, isError) {
  statusLine.textContent = message;
  statusLine.className = isError ? "error" : "";
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

file.addEventListener("change", () => {
  const chosen = file.files[0];
  if (!chosen) return;
  const isPage = /\.html?$/i.test(chosen.name) || chosen.type === "text/html";
  const reader = new FileReader();
  reader.onload = () => {
    if (isPage) {
      pageHtml = reader.result;
      text.value = "";
      report(`Loaded ${chosen.name}, a web page: Detect searches its article text.`, false);
    } else {
      pageHtml = null;
      text.value = reader.result;
      report(`Loaded ${chosen.name}; press Detect.`, false);
    }
  };
  reader.onerror = () => report(`Could not read ${chosen.name}.`, true);
  reader.readAsText(chosen);
});
text.addEventListener("input", () => { pageHtml = null; });

// The last detection's spans at or above the minimum score: all of them as the server rendered them,
// fewer rendered again by the server (/api/render runs no model).
async function show() {
  const shown = last;
  const threshold = Number(minScore.value);
  const spans = shown.spans.filter((span) => span.score >= threshold);
  const html = spans.length === shown.spans.length ? shown.html
    : (await post("api/render", {text: shown.text, spans, sentences: shown.sentences})).html;
  if (shown !== last) return;  // a newer detection arrived meanwhile
  result.innerHTML = html;
  result.dataset.minScore = String(threshold);
  const hidden = shown.spans.length - spans.length;
  report(`${spans.length} ${spans.length === 1 ? "span" : "spans"} found in ${shown.took}` +
         (hidden ? ` (${hidden} below the minimum score not shown).` : "."), false);
  result.dataset.state = "done";
}

async function detect() {
  button.disabled = true;
  result.dataset.state = "running";
  report("Detecting\u2026", false);
  const started = performance.now();
  let request = {text: text.value};
  if (pageHtml !== null) request = {html: pageHtml};
  else if (!urlControl.hidden && url.value.trim()) request = {url: url.value.trim()};
  try {
    const answer = await post("api/detect", {...request, min_score: 0});
    if (answer.text !== undefined) {  // the article text of a page: the offsets index it
      text.value = answer.text;
      pageHtml = null;
    }
    const elapsed = performance.now() - started;
    const took = elapsed < 1000 ? `${Math.round(elapsed)} ms` : `${(elapsed / 1000).toFixed(1)} s`;
    last = {text: answer.text ?? request.text, spans: answer.spans, sentences: answer.sentences,
            html: answer.html, took};
    await show();
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
