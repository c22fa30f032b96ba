// qkdnet dashboard: draws the network from /api/state and follows /events (server-sent events).
// No libraries, no network access beyond this server: it must work offline.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 800, H = 600, PAD = 70, SPARK = 60;
  const state = { sites: {}, links: {}, kmes: {}, xy: {} };

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function fmtRate(bps) {
    if (!(bps > 0)) return "0 bit/s";
    const units = [["Mbit/s", 1e6], ["kbit/s", 1e3]];
    for (const [u, s] of units) if (bps >= s) return (bps / s).toPrecision(3) + " " + u;
    return bps.toPrecision(3) + " bit/s";
  }
  function fmtBits(b) { return b >= 8192 ? (b / 8192).toFixed(1) + " KiB" : b + " bit"; }
  function fmtQber(q) { return q === null || q === undefined ? "–" : (100 * q).toFixed(2) + " %"; }
  // key rate colour: log scale from 1 bit/s (violet) to 10 Mbit/s (green)
  function rateColour(bps) {
    const x = bps > 0 ? Math.min(1, Math.max(0, Math.log10(bps) / 7)) : 0;
    const a = [76, 29, 149], b = [34, 197, 94];
    const c = a.map((v, i) => Math.round(v + (b[i] - v) * x));
    return "rgb(" + c.join(",") + ")";
  }
  function poolColour(f) {
    const x = Math.min(1, Math.max(0, f));
    return "hsl(" + Math.round(120 * x) + ",75%,42%)";
  }

  function project(sites) {
    const lats = sites.map(s => s.lat), lons = sites.map(s => s.lon);
    const lat0 = (Math.min(...lats) + Math.max(...lats)) / 2;
    const k = Math.cos(lat0 * Math.PI / 180);
    const xs = sites.map(s => s.lon * k), ys = sites.map(s => -s.lat);
    const x0 = Math.min(...xs), y0 = Math.min(...ys);
    const span = Math.max(Math.max(...xs) - x0, Math.max(...ys) - y0, 1e-9);
    const scale = Math.min((W - 2 * PAD) / span, (H - 2 * PAD) / span);
    const dx = (W - 2 * PAD - (Math.max(...xs) - x0) * scale) / 2;
    const dy = (H - 2 * PAD - (Math.max(...ys) - y0) * scale) / 2;
    sites.forEach((s, i) => {
      state.xy[s.id] = [PAD + dx + (xs[i] - x0) * scale, PAD + dy + (ys[i] - y0) * scale];
    });
  }

  function spark(values, colour) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 90 22");
    const v = values.filter(x => x !== null && x !== undefined).slice(-SPARK);
    if (v.length > 1) {
      const lo = Math.min(...v), hi = Math.max(...v), r = hi - lo || 1;
      const pts = v.map((y, i) => (i * 90 / (v.length - 1)).toFixed(1) + "," + (20 - 18 * (y - lo) / r).toFixed(1));
      el("polyline", { points: pts.join(" "), stroke: colour }, svg);
    }
    svg.setAttribute("data-points", String(v.length));
    return svg;
  }

  function drawMap(snap) {
    const gl = document.getElementById("map-links"), gs = document.getElementById("map-sites");
    gl.textContent = ""; gs.textContent = "";
    project(snap.sites);
    for (const l of snap.links) {
      const [x1, y1] = state.xy[l.a], [x2, y2] = state.xy[l.b];
      const g = el("g", { "class": "link-group", "data-link": l.id }, gl);
      el("line", { "class": "link", "data-link": l.id, x1, y1, x2, y2, "stroke-width": 6 }, g);
      const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
      const pill = el("g", { "class": "pool-pill", transform: "translate(" + (mx - 20) + "," + (my - 5) + ")" }, g);
      el("rect", { "class": "frame", width: 40, height: 10, rx: 3 }, pill);
      el("rect", { "class": "fill", x: 1, y: 1, height: 8, width: 0, rx: 2 }, pill);
      const title = el("title", {}, g);
      title.textContent = l.id;
    }
    for (const s of snap.sites) {
      const [x, y] = state.xy[s.id];
      const g = el("g", { "class": "site" + (s.trusted_node ? " trusted" : ""), "data-site": s.id }, gs);
      el("circle", { cx: x, cy: y, r: 9, fill: "#38bdf8" }, g);
      const t = el("text", { x: x + 12, y: y + 4 }, g);
      t.textContent = s.name;
      el("title", {}, g).textContent = s.id + " (" + s.sector + ")";
    }
  }

  function linkRow(l) {
    const tbody = document.querySelector("#links tbody");
    let tr = tbody.querySelector('tr[data-link="' + CSS.escape(l.id) + '"]');
    if (!tr) {
      tr = document.createElement("tr");
      tr.setAttribute("data-link", l.id);
      tr.innerHTML = '<td class="name"></td><td class="rate"></td><td class="qber"></td>' +
        '<td class="pool"><span class="bar"><span></span></span> <span class="pool-value"></span></td>' +
        '<td class="spark-qber"></td><td class="spark-rate"></td>';
      tr.querySelector(".name").textContent = l.a + " – " + l.b;
      tbody.appendChild(tr);
    }
    return tr;
  }

  function updateLink(id, d) {
    const l = state.links[id];
    if (!l) return;
    Object.assign(l, d);
    const h = l.history;
    if (d.t !== undefined) {
      h.t.push(d.t); h.qber.push(l.qber); h.key_rate_bps.push(l.key_rate_bps); h.pool_bits.push(l.pool_bits);
      for (const k in h) if (h[k].length > 2 * SPARK) h[k].splice(0, h[k].length - SPARK);
    }
    const frac = l.pool_capacity_bits > 0 ? l.pool_bits / l.pool_capacity_bits : 0;
    const line = document.querySelector('#map line.link[data-link="' + CSS.escape(id) + '"]');
    if (line) {
      line.setAttribute("stroke", rateColour(l.key_rate_bps));
      line.setAttribute("data-key-rate", String(l.key_rate_bps));
      line.setAttribute("data-pool-bits", String(l.pool_bits));
      line.setAttribute("data-status", l.status);
      line.classList.toggle("aborted", l.status === "aborted");
      const fill = line.parentNode.querySelector(".pool-pill rect.fill");
      fill.setAttribute("width", (38 * Math.min(1, frac)).toFixed(1));
      fill.setAttribute("fill", poolColour(frac));
      line.parentNode.querySelector("title").textContent =
        id + ": " + fmtRate(l.key_rate_bps) + ", QBER " + fmtQber(l.qber) + ", pool " + fmtBits(l.pool_bits);
    }
    const tr = linkRow(l);
    tr.classList.toggle("aborted", l.status === "aborted");
    tr.querySelector(".rate").textContent = l.status === "aborted" ? "aborted" : fmtRate(l.key_rate_bps);
    tr.querySelector(".qber").textContent = fmtQber(l.qber);
    tr.querySelector(".pool-value").textContent = fmtBits(l.pool_bits);
    tr.querySelector(".pool-value").setAttribute("data-bits", String(l.pool_bits));
    const bar = tr.querySelector(".bar > span");
    bar.style.width = (100 * Math.min(1, frac)).toFixed(0) + "%";
    bar.style.background = poolColour(frac);
    tr.querySelector(".spark-qber").replaceChildren(spark(h.qber, "#fbbf24"));
    tr.querySelector(".spark-rate").replaceChildren(spark(h.key_rate_bps, "#22c55e"));
  }

  function updateKme(site, rate, total) {
    state.kmes[site] = rate;
    const tbody = document.querySelector("#kmes tbody");
    let tr = tbody.querySelector('tr[data-site="' + CSS.escape(site) + '"]');
    if (!tr) {
      tr = document.createElement("tr");
      tr.setAttribute("data-site", site);
      tr.innerHTML = "<td></td><td class='kme-rate'></td><td class='kme-total'></td>";
      tr.firstChild.textContent = state.sites[site] ? state.sites[site].name : site;
      tbody.appendChild(tr);
    }
    tr.querySelector(".kme-rate").textContent = rate.toFixed(1);
    tr.querySelector(".kme-total").textContent = String(total || 0);
  }

  function addRelay(r, animate) {
    const li = document.createElement("li");
    li.textContent = r.route.join(" → ") + (r.bits ? " (" + r.bits + " bit)" : "") +
      (r.detail ? " · " + r.detail : "");
    li.setAttribute("data-route", r.route.join(","));
    const list = document.getElementById("relays");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 30) list.removeChild(list.lastChild);
    if (!animate) return;
    const pts = r.route.map(s => state.xy[s]).filter(Boolean).map(p => p.join(",")).join(" ");
    const path = el("polyline", { "class": "relay-path", points: pts, "data-route": r.route.join(",") },
      document.getElementById("map-relays"));
    setTimeout(() => path.remove(), 3000);
  }

  function addAlert(a) {
    const li = document.createElement("li");
    li.className = a.level;
    li.textContent = new Date(a.t * 1000).toLocaleTimeString() + " " + a.message;
    const list = document.getElementById("alerts");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 50) list.removeChild(list.lastChild);
  }

  function load(snap) {
    document.getElementById("network-name").textContent = snap.name;
    state.sites = {}; state.links = {};
    for (const s of snap.sites) state.sites[s.id] = s;
    document.querySelector("#links tbody").textContent = "";
    document.querySelector("#kmes tbody").textContent = "";
    document.getElementById("relays").textContent = "";
    document.getElementById("alerts").textContent = "";
    drawMap(snap);
    for (const l of snap.links) { state.links[l.id] = l; updateLink(l.id, {}); }
    for (const s in snap.kme_rates) updateKme(s, snap.kme_rates[s], snap.kme_totals[s]);
    for (const r of snap.relays) addRelay(r, false);
    for (const a of snap.alerts) addAlert(a);
    document.body.setAttribute("data-loaded", "1");
  }

  function connect() {
    const conn = document.getElementById("connection");
    const source = new EventSource("events");
    source.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn conn-ok"; });
    source.addEventListener("error", () => { conn.textContent = "reconnecting…"; conn.className = "conn conn-wait"; });
    source.addEventListener("snapshot", e => load(JSON.parse(e.data)));
    source.addEventListener("link", e => { const ev = JSON.parse(e.data); updateLink(ev.data.id, Object.assign({ t: ev.t }, ev.data)); });
    source.addEventListener("kme", e => { const ev = JSON.parse(e.data); updateKme(ev.data.site, ev.data.request_rate_hz, ev.data.requests); });
    source.addEventListener("relay", e => addRelay(JSON.parse(e.data).data, true));
    source.addEventListener("alert", e => addAlert(JSON.parse(e.data).data));
  }
  connect();
})();
