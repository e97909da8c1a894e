// imagequeue dashboard: confirmations and live updates by short polling (no reloads).
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});

async function getJSON(url) {
  const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (answer.status === 401) { window.location.reload(); return null; }
  return answer.ok ? answer.json() : null;
}

function every(ms, task) {
  const tick = async () => {
    try { await task(); } catch (err) { /* the next tick tries again */ }
    window.setTimeout(tick, ms);
  };
  window.setTimeout(tick, ms);
}

function setText(selector, text) {
  document.querySelectorAll(selector).forEach((el) => { el.textContent = text; });
}

function drawChart(svg, minutes) {
  const width = 600, height = 120, n = minutes.length || 1;
  const top = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
  const w = width / n;
  let bars = "";
  minutes.forEach((m, i) => {
    const hc = (m.completed / top) * (height - 4), hf = (m.failed / top) * (height - 4);
    bars += `<rect x="${i * w + 1}" y="${height - hc}" width="${w - 2}" height="${hc}"><title>${m.completed} completed</title></rect>`;
    bars += `<rect class="f" x="${i * w + 1}" y="${height - hc - hf}" width="${w - 2}" height="${hf}"><title>${m.failed} failed</title></rect>`;
  });
  svg.innerHTML = bars;
}

function liveOverview(root) {
  const chart = root.querySelector("svg.chart");
  const render = (data) => {
    Object.entries(data.counts).forEach(([state, n]) => setText(`[data-count="${state}"]`, n.toLocaleString()));
    setText("#paused", data.paused ? "paused" : "running");
    setText("#rate-used", `${data.rate.used} / ${data.rate.max || "∞"}`);
    const pct = data.rate.max ? Math.round((100 * data.rate.used) / data.rate.max) : 0;
    const bar = document.querySelector("#rate-bar");
    if (bar) bar.style.width = `${pct}%`;
    setText("#jobs-per-minute", data.jobs_per_minute);
    const workers = document.querySelector("#workers");
    if (workers) workers.innerHTML = data.workers_html;
    const redis = document.querySelector("#redis");
    if (redis) redis.innerHTML = data.redis_html;
    const users = document.querySelector("#users");
    if (users) users.innerHTML = data.users_html;
    setText("#users-waiting", data.users_waiting);
    setText("#users-active", data.users_active);
    if (chart) drawChart(chart, data.minutes);
  };
  if (chart && chart.dataset.minutes) drawChart(chart, JSON.parse(chart.dataset.minutes));
  every(2000, async () => { const data = await getJSON(root.dataset.src); if (data) render(data); });
}

function liveRows(tbody) {
  every(2000, async () => {
    const answer = await fetch(tbody.dataset.src, { credentials: "same-origin" });
    if (answer.status === 401) { window.location.reload(); return; }
    if (answer.ok) tbody.innerHTML = await answer.text();
  });
}

function liveJob(root) {
  const finals = ["completed", "failed", "cancelled"];
  const render = (job) => {
    const badge = document.querySelector("#job-state");
    if (badge) { badge.textContent = job.state; badge.className = `state s-${job.state}`; }
    const bar = document.querySelector("#job-progress");
    if (bar) bar.style.width = `${job.progress}%`;
    setText("#job-progress-text", `${job.progress}%${job.progress_msg ? " · " + job.progress_msg : ""}`);
    setText("#job-attempts", `${job.attempts} / ${job.max_attempts}`);
    const error = document.querySelector("#job-error");
    if (error && job.error) { error.textContent = job.error; error.parentElement.hidden = false; }
    const img = document.querySelector("#job-image");
    if (img && job.result_url && !img.getAttribute("src")) { img.src = job.result_url; img.hidden = false; }
    return finals.includes(job.state);
  };
  let done = finals.includes(root.dataset.state);
  every(1000, async () => {
    if (done) return;
    const job = await getJSON(root.dataset.src);
    if (job) done = render(job);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live=overview]").forEach(liveOverview);
  document.querySelectorAll("[data-live=rows]").forEach(liveRows);
  document.querySelectorAll("[data-live=job]").forEach(liveJob);
});
