// Two small chart kinds drawn as inline SVG (no library to download): a line chart over the
// last few minutes and horizontal bars. Colours come from CSS classes (`s0`, `s1`, ...), so
// they are themed and printed like everything else. Each chart also gets a text summary as its
// accessible name, since a picture of a line says nothing to a screen reader.
import { h } from './common.js';
import { t, fmtNum } from './i18n.js';

const PAD = { left: 56, right: 12, top: 12, bottom: 22 };

/**
 * The drawing is as wide as the chart is on screen, so that text stays at its CSS size on a
 * phone instead of shrinking with a fixed viewBox.
 */
function widthOf(svg) {
  return Math.max(300, Math.round(svg.getBoundingClientRect().width) || 600);
}

/** An axis label: whole numbers as such, fractions with one decimal. */
const tickLabel = (v) => fmtNum(v, Number.isInteger(v) ? 0 : 1);

/** A round number at or above `v`, so the axis reads 50 or 2,000 rather than 1,873. */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((n) => n >= v);
}

/**
 * series: [{name, values: [number|null], dashed?}], drawn right-aligned over `slots` points,
 * so that the newest sample is always at the right edge.
 */
export function lineChart(svg, { series, slots, label, max, digits = 0 }) {
  const W = widthOf(svg);
  const H = 200;
  const all = series.flatMap((s) => s.values).filter((v) => v != null);
  const top = max ?? niceCeil(Math.max(0, ...all));
  const x = (i, n) => PAD.left + ((W - PAD.left - PAD.right) * (slots - n + i)) / Math.max(1, slots - 1);
  const y = (v) => PAD.top + (H - PAD.top - PAD.bottom) * (1 - Math.min(v, top) / top);
  const parts = [];
  for (const f of [0, 0.5, 1]) {
    parts.push(h('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(top * f), y2: y(top * f) }));
    parts.push(h('text', { class: 'axis', x: PAD.left - 6, y: y(top * f) + 4, 'text-anchor': 'end' }, tickLabel(top * f)));
  }
  parts.push(h('text', { class: 'axis', x: W - PAD.right, y: H - 4, 'text-anchor': 'end' }, t('chart_now')));
  series.forEach((s, k) => {
    const n = s.values.length;
    // A gap (null) breaks the line rather than dropping it to zero.
    let run = [];
    const flush = () => {
      if (run.length) parts.push(h('polyline', { class: `line s${k % 8}${s.dashed ? ' dashed' : ''}`, points: run.join(' ') }));
      run = [];
    };
    s.values.forEach((v, i) => (v == null ? flush() : run.push(`${x(i, n).toFixed(1)},${y(v).toFixed(1)}`)));
    flush();
  });
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.replaceChildren(...parts);
  const latest = series.map((s) => `${s.name}: ${fmtNum(s.values.at(-1) ?? 0, digits)}`).join(', ');
  svg.setAttribute('aria-label', `${label}. ${latest || t('chart_empty')}`);
}

/** rows: [{label, values: [number, ...]}]: one thin bar per value, stacked under its label. */
export function barChart(svg, { rows, label }) {
  const W = widthOf(svg);
  const bar = 14;
  const rowH = 10 + bar * Math.max(1, ...rows.map((r) => r.values.length));
  const H = Math.max(40, PAD.top + rows.length * rowH);
  const labelW = Math.min(150, W * 0.3);
  const top = niceCeil(Math.max(0, ...rows.flatMap((r) => r.values)));
  const width = (v) => ((W - labelW - 70) * v) / top;
  const parts = [];
  rows.forEach((r, i) => {
    const y0 = PAD.top / 2 + i * rowH;
    const fits = Math.floor(labelW / 9);
    const name = r.label.length > fits ? `${r.label.slice(0, fits - 1)}…` : r.label;
    parts.push(h('text', { class: 'label', x: labelW - 8, y: y0 + rowH / 2 + 2, 'text-anchor': 'end' }, h('title', {}, r.label), name));
    r.values.forEach((v, k) => {
      const yy = y0 + 5 + k * bar;
      parts.push(h('rect', { class: `bar s${k}`, x: labelW, y: yy, width: Math.max(1, width(v)).toFixed(1), height: bar - 3, rx: 2 }));
      parts.push(h('text', { class: 'value', x: labelW + width(v) + 6, y: yy + bar - 5 }, fmtNum(v)));
    });
  });
  if (!rows.length) parts.push(h('text', { class: 'axis', x: W / 2, y: H / 2, 'text-anchor': 'middle' }, t('chart_empty')));
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.replaceChildren(...parts);
  const text = rows.map((r) => `${r.label}: ${r.values.map((v) => fmtNum(v)).join(' / ')}`).join(', ');
  svg.setAttribute('aria-label', `${label}. ${text || t('chart_empty')}`);
}

/** The key to a chart's colours, as text beside it. */
export function legend(el, names) {
  el.replaceChildren(...names.map((name, k) => h('span', { class: 'key' }, h('span', { class: `swatch s${k % 8}`, 'aria-hidden': 'true' }), name)));
}
