// The match monitor's charts (Chart.js), refreshed from monitor/charts.json every few seconds.
// No inline code: the page runs under a strict Content-Security-Policy.
(function () {
  "use strict";
  const root = document.getElementById("charts");
  if (!root || !window.Chart) return;
  const COLOURS = { idle: "#9aa5b1", matched: "#1f7a8c", west: "#d17a22", other: "#4c6ef5", listed: "#b8c2cc" };
  const charts = {};
  const regionSelect = document.getElementById("series-region");
  // Every word the charts show comes from the page (data-*), translated there.
  const words = root.dataset;
  // Times arrive as UTC instants; the pages speak China Standard Time.
  const clock = new Intl.DateTimeFormat(words.lang || "en-GB", {
    timeZone: "Asia/Shanghai", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  let latest = null;

  function regionName(code) {
    return (latest && latest.region_names && latest.region_names[code]) || code;
  }

  // An axis label on two lines where the name has a parenthesis ("Zhongwei cluster" / "(Ningxia
  // hub)"), so that a phone's narrow chart does not cut it off.
  function regionLabel(code) {
    const name = regionName(code);
    const cut = name.search(/ ?[(（]/);
    return cut > 0 ? [name.slice(0, cut), name.slice(cut).trim()] : name;
  }

  function make(id, config) {
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options);
    charts[id] = new window.Chart(document.getElementById(id), config);
  }

  make("chart-series", {
    type: "line",
    data: { labels: [], datasets: [
      { label: words.labelIdle, data: [], borderColor: COLOURS.idle, backgroundColor: COLOURS.idle, fill: false, tension: 0.2 },
      { label: words.labelMatched, data: [], borderColor: COLOURS.matched, backgroundColor: COLOURS.matched, fill: false, tension: 0.2 },
    ] },
    options: { scales: { x: { title: { display: true, text: words.timeAxis } }, y: { beginAtZero: true } } },
  });
  make("chart-regions", {
    type: "bar",
    data: { labels: [], datasets: [
      { label: words.labelIdleShort, data: [], backgroundColor: COLOURS.idle },
      { label: words.labelMatchedShort, data: [], backgroundColor: COLOURS.matched },
    ] },
    options: { indexAxis: "y", scales: { x: { stacked: true }, y: { stacked: true } } },
  });
  make("chart-west", {
    type: "doughnut",
    data: { labels: [words.labelWest, words.labelElsewhere], datasets: [{ data: [0, 0], backgroundColor: [COLOURS.west, COLOURS.other] }] },
  });
  make("chart-price", {
    type: "bar",
    data: { labels: [], datasets: [
      { label: words.labelPriceMatched, data: [], backgroundColor: COLOURS.matched },
      { label: words.labelPriceListed, data: [], backgroundColor: COLOURS.listed },
    ] },
    options: { scales: { y: { beginAtZero: true, title: { display: true, text: words.priceAxis } } } },
  });

  function sumSeries(data, key) {
    return data.labels.map(function (_, k) {
      return data.regions.reduce(function (total, code) { return total + data.series[code][key][k]; }, 0);
    });
  }

  function drawSeries() {
    if (!latest) return;
    const code = regionSelect.value;
    const chart = charts["chart-series"];
    chart.data.labels = (latest.times || []).map(function (t) { return clock.format(new Date(t)); });
    chart.data.datasets[0].data = code ? latest.series[code].idle : sumSeries(latest, "idle");
    chart.data.datasets[1].data = code ? latest.series[code].matched : sumSeries(latest, "matched");
    chart.update();
  }

  function syncRegionOptions(regions) {
    const known = Array.from(regionSelect.options).map(function (o) { return o.value; });
    regions.forEach(function (code) {
      if (known.indexOf(code) === -1) regionSelect.add(new Option(regionName(code), code));
    });
  }

  function draw(data) {
    latest = data;
    syncRegionOptions(data.regions);
    drawSeries();
    const last = data.labels.length - 1;
    const regions = charts["chart-regions"];
    regions.data.labels = data.regions.map(regionLabel);
    regions.data.datasets[0].data = data.regions.map(function (c) { return data.series[c].idle[last]; });
    regions.data.datasets[1].data = data.regions.map(function (c) { return data.series[c].matched[last]; });
    regions.update();
    const west = charts["chart-west"];
    west.data.datasets[0].data = [Number(data.west_share.west_gpu_hours), Number(data.west_share.other_gpu_hours)];
    west.update();
    const share = data.west_share.share;
    document.getElementById("west-share").textContent = share === null ? words.noMatches : words.shareText.replace("{percent}", String(Math.round(share * 100)));
    const price = charts["chart-price"];
    price.data.labels = data.regions.map(regionLabel);
    price.data.datasets[0].data = data.regions.map(function (c) { return data.avg_price.matched[c]; });
    price.data.datasets[1].data = data.regions.map(function (c) { return data.avg_price.listed[c]; });
    price.update();
    root.dataset.updatedAt = new Date().toISOString();
  }

  function refresh() {
    fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) draw(data); })
      .catch(function () { /* the next poll retries */ });
  }

  regionSelect.addEventListener("change", drawSeries);
  refresh();
  window.setInterval(refresh, 1000 * Number(root.dataset.pollSeconds || 5));
})();
