// Small self-contained SVG figures for reports: side-by-side 2-D scatter panels on shared axes, and line
// charts for training curves. Output is plain text (no DOM), sized to stay small: points are subsampled and
// coordinates written with one decimal.

export interface ScatterPanel {
  title: string;
  /** [n, 2] row-major. */
  points: Float32Array | Float64Array;
  /** Fill colour of every point (ignored when `values` is given). */
  color?: string;
  /** One value per point, mapped to colour (viridis) over the panel's value range or opts.valueRange. */
  values?: ArrayLike<number>;
}

export interface ScatterOptions {
  /** Size of one panel in pixels, margins included (default 320 x 320). */
  width?: number;
  height?: number;
  /** Axis ranges shared by every panel; points outside are left out. Default: the data's range, padded 5%. */
  xRange?: [number, number];
  yRange?: [number, number];
  /** Most points drawn per panel, taken at an even stride through the data (default 2000). */
  maxPoints?: number;
  /** Value range of the colour scale, shared by all panels; default: each panel's own range. */
  valueRange?: [number, number];
  /** Circle radius in pixels (default 1.6). */
  radius?: number;
}

export interface LineSeries {
  name: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
}

export interface LineOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Logarithmic y axis; non-positive values leave gaps. */
  logY?: boolean;
  /** Whole figure in pixels (default 640 x 400). */
  width?: number;
  height?: number;
  /** Most points drawn per series, at an even stride that keeps the last point (default 2000). */
  maxPoints?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
/** Viridis at five stops, interpolated linearly in RGB. */
const VIRIDIS = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

const MARGIN = { left: 46, right: 12, top: 28, bottom: 34 };
const FONT = 'font-family="sans-serif"';

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

const fmt1 = (v: number) => (Math.round(v * 10) / 10).toString();

/** Tick label: up to 4 significant digits, exponent form for very large or small magnitudes. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  return String(Number(v.toPrecision(4)));
}

/** About `count` evenly spaced "nice" values (1, 2 or 5 times a power of ten) inside [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return Number.isFinite(lo) ? [lo] : [];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const frac = raw / mag;
  const step = (frac < 1.5 ? 1 : frac < 3 ? 2 : frac < 7 ? 5 : 10) * mag;
  const out: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) {
    // snap to the step's decimals so labels read 0.3, not 0.30000000000000004
    out.push(Number((k * step).toPrecision(12)));
  }
  return out;
}

function finiteRange(values: Iterable<number>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

function padRange(r: [number, number] | null): [number, number] {
  if (!r) return [-1, 1];
  const [lo, hi] = r;
  if (hi === lo) return [lo - 1, hi + 1];
  const pad = 0.05 * (hi - lo);
  return [lo - pad, hi + pad];
}

function checkRange(r: [number, number] | undefined, what: string): void {
  if (r && !(Number.isFinite(r[0]) && Number.isFinite(r[1]) && r[1] > r[0])) {
    throw new Error(`scatterSvg: ${what} must be [lo, hi] with lo < hi, got [${r}]`);
  }
}

function* coords(panels: ScatterPanel[], axis: 0 | 1): Iterable<number> {
  for (const { points } of panels) for (let i = axis; i < points.length; i += 2) yield points[i]!;
}

function* valuesOf(values: ArrayLike<number>): Iterable<number> {
  for (let i = 0; i < values.length; i++) yield values[i]!;
}

export function viridis(t: number): string {
  const u = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(u));
  const f = u - i;
  const a = VIRIDIS[i]!;
  const b = VIRIDIS[i + 1]!;
  const hex = (k: number) => Math.round(a[k]! + f * (b[k]! - a[k]!)).toString(16).padStart(2, '0');
  return `#${hex(0)}${hex(1)}${hex(2)}`;
}

/** Frame, grid ticks and tick labels of one plot area; `sx`/`sy` map data to pixels. */
function axes(
  x0: number, y0: number, w: number, h: number,
  xTicks: number[], yTicks: number[], sx: (v: number) => number, sy: (v: number) => number,
  yLabel: (v: number) => string = formatTick,
): string {
  const parts: string[] = [];
  parts.push(`<rect x="${fmt1(x0)}" y="${fmt1(y0)}" width="${fmt1(w)}" height="${fmt1(h)}" fill="white" stroke="#444" stroke-width="1"/>`);
  const tick: string[] = [];
  const labels: string[] = [];
  for (const v of xTicks) {
    const px = fmt1(sx(v));
    tick.push(`M${px},${fmt1(y0 + h)}v4`);
    labels.push(`<text x="${px}" y="${fmt1(y0 + h + 15)}" text-anchor="middle">${escapeXml(formatTick(v))}</text>`);
  }
  for (const v of yTicks) {
    const py = fmt1(sy(v));
    tick.push(`M${fmt1(x0)},${py}h-4`);
    labels.push(`<text x="${fmt1(x0 - 6)}" y="${py}" text-anchor="end" dominant-baseline="middle">${escapeXml(yLabel(v))}</text>`);
  }
  if (tick.length) parts.push(`<path d="${tick.join('')}" stroke="#444" stroke-width="1" fill="none"/>`);
  parts.push(`<g class="ticks" ${FONT} font-size="10" fill="#222">${labels.join('')}</g>`);
  return parts.join('\n');
}

/**
 * Side-by-side scatter panels on shared axes (one row), each with a title, a frame, ticks and tick labels.
 * Points outside the ranges are dropped; at most `maxPoints` are drawn per panel.
 */
export function scatterSvg(panels: ScatterPanel[], opts: ScatterOptions = {}): string {
  if (panels.length === 0) throw new Error('scatterSvg: no panels');
  checkRange(opts.xRange, 'xRange');
  checkRange(opts.yRange, 'yRange');
  panels.forEach((p, i) => {
    if (p.points.length % 2 !== 0) throw new Error(`scatterSvg: panel ${i} ("${p.title}") has an odd number of coordinates`);
    if (p.values && p.values.length !== p.points.length / 2) {
      throw new Error(`scatterSvg: panel ${i} ("${p.title}") has ${p.values.length} values for ${p.points.length / 2} points`);
    }
  });
  const pw = opts.width ?? 320;
  const ph = opts.height ?? 320;
  const maxPoints = opts.maxPoints ?? 2000;
  const radius = opts.radius ?? 1.6;
  const xr = opts.xRange ?? padRange(finiteRange(coords(panels, 0)));
  const yr = opts.yRange ?? padRange(finiteRange(coords(panels, 1)));
  const w = pw - MARGIN.left - MARGIN.right;
  const h = ph - MARGIN.top - MARGIN.bottom;
  const xTicks = niceTicks(xr[0], xr[1]);
  const yTicks = niceTicks(yr[0], yr[1]);
  const body: string[] = [];
  panels.forEach((panel, k) => {
    const ox = k * pw + MARGIN.left;
    const oy = MARGIN.top;
    const sx = (v: number) => ox + ((v - xr[0]) / (xr[1] - xr[0])) * w;
    const sy = (v: number) => oy + h - ((v - yr[0]) / (yr[1] - yr[0])) * h;
    body.push(`<g class="panel">`);
    body.push(`<text x="${fmt1(ox + w / 2)}" y="${fmt1(oy - 10)}" text-anchor="middle" ${FONT} font-size="13">${escapeXml(panel.title)}</text>`);
    body.push(axes(ox, oy, w, h, xTicks, yTicks, sx, sy));
    const n = panel.points.length / 2;
    const take = Math.min(n, maxPoints);
    const color = panel.color ?? PALETTE[k % PALETTE.length]!;
    const valueRange = panel.values ? (opts.valueRange ?? finiteRange(valuesOf(panel.values))) : null;
    const circles: string[] = [];
    for (let j = 0; j < take; j++) {
      const i = take === n ? j : Math.floor((j * n) / take);
      const x = panel.points[2 * i]!;
      const y = panel.points[2 * i + 1]!;
      if (!(x >= xr[0] && x <= xr[1] && y >= yr[0] && y <= yr[1])) continue;
      let fill = '';
      if (panel.values && valueRange) {
        const [lo, hi] = valueRange;
        fill = ` fill="${viridis(hi > lo ? (panel.values[i]! - lo) / (hi - lo) : 0.5)}"`;
      }
      circles.push(`<circle cx="${fmt1(sx(x))}" cy="${fmt1(sy(y))}" r="${radius}"${fill}/>`);
    }
    body.push(`<g class="points" fill="${escapeXml(color)}" fill-opacity="0.55">${circles.join('')}</g>`);
    if (panel.values && valueRange) {
      body.push(`<text x="${fmt1(ox + w)}" y="${fmt1(oy + h + 28)}" text-anchor="end" ${FONT} font-size="9" fill="#555">colour: ${escapeXml(formatTick(valueRange[0]))} to ${escapeXml(formatTick(valueRange[1]))}</text>`);
    }
    body.push(`</g>`);
  });
  const width = pw * panels.length;
  return svgDocument(width, ph, body);
}

function svgDocument(width: number, height: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...body,
    `</svg>`,
    '',
  ].join('\n');
}

/**
 * A line chart of one or more series (e.g. losses against steps) with axes, tick labels, axis labels and a
 * legend. Non-finite points (and non-positive ones on a log axis) break the line.
 */
/** Series with at most this many points get a marker at each. */
const MARKED_POINTS = 12;

export function lineSvg(series: LineSeries[], opts: LineOptions = {}): string {
  if (series.length === 0) throw new Error('lineSvg: no series');
  series.forEach((s, i) => {
    if (s.x.length !== s.y.length) throw new Error(`lineSvg: series ${i} ("${s.name}") has ${s.x.length} x and ${s.y.length} y values`);
  });
  const width = opts.width ?? 640;
  const height = opts.height ?? 400;
  const maxPoints = Math.max(2, opts.maxPoints ?? 2000);
  const logY = opts.logY ?? false;
  const ty = (v: number) => (logY ? (v > 0 ? Math.log10(v) : NaN) : v);
  // the legend has a column of its own right of the plot, so it never covers a line
  const legendWidth = Math.min(Math.round(width * 0.4), 34 + 6.5 * Math.max(...series.map((s) => s.name.length)));
  const margin = { left: 62, right: 16 + legendWidth, top: opts.title ? 30 : 14, bottom: opts.xLabel ? 44 : 30 };
  const w = width - margin.left - margin.right;
  const h = height - margin.top - margin.bottom;
  const usable = (s: LineSeries, i: number) => Number.isFinite(s.x[i]!) && Number.isFinite(ty(s.y[i]!));
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of series) {
    for (let i = 0; i < s.x.length; i++) {
      if (!usable(s, i)) continue;
      xs.push(s.x[i]!);
      ys.push(ty(s.y[i]!));
    }
  }
  const xr = finiteRange(xs) ?? [0, 1];
  const xRange: [number, number] = xr[1] > xr[0] ? xr : [xr[0] - 1, xr[1] + 1];
  const yRange = padRange(finiteRange(ys));
  const sx = (v: number) => margin.left + ((v - xRange[0]) / (xRange[1] - xRange[0])) * w;
  const sy = (v: number) => margin.top + h - ((v - yRange[0]) / (yRange[1] - yRange[0])) * h;
  const xTicks = niceTicks(xRange[0], xRange[1], 6);
  let yTicks: number[];
  let yTickLabel = formatTick;
  if (logY) {
    const lo = Math.ceil(yRange[0]);
    const hi = Math.floor(yRange[1]);
    const every = Math.max(1, Math.ceil((hi - lo + 1) / 8));
    yTicks = [];
    for (let e = lo; e <= hi; e += every) yTicks.push(e);
    if (yTicks.length < 2) yTicks = niceTicks(yRange[0], yRange[1]);
    yTickLabel = (e: number) => formatTick(10 ** e);
  } else {
    yTicks = niceTicks(yRange[0], yRange[1]);
  }
  const body: string[] = [];
  if (opts.title) body.push(`<text x="${fmt1(margin.left + w / 2)}" y="18" text-anchor="middle" ${FONT} font-size="14">${escapeXml(opts.title)}</text>`);
  body.push(axes(margin.left, margin.top, w, h, xTicks, yTicks, sx, sy, yTickLabel));
  if (opts.xLabel) body.push(`<text x="${fmt1(margin.left + w / 2)}" y="${height - 8}" text-anchor="middle" ${FONT} font-size="12">${escapeXml(opts.xLabel)}</text>`);
  if (opts.yLabel) {
    const cy = fmt1(margin.top + h / 2);
    body.push(`<text x="14" y="${cy}" text-anchor="middle" transform="rotate(-90 14 ${cy})" ${FONT} font-size="12">${escapeXml(opts.yLabel)}</text>`);
  }
  series.forEach((s, k) => {
    const n = s.x.length;
    const color = PALETTE[k % PALETTE.length]!;
    const take = Math.min(n, maxPoints);
    let d = '';
    let pen = false;
    for (let j = 0; j < take; j++) {
      const i = take === n ? j : Math.round((j * (n - 1)) / (take - 1));
      if (!usable(s, i)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${fmt1(sx(s.x[i]!))},${fmt1(sy(ty(s.y[i]!)))}`;
      pen = true;
    }
    body.push(`<path class="series" d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    // a series of few points shows them, so a two-point line reads as two measurements
    const points = [...Array(n).keys()].filter((i) => usable(s, i));
    if (points.length > 0 && points.length <= MARKED_POINTS) {
      const dots = points.map((i) => `<circle cx="${fmt1(sx(s.x[i]!))}" cy="${fmt1(sy(ty(s.y[i]!)))}" r="3"/>`).join('');
      body.push(`<g class="markers" fill="${color}">${dots}</g>`);
    }
    const ly = margin.top + 12 + 16 * k;
    const lx = margin.left + w + 12;
    body.push(`<g class="legend" ${FONT} font-size="11"><path d="M${lx},${ly}h18" stroke="${color}" stroke-width="2"/><text x="${lx + 24}" y="${ly}" dominant-baseline="middle">${escapeXml(s.name)}</text></g>`);
  });
  return svgDocument(width, height, body);
}

/** Charts stacked top to bottom in one SVG (each keeps its own height). */
export function stackSvgs(charts: string[], width = 640): string {
  let y = 0;
  const nested = charts.map((c) => {
    const h = Number(/height="(\d+)"/.exec(c)?.[1] ?? 300);
    const out = c.replace('<svg xmlns="http://www.w3.org/2000/svg" ', `<svg x="0" y="${y}" `);
    y += h;
    return out;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}">\n${nested.join('\n')}</svg>\n`;
}
