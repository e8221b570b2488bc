// The "Serve a model" page's chart (Chart.js): cost per million output tokens against TTFT, one
// point per GPU model's cheapest placement, redrawn each time htmx swaps in a new quote panel
// (whose #frontier-points carries the points). The chart is made once and updated, never
// destroyed: destroying writes a style attribute, which the strict Content-Security-Policy refuses.
(function () {
  "use strict";
  const card = document.getElementById("serve-card");
  const figure = document.getElementById("frontier-figure");
  if (!card || !figure || !window.Chart) return;
  // Every word the chart shows comes from the page (data-*), translated there.
  const words = card.dataset;
  const COLOURS = { chosen: "#d17a22", other: "#1f7a8c" };
  let chart = null;

  function dataset(label, colour, radius) {
    return { label: label, data: [], backgroundColor: colour, borderColor: colour, pointRadius: radius };
  }

  function make() {
    return new window.Chart(document.getElementById("frontier-chart"), {
      type: "scatter",
      data: { datasets: [dataset(words.chosenLabel, COLOURS.chosen, 8), dataset(words.otherLabel, COLOURS.other, 6)] },
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
              // Beside the point, or before it where the name would run past the plot's right edge.
              const name = ds.data[k].name;
              const room = c.chartArea.right - element.x - 8;
              ctx.textAlign = ctx.measureText(name).width > room ? "right" : "left";
              ctx.fillText(name, element.x + (ctx.textAlign === "right" ? -10 : 8), element.y - 8);
            });
          });
          ctx.restore();
        },
      }],
    });
  }

  function draw() {
    const source = document.getElementById("frontier-points");
    const points = source ? JSON.parse(source.dataset.points || "[]") : [];
    figure.hidden = points.length === 0;
    if (figure.hidden) return;
    if (!chart) chart = make();
    const as = function (p) { return { x: p.ttft_ms, y: p.price, name: p.label }; };
    chart.data.datasets[0].data = points.filter(function (p) { return p.chosen; }).map(as);
    chart.data.datasets[1].data = points.filter(function (p) { return !p.chosen; }).map(as);
    chart.update();
  }

  // After any swap settles (the quote panel is the page's only htmx target): its points may be new.
  document.body.addEventListener("htmx:afterSettle", draw);
  draw();
})();
