// octolux's page: live values from /api/events (server-sent events), charts drawn as SVG
// from /api/history, commands through POST /api/command when [server] control is on.
// Plain JavaScript, no build step, no library.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const POWER = [
    ["p_pv", "Solar", "--pv"],
    ["p_battery", "Battery (+ charging)", "--battery"],
    ["p_grid", "Grid (+ importing)", "--grid"],
    ["p_load", "House", "--load"],
  ];
  const ENERGY = [
    ["e_pv_day", "Solar", "--pv"],
    ["e_chg_day", "Charged", "--battery"],
    ["e_dischg_day", "Discharged", "--export"],
    ["e_to_user_day", "Imported", "--grid"],
    ["e_to_grid_day", "Exported", "--load"],
  ];
  const GROUPS = [
    ["bit", "Switches"],
    ["percent", "Rates and limits"],
    ["number", "Rates and limits"],
    ["time_slot", "Time slots"],
    ["time", "Time slots"],
    ["clock", "Clock"],
  ];
  const CHART_REFRESH = 5 * 60 * 1000; // ms
  const DAYS = 28;

  let state = { inverters: [], settings_table: {}, control: false, history: { stores: [] } };
  let clockOffset = 0; // server time - this browser's time, in ms
  const views = new Map(); // inverter name -> its view

  // -- small helpers ---------------------------------------------------------------

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  function color(variable) {
    return getComputedStyle(document.documentElement).getPropertyValue(variable).trim();
  }

  function watts(value) {
    if (value === undefined || value === null) return "–";
    const size = Math.abs(value);
    return size >= 1000 ? (value / 1000).toFixed(2) + " kW" : Math.round(value) + " W";
  }

  function kwh(value) {
    return value === undefined || value === null ? "–" : Number(value).toFixed(1) + " kWh";
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "no data yet";
    const age = Math.max(0, (Date.now() + clockOffset) / 1000 - seconds);
    if (age < 90) return Math.round(age) + " s ago";
    if (age < 5400) return Math.round(age / 60) + " min ago";
    return Math.round(age / 3600) + " h ago";
  }

  function clockTime(seconds) {
    const date = new Date(seconds * 1000);
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function apiBase(inverter) {
    return inverter.api.replace(/^\//, ""); // relative: works behind a path prefix too
  }

  // -- the live values ------------------------------------------------------------------

  function view(inverter) {
    let found = views.get(inverter.name);
    if (found) return found;
    const v = { name: inverter.name, fields: {} };
    const field = (key, tag) => (v.fields[key] =
      el(tag || "span", { "data-key": key, class: tag === "div" ? "value" : null }, "–"));
    v.badge = el("span", { class: "badge", "data-connected": "" }, "…");
    v.lastFrame = el("span", { class: "muted", "data-last-frame": "" }, "no data yet");
    v.socBar = el("div", {});
    v.battery = el("div", { class: "sub", "data-battery-direction": "" });
    v.grid = el("div", { class: "sub", "data-grid-direction": "" });
    v.powerChart = svg("svg", { class: "chart", "data-chart": "power", role: "img" });
    v.socChart = svg("svg", { class: "chart", "data-chart": "soc", role: "img" });
    v.energyChart = svg("svg", { class: "chart", "data-chart": "energy", role: "img" });
    v.settings = el("div", { "data-settings": "" });
    v.results = el("div", { "data-results": "" });
    v.notice = el("div", { class: "notice", "data-notice": "" });
    v.root = el("section", { class: "inverter", "data-inverter": inverter.name },
      el("h2", {}, inverter.name, v.badge, el("span", { class: "muted" }, "last data ", v.lastFrame)),
      el("div", { class: "flow" },
        el("div", { class: "tile", "data-tile": "pv" },
          el("div", { class: "label" }, "Solar"), field("p_pv", "div"),
          el("div", { class: "sub" }, "today ", field("e_pv_day"))),
        el("div", { class: "tile", "data-tile": "battery" },
          el("div", { class: "label" }, "Battery ", field("soc")),
          el("div", { class: "soc" }, v.socBar), field("p_battery", "div"), v.battery),
        el("div", { class: "tile", "data-tile": "grid" },
          el("div", { class: "label" }, "Grid"), field("p_grid", "div"), v.grid),
        el("div", { class: "tile", "data-tile": "load" },
          el("div", { class: "label" }, "House"), field("p_load", "div"),
          el("div", { class: "sub" }, "today imported ", field("e_to_user_day")))),
      el("div", { class: "cards" },
        el("div", { class: "card" }, el("h3", {}, "Power, last 24 hours"), v.powerChart,
          legend(POWER)),
        el("div", { class: "card" }, el("h3", {}, "Battery charge, last 24 hours"), v.socChart,
          legend([["soc", "State of charge (%)", "--battery"]])),
        el("div", { class: "card" }, el("h3", {}, `Energy per day, last ${DAYS} days`),
          v.energyChart, legend(ENERGY)),
        el("div", { class: "card" }, el("h3", {}, "Last commands"), v.results)),
      el("div", { class: "card" }, el("h3", {}, "Settings"), v.notice, v.settings));
    document.getElementById("inverters").append(v.root);
    views.set(inverter.name, v);
    loadCharts(inverter);
    return v;
  }

  function legend(series) {
    return el("div", { class: "legend" },
      series.map(([, label, variable]) =>
        el("span", {}, el("i", { style: `background:${color(variable)}` }), label)));
  }

  function showInverter(inverter) {
    const v = view(inverter);
    const inputs = inverter.inputs || {};
    v.inverter = inverter;
    v.badge.textContent = inverter.connected ? "connected" : "not connected";
    v.badge.className = "badge " + (inverter.connected ? "on" : "off");
    v.badge.dataset.connected = inverter.connected ? "yes" : "no";
    v.lastFrame.dataset.time = inverter.last_frame === null ? "" : String(inverter.last_frame);
    v.lastFrame.textContent = ago(inverter.last_frame);
    for (const [key, node] of Object.entries(v.fields)) {
      const value = inputs[key];
      node.dataset.value = value === undefined ? "" : String(value);
      if (key === "soc") node.textContent = value === undefined ? "–" : value + " %";
      else if (key.startsWith("e_")) node.textContent = kwh(value);
      else node.textContent = watts(value === undefined ? null : Math.abs(value));
    }
    v.socBar.style.width = (inputs.soc || 0) + "%";
    const battery = inputs.p_battery;
    v.battery.textContent = battery === undefined ? "" :
      battery > 0 ? "charging" : battery < 0 ? "discharging" : "idle";
    const grid = inputs.p_grid;
    v.grid.textContent = grid === undefined ? "" :
      grid > 0 ? "importing" : grid < 0 ? "exporting" : "nothing in or out";
    showResults(v, inverter.results || []);
    showSettings(v, inverter);
    // A fresh installation's charts fill as soon as there is something to draw.
    if (v.chartsEmpty && Date.now() - v.chartsLoaded > 5000) loadCharts(inverter);
  }

  function showResults(v, results) {
    if (!results.length) {
      v.results.replaceChildren(el("div", { class: "empty" }, "No command yet"));
      return;
    }
    v.results.replaceChildren(el("table", {},
      el("tr", {}, el("th", {}, "Time"), el("th", {}, "Command"), el("th", {}, "Result")),
      results.map((r) => el("tr", { "data-result": r.command },
        el("td", { class: "num" }, clockTime(r.at)),
        el("td", {}, r.command, " ", el("span", { class: "muted" }, r.payload)),
        el("td", {}, el("span", { class: r.result === "OK" ? "ok" : "fail" }, r.result),
          r.reason ? el("div", { class: "muted" }, r.reason) : null)))));
  }

  // -- settings, and commands when control is on ---------------------------------------------

  function showSettings(v, inverter) {
    const values = inverter.settings || {};
    const table = state.settings_table || {};
    const names = Object.keys(values);
    if (!names.length) {
      v.settings.replaceChildren(el("div", { class: "empty" }, "No settings read yet"));
      return;
    }
    // Rebuilt only when the values change, so a half-typed value is not lost to an update.
    const signature = JSON.stringify([values, state.control]);
    if (v.settingsSignature === signature) return;
    v.settingsSignature = signature;
    const sections = [];
    const seen = new Set();
    for (const [kind, title] of GROUPS) {
      if (seen.has(title)) continue;
      const kinds = GROUPS.filter(([, t]) => t === title).map(([k]) => k);
      seen.add(title);
      // What can be changed first, then what is only shown.
      const rows = names.filter((name) => kinds.includes((table[name] || {}).kind))
        .sort((a, b) => Number(table[b].writable) - Number(table[a].writable))
        .map((name) => settingRow(inverter, name, values[name], table[name]));
      if (rows.length) {
        sections.push(el("details", { open: true },
          el("summary", {}, title), el("table", { class: "settings" }, rows)));
      }
    }
    v.settings.replaceChildren(el("div", { class: "groups" }, sections));
  }

  function settingRow(inverter, name, value, meta) {
    const shown = value === null ? "(invalid)" :
      meta.kind === "bit" ? (value ? "on" : "off") :
      meta.unit ? `${value} ${meta.unit}` : String(value);
    const cells = [
      el("td", { title: meta.description }, name,
        el("div", { class: "muted" }, meta.description)),
      el("td", { class: "num", "data-setting": name, "data-value": String(value) }, shown),
    ];
    if (state.control && meta.writable) cells.push(el("td", {}, control(inverter, name, value, meta)));
    else if (state.control && meta.kind === "clock") {
      cells.push(el("td", {}, el("button", {
        onclick: (event) => command(inverter, "sync_time", "now", event.target),
      }, "Sync to the bridge's clock")));
    }
    return el("tr", {}, cells);
  }

  function control(inverter, name, value, meta) {
    if (meta.kind === "bit") {
      return el("button", {
        class: value ? "on" : "", "data-command": name,
        onclick: (event) => command(inverter, name, !value, event.target),
      }, value ? "Switch off" : "Switch on");
    }
    if (meta.kind === "clock") {
      return el("button", { "data-command": "sync_time",
        onclick: (event) => command(inverter, "sync_time", "now", event.target) },
      "Sync to the bridge's clock");
    }
    const slot = meta.kind === "time_slot";
    const time = meta.kind === "time";
    const input = el("input", slot ?
      { class: "slot", value: value || "", placeholder: "HH:MM-HH:MM", "data-input": name,
        pattern: "[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]" } : time ?
      { class: "slot", value: value || "", placeholder: "HH:MM", "data-input": name,
        pattern: "[0-2][0-9]:[0-5][0-9]" } :
      { type: "number", value: value ?? "", min: meta.minimum, max: meta.maximum, "data-input": name });
    const set = () => command(inverter, name, input.value.trim(), button);
    input.addEventListener("keydown", (event) => { if (event.key === "Enter") set(); });
    const button = el("button", { "data-command": name, onclick: set }, "Set");
    return el("span", { class: "control" }, input, button);
  }

  async function command(inverter, name, value, button) {
    const v = views.get(inverter.name);
    if (button) button.disabled = true;
    v.notice.textContent = `${name} ${value}: sending…`;
    try {
      const response = await fetch("api/command", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ inverter: inverter.name, command: name, value: value }),
      });
      const answer = await response.json();
      v.notice.textContent = answer.result ? `${name} ${value}: ${answer.result}` :
        `${name} ${value}: ${answer.error}`;
      v.notice.className = "notice " + (answer.result === "OK" ? "ok" : "fail");
    } catch (error) {
      v.notice.textContent = `${name} ${value}: ${error}`;
      v.notice.className = "notice fail";
    } finally {
      if (button) button.disabled = false;
    }
  }

  // -- charts ---------------------------------------------------------------------------------

  async function history(inverter, parameters) {
    const response = await fetch(`${apiBase(inverter)}/history?${parameters}`, { cache: "no-store" });
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    return response.json();
  }

  async function loadCharts(inverter) {
    const v = views.get(inverter.name);
    v.chartsLoaded = Date.now();
    v.chartsEmpty = false;
    if (!state.history.enabled) {
      for (const chart of [v.powerChart, v.socChart, v.energyChart]) {
        message(chart, "No history: add a [history] section to config.ini");
      }
      return;
    }
    const until = (Date.now() + clockOffset) / 1000;
    const since = until - 86400;
    const midnight = new Date(Date.now() + clockOffset);
    midnight.setHours(0, 0, 0, 0);
    const firstDay = midnight.getTime() / 1000 - (DAYS - 1) * 86400;
    try {
      const keys = POWER.map(([key]) => key).concat(["soc"]).join(",");
      const day = await history(inverter, `key=${keys}&since=${since}&until=${until}&step=600`);
      lineChart(v.powerChart, POWER.map(([key, , variable]) =>
        ({ key, color: color(variable), points: day.series[key] })), since, until, 600, watts);
      lineChart(v.socChart, [{ key: "soc", color: color("--battery"), points: day.series.soc }],
        since, until, 600, (x) => x + " %", [0, 100]);
      const energy = await history(inverter,
        `key=${ENERGY.map(([key]) => key).join(",")}&since=${firstDay}` +
        `&until=${firstDay + DAYS * 86400}&step=1d&aggregate=max`);
      barChart(v.energyChart, ENERGY.map(([key, , variable]) =>
        ({ key, color: color(variable), points: energy.series[key] })), firstDay, DAYS);
    } catch (error) {
      for (const chart of [v.powerChart, v.socChart, v.energyChart]) {
        message(chart, `History unavailable: ${error.message}`);
      }
    }
  }

  function size(chart) {
    return { width: Math.max(chart.clientWidth || 0, 280), height: chart.clientHeight || 200 };
  }

  function message(chart, text) {
    const { width, height } = size(chart);
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const label = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" });
    label.textContent = text;
    chart.replaceChildren(label);
  }

  function empty(chart, text) {
    const v = views.get(chart.closest("[data-inverter]").dataset.inverter);
    v.chartsEmpty = true;
    message(chart, text);
  }

  function niceStep(range, count) {
    const raw = range / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = [1, 2, 2.5, 5, 10].find((m) => m * power >= raw) || 10;
    return unit * power;
  }

  function frame(chart, low, high, format) {
    const { width, height } = size(chart);
    const box = { left: 52, right: width - 8, top: 8, bottom: height - 22, width, height };
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    chart.replaceChildren();
    const step = niceStep(high - low || 1, 4);
    const y = (value) => box.bottom - (value - low) / (high - low || 1) * (box.bottom - box.top);
    for (let tick = Math.ceil(low / step) * step; tick <= high + 1e-9; tick += step) {
      chart.append(svg("line", { class: "axis", x1: box.left, x2: box.right, y1: y(tick), y2: y(tick) }));
      const label = svg("text", { x: box.left - 4, y: y(tick) + 4, "text-anchor": "end" });
      label.textContent = format(Math.round(tick * 100) / 100);
      chart.append(label);
    }
    return { box, y };
  }

  function lineChart(chart, series, since, until, step, format, fixed) {
    const values = series.flatMap((s) => (s.points || []).map((p) => p[1]));
    if (!values.length) return empty(chart, "No data in the last 24 hours yet");
    let low = fixed ? fixed[0] : Math.min(0, ...values);
    let high = fixed ? fixed[1] : Math.max(0, ...values);
    if (high === low) high = low + 1;
    const { box, y } = frame(chart, low, high, format);
    const x = (t) => box.left + (t - since) / (until - since) * (box.right - box.left);
    // Hours on the x axis, every 3 or 6 hours depending on the width.
    const every = box.right - box.left < 400 ? 6 : 3;
    const start = new Date(since * 1000);
    start.setMinutes(0, 0, 0);
    for (let t = start.getTime() / 1000 + 3600; t < until; t += 3600) {
      const hour = new Date(t * 1000).getHours();
      if (hour % every) continue;
      const label = svg("text", { x: x(t), y: box.height - 6, "text-anchor": "middle" });
      label.textContent = String(hour).padStart(2, "0") + ":00";
      chart.append(label);
    }
    for (const s of series) {
      // A gap in the data (the bridge or the datalogger was away) is a gap in the line.
      let run = [];
      const runs = [run];
      let previous = null;
      for (const [t, value] of s.points || []) {
        if (previous !== null && t - previous > 2.5 * step) runs.push((run = []));
        run.push(`${x(t + step / 2).toFixed(1)},${y(value).toFixed(1)}`);
        previous = t;
      }
      for (const points of runs.filter((r) => r.length)) {
        const line = svg("polyline", { points: points.join(" "), stroke: s.color, "data-series": s.key });
        chart.append(line);
        if (points.length === 1) { // a lone value: a dot, or it would not show
          const [cx, cy] = points[0].split(",");
          chart.append(svg("circle", { cx, cy, r: 2.5, fill: s.color }));
        }
      }
    }
  }

  function barChart(chart, series, firstDay, days) {
    const values = series.flatMap((s) => (s.points || []).map((p) => p[1]));
    if (!values.length) return empty(chart, "No daily energy recorded yet");
    const { box, y } = frame(chart, 0, Math.max(...values, 0.1), (v) => v + " kWh");
    const slot = (box.right - box.left) / days;
    const bar = Math.max(1, (slot - 2) / series.length);
    series.forEach((s, index) => {
      for (const [t, value] of s.points || []) {
        const day = Math.round((t - firstDay) / 86400);
        const left = box.left + day * slot + 1 + index * bar;
        chart.append(svg("rect", {
          x: left.toFixed(1), y: y(value).toFixed(1), width: bar.toFixed(1),
          height: Math.max(0, box.bottom - y(value)).toFixed(1), fill: s.color, "data-series": s.key,
        }));
      }
    });
    for (let day = 0; day < days; day += 7) {
      const date = new Date((firstDay + day * 86400) * 1000);
      const label = svg("text", { x: box.left + day * slot + slot / 2, y: box.height - 6 });
      label.textContent = date.toLocaleDateString([], { day: "numeric", month: "short" });
      chart.append(label);
    }
  }

  // -- the battery automation's plan (GET /api/plan, when [octopus] is configured) ---------------

  const ACTIONS = {
    charge: ["Charge from the grid", "--battery"],
    hold: ["Hold the charge", "--pv"],
    use: ["Battery serves the house", "--load"],
    export: ["Export from the battery", "--export"],
    idle: ["Idle", "--grid"],
  };

  async function loadPlan() {
    let plan;
    try {
      const response = await fetch("api/plan", { cache: "no-store" });
      if (!response.ok) return; // no automation configured
      plan = await response.json();
    } catch (error) {
      return;
    }
    let card = document.getElementById("plan");
    if (!card) {
      card = el("section", { id: "plan", class: "card", "data-plan": "" });
      document.getElementById("inverters").after(card);
    }
    const chart = svg("svg", { class: "chart", "data-chart": "plan", role: "img" });
    const state = !plan.enabled ? "off: it only logs what it would do ([rules] enabled = yes)" :
      plan.paused ? "paused until midnight" : plan.read_only ? "read only: plans, writes nothing" :
      `the ${plan.planner} planner`;
    card.replaceChildren(el("h3", {}, `Octopus Agile plan for ${plan.inverter}: ${state}`),
      el("div", { class: "sub", "data-plan-summary": "" }, plan.summary || "no plan yet"),
      chart, legend(Object.values(ACTIONS).map(([label, variable]) => ["", label, variable])));
    const slots = plan.slots || [];
    if (!slots.length) return message(chart, "No prices yet");
    const prices = slots.map((s) => s.price);
    const { box, y } = frame(chart, Math.min(0, ...prices), Math.max(...prices, 1), (v) => v + "p");
    const width = (box.right - box.left) / slots.length;
    slots.forEach((s, index) => {
      const top = Math.min(y(s.price), y(0));
      chart.append(svg("rect", {
        x: (box.left + index * width + 0.5).toFixed(1), y: top.toFixed(1),
        width: Math.max(1, width - 1).toFixed(1),
        height: Math.max(1, Math.abs(y(s.price) - y(0))).toFixed(1),
        fill: color((ACTIONS[s.action] || ACTIONS.idle)[1]), "data-action": s.action,
      }));
      const start = new Date(s.start);
      if (start.getMinutes() === 0 && start.getHours() % 6 === 0) {
        const label = svg("text", { x: box.left + index * width, y: box.height - 6 });
        label.textContent = String(start.getHours()).padStart(2, "0") + ":00";
        chart.append(label);
      }
    });
  }

  // -- the whole page ---------------------------------------------------------------------------

  function showFooter() {
    const stores = (state.history && state.history.stores) || [];
    const lines = stores.map((s) => s.failing ?
      `History: ${s.store}: failing (${s.error}); ${s.pending} samples waiting, ${s.lost} lost` :
      `History: ${s.store}: ${s.written} samples written` + (s.lost ? `, ${s.lost} lost` : ""));
    if (!state.history.enabled) lines.push("History: off (no [history] section in config.ini)");
    lines.push(state.control ? "Control: on ([server] control = yes)" :
      "Read only: [server] control = yes lets this page change settings");
    document.getElementById("footer").replaceChildren(...lines.map((line) => el("div", {}, line)));
  }

  function showState(newState) {
    state = newState;
    clockOffset = state.now * 1000 - Date.now();
    for (const inverter of state.inverters) showInverter(inverter);
    showFooter();
  }

  function setLink(text, kind) {
    const link = document.getElementById("link");
    link.textContent = text;
    link.dataset.link = kind;
  }

  function connect() {
    const events = new EventSource("api/events");
    events.addEventListener("open", () => setLink("live", "live"));
    events.addEventListener("error", () => setLink("reconnecting…", "lost"));
    events.addEventListener("state", (event) => showState(JSON.parse(event.data)));
    events.addEventListener("inverter", (event) => {
      const inverter = JSON.parse(event.data);
      const index = state.inverters.findIndex((i) => i.name === inverter.name);
      if (index < 0) state.inverters.push(inverter);
      else state.inverters[index] = inverter;
      showInverter(inverter);
    });
  }

  function tick() {
    for (const v of views.values()) {
      if (v.inverter) v.lastFrame.textContent = ago(v.inverter.last_frame);
    }
  }

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => state.inverters.forEach(loadCharts), 300);
  });
  connect();
  loadPlan();
  setInterval(loadPlan, CHART_REFRESH);
  setInterval(tick, 1000);
  setInterval(() => { state.inverters.forEach(loadCharts); showFooter(); }, CHART_REFRESH);
})();
