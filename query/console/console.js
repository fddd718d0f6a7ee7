// hwledger fleet console: reads the query service's JSON API only (/v1/gpus, /v1/providers,
// /v1/bid-screening) and renders it with the DOM (text only, never HTML from the answers).
"use strict";

async function getJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) {
    throw new Error(`${body.error || response.status}: ${body.message || response.statusText}`);
  }
  return body;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function showError(error) {
  const box = document.getElementById("console-error");
  box.textContent = String(error.message || error);
  box.hidden = false;
}

function bar(free, installed) {
  const outer = document.createElement("span");
  outer.className = "bar";
  outer.setAttribute("role", "img");
  outer.setAttribute("aria-label", `${free} of ${installed} free`);
  const inner = document.createElement("span");
  inner.style.width = installed ? `${(100 * free / installed).toFixed(1)}%` : "0";
  outer.appendChild(inner);
  return outer;
}

async function loadGpus() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(document.getElementById("gpu-filter"))) {
    if (String(value).trim()) params.set(name, String(value).trim());
  }
  const answer = await getJson(`/v1/gpus?${params}`);
  const body = document.querySelector("#gpu-table tbody");
  body.replaceChildren();
  for (const gpu of answer.gpus) {
    const row = body.insertRow();
    row.dataset.gpu = `${gpu.vendor}/${gpu.model}/${gpu.ram}/${gpu.interface}`;
    const kind = row.insertCell();
    const name = document.createElement("strong");
    name.textContent = `${gpu.vendor} ${gpu.model}`;
    const detail = document.createElement("small");
    detail.textContent = `${gpu.ram} · ${gpu.interface}`;
    kind.append(name, document.createElement("br"), detail);
    cell(row, gpu.installed, "num installed");
    cell(row, gpu.free, "num free");
    cell(row, gpu.providers, "num providers");
    const chart = row.insertCell();
    chart.className = "chart";
    chart.appendChild(bar(gpu.free, gpu.installed));
  }
  document.getElementById("total-installed").textContent = answer.totals.installed;
  document.getElementById("total-free").textContent = answer.totals.free;
  document.getElementById("total-providers").textContent = answer.totals.providers;
}

function projectionLine(asOf, now) {
  const parts = [`projection position ${asOf.position}`,
                 `${asOf.partitions.length} partition(s)`, `schema ${asOf.schema}`];
  if (asOf.lastEventAt) {
    const age = Math.max(0, (Date.parse(now) - Date.parse(asOf.lastEventAt)) / 1000);
    parts.push(`newest projected event ${asOf.lastEventAt} (${age.toFixed(0)} s before the ` +
               "service clock)");
  } else {
    parts.push("no event projected yet");
  }
  return parts.join(" · ");
}

async function loadProviders() {
  const answer = await getJson("/v1/providers?limit=200");
  document.getElementById("projection").textContent = projectionLine(answer.asOf, answer.now);
  document.getElementById("providers-note").textContent =
    `${answer.providers.length} provider(s)${answer.truncated ? " (first ones by owner)" : ""}; ` +
    `online means seen since ${answer.onlineSince}`;
  const body = document.querySelector("#provider-table tbody");
  body.replaceChildren();
  for (const p of answer.providers) {
    const row = body.insertRow();
    row.dataset.owner = p.owner;
    cell(row, p.owner, "owner");
    cell(row, p.region || "—");
    cell(row, String(p.auditedBy.length)).title = p.auditedBy.join("\n");
    cell(row, p.gpuModels.join(" ") || "—");
    cell(row, p.freeGpus, "num");
    cell(row, p.lastSeenAt || "never");
    const badge = document.createElement("span");
    badge.className = `badge staleness-${p.staleness}`;
    badge.textContent = p.staleness;
    row.insertCell().appendChild(badge);
  }
}

function placementText(placement) {
  return (placement || []).map(
    (u) => `${u.unit}: ${u.node} × ${u.count} [${u.gpuSlots.join(",")}]`).join("; ");
}

async function screen(event) {
  event.preventDefault();
  const status = document.getElementById("request-status");
  const table = document.getElementById("candidates");
  const exact = document.getElementById("exact").checked;
  status.textContent = "screening…";
  table.hidden = true;
  try {
    const answer = await getJson(`/v1/bid-screening?exact=${exact}`, {
      method: "POST", headers: {"content-type": "application/json"},
      body: document.getElementById("group-spec").value});
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const p of answer.providers) {
      const row = body.insertRow();
      row.dataset.owner = p.owner;
      cell(row, p.owner, "owner");
      cell(row, p.gpuModels.filter((m) => m.includes("/")).join(" "));
      cell(row, String(p.auditedBy.length)).title = p.auditedBy.join("\n");
      cell(row, exact ? placementText(p.placement) : "— (exact off)");
    }
    table.hidden = false;
    status.textContent = `${answer.providers.length} candidate(s)` +
      `${answer.truncated ? " (truncated)" : ""} at position ${answer.asOf.position}`;
  } catch (error) {
    status.textContent = String(error.message || error);
  }
}

async function refresh() {
  try {
    await Promise.all([loadGpus(), loadProviders()]);
    document.getElementById("console-error").hidden = true;
    document.body.dataset.loaded = "true";
  } catch (error) {
    showError(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("gpu-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadGpus().catch(showError);
  });
  document.getElementById("request-form").addEventListener("submit", screen);
  refresh();
});
