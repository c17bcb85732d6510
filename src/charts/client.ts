/**
 * Turns the build-time chart images into live vega views (tooltips, zoom, clickable marks).
 * vega-embed is bundled by Vite from node_modules and loaded only on pages that have a chart;
 * without JavaScript the static SVG stays.
 */
async function hydrate(): Promise<void> {
  const hosts = [...document.querySelectorAll<HTMLElement>('[data-chart-spec]')];
  if (hosts.length === 0) return;
  const { default: embed } = await import('vega-embed');
  for (const host of hosts) {
    const spec = JSON.parse(host.dataset.chartSpec ?? '{}');
    // Thousands of points draw faster on a canvas; tooltips, zoom and links work the same.
    const renderer = host.dataset.chartRenderer === 'canvas' ? 'canvas' : 'svg';
    const live = document.createElement('div');
    live.className = 'chart-live';
    try {
      await embed(live, spec, { renderer, actions: false });
      // Swap only once the live view exists, so a failure leaves the static picture in place.
      host.replaceChildren(live);
      host.dataset.chartLive = 'true';
    } catch (e) {
      console.error('chart could not be made interactive:', e);
    }
  }
}

void hydrate();
