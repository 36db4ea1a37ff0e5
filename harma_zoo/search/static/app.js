// The page of `harma-zoo serve`: runs queries against /api/search and shows the ranked thumbnails.
"use strict";

const form = document.getElementById("search-form");
const queryBox = document.getElementById("query");
const kBox = document.getElementById("k");
const imageInput = document.getElementById("image");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const geojsonLink = document.getElementById("geojson");
let geojsonUrl = null;

function card(hit) {
  const figure = document.createElement("figure");
  figure.className = "hit";
  figure.dataset.id = hit.id;
  figure.dataset.rank = hit.rank;
  figure.dataset.score = hit.score;
  figure.title = hit.path + (hit.window ? ` [chip col ${hit.window[0]}, row ${hit.window[1]}]` : "") + "\nclick: search by this image";
  const image = document.createElement("img");
  image.src = hit.thumb;
  image.alt = hit.name;
  image.loading = "lazy";
  const caption = document.createElement("figcaption");
  const rank = document.createElement("span");
  rank.className = "rank";
  rank.textContent = `#${hit.rank}`;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(4);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = hit.name + (hit.window ? ` @${hit.window[0]},${hit.window[1]}` : "");
  caption.append(rank, score, name);
  figure.append(image, caption);
  figure.addEventListener("click", () => searchBy(new URLSearchParams({ id: hit.id, k: kBox.value })));
  return figure;
}

function show(data, seconds) {
  results.replaceChildren(...data.hits.map(card));
  statusLine.textContent = `${data.hits.length} results for “${data.query}” in ${seconds.toFixed(2)} s`;
  statusLine.className = "";
}

function fail(message) {
  results.replaceChildren();
  statusLine.textContent = message;
  statusLine.className = "error";
}

function offerGeojson(url) {
  if (geojsonUrl && geojsonUrl.startsWith("blob:")) URL.revokeObjectURL(geojsonUrl);
  geojsonUrl = url;
  geojsonLink.href = url;
  geojsonLink.hidden = false;
}

async function request(url, options) {
  const started = performance.now();
  statusLine.textContent = "searching…";
  const response = await fetch(url, options);
  const data = await response.json();
  if (!response.ok) {
    fail(data.error || `error ${response.status}`);
    return false;
  }
  show(data, (performance.now() - started) / 1000);
  return true;
}

async function searchBy(params) {
  if (await request("/api/search?" + params)) offerGeojson("/api/geojson?" + params);
}

async function searchByFile(file) {
  const k = new URLSearchParams({ k: kBox.value });
  const options = { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } };
  if (await request("/api/search?" + k, options)) {
    const response = await fetch("/api/geojson?" + k, options);
    if (response.ok) offerGeojson(URL.createObjectURL(await response.blob()));
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  searchBy(new URLSearchParams({ q: queryBox.value, k: kBox.value }));
});

imageInput.addEventListener("change", () => {
  if (imageInput.files.length) searchByFile(imageInput.files[0]);
});

fetch("/api/info").then((response) => response.json()).then((info) => {
  document.getElementById("info").textContent = `${info.items.toLocaleString()} items · ${info.model}`;
});
