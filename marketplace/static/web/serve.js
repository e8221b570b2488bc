// The "Serve a model" page's chart (Chart.js): cost per million output tokens against TTFT, one
// point per GPU model's cheapest placement, redrawn each time htmx swaps in a new quote.
// No inline code: the page runs under a strict Content-Security-Policy.
(function () {
  "use strict";
  const card = document.getElementById("serve-card");
  if (!card) return;
  // Every word the chart shows comes from the page (data-*), translated there.
  const words = card.dataset;
  const COLOURS = { chosen: "#d17a22", other: "#1f7a8c" };
  let chart = null;

  function draw() {
    const canvas = document.getElementById("frontier-chart");
    const source = document.getElementById("frontier-points");
    if (chart) { chart.destroy(); chart = null; }
    if (!canvas || !source || !window.Chart) return;
    const points = JSON.parse(source.textContent);
    const dataset = function (label, chosen) {
      const mine = points.filter(function (p) { return p.chosen === chosen; });
      const colour = chosen ? COLOURS.chosen : COLOURS.other;
      return {
        label: label,
        data: mine.map(function (p) { return { x: p.ttft_ms, y: p.price, name: p.label }; }),
        backgroundColor: colour, borderColor: colour, pointRadius: chosen ? 8 : 6,
      };
    };
    chart = new window.Chart(canvas, {
      type: "scatter",
      data: { datasets: [dataset(words.chosenLabel, true), dataset(words.otherLabel, false)] },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        scales: {
          x: { title: { display: true, text: words.ttftAxis }, beginAtZero: true },
          y: { title: { display: true, text: words.priceAxis }, beginAtZero: true },
        },
        plugins: {
          tooltip: { callbacks: { label: function (item) {
            return item.raw.name + ": " + item.raw.x + " ms, ¥" + item.raw.y.toFixed(2);
          } } },
        },
      },
      plugins: [{
        // Each point is named beside it, so a phone (no hover) still reads which GPU model it is.
        id: "pointNames",
        afterDatasetsDraw: function (c) {
          const ctx = c.ctx;
          ctx.save();
          ctx.font = "12px sans-serif";
          ctx.fillStyle = "#333";
          c.data.datasets.forEach(function (ds, i) {
            c.getDatasetMeta(i).data.forEach(function (element, k) {
              ctx.fillText(ds.data[k].name, element.x + 8, element.y - 6);
            });
          });
          ctx.restore();
        },
      }],
    });
  }

  document.body.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "serve-quote") draw();
  });
  draw();
})();
