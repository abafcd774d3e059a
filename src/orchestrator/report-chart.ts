/**
 * Line charts over time as inline SVG, for the HTML report of a migration (report-html.ts):
 * series of (seconds, value) points, shaded time spans (downtime, postcopy), vertical markers
 * (pass boundaries), axes with round ticks and units. Pure string building, no script: the
 * page renders in any browser without JavaScript. Mirrors no QEMU file.
 */

/** One line of a chart: its points in seconds since `migrate` and the chart's unit. */
export interface ChartSeries {
  /** A stable id (CSS class `series-<id>`, `data-series`), e.g. `throughput`. */
  id: string;
  /** The name the legend shows. */
  name: string;
  color: string;
  points: readonly (readonly [number, number])[];
  /**
   * Drawn as steps: `after`, each value holds until the next point (the pass, a rate QEMU
   * measures at each sync); `before`, each value covers the time since the point before (a
   * throughput averaged over the sample window).
   */
  step?: 'after' | 'before';
}

/** A span of time shaded on the chart, e.g. the downtime window. */
export interface ChartSpan {
  id: string;
  startS: number;
  endS: number;
  color: string;
  opacity: number;
  /** The tooltip: what the span is. */
  label: string;
  /** A short text written above the span, e.g. `downtime 101 ms`. */
  tag?: string;
  /** Which side of the span the tag goes (default: inward, away from the nearer edge). */
  tagSide?: 'left' | 'right';
}

/** A vertical line at one time, e.g. the start of a pass. */
export interface ChartMarker {
  atS: number;
  label: string;
}

export interface ChartSpec {
  id: string;
  /** The y axis's unit, shown beside its ticks: `MiB/s`, `MiB`, `pages/s`. */
  unit: string;
  series: ChartSeries[];
  /** The x axis runs from 0 to this many seconds. */
  endS: number;
  spans?: ChartSpan[];
  markers?: ChartMarker[];
  /** Height in px (default 200). */
  height?: number;
  /** Whole numbers only on the y axis (a pass count). */
  integer?: boolean;
  /**
   * Cut the y axis above the bulk of the points when a few stand far above it (the burst of
   * the switchover, sent without the bandwidth limit): they are drawn at the top edge, and
   * the highest is written there.
   */
  clipPeaks?: boolean;
}

const WIDTH = 960;
const MARGIN = { left: 72, right: 20, top: 26, bottom: 38 };
/** Pass markers beyond this many would make a grey wall: the step line says it then. */
const MAX_MARKERS = 60;

/** Escapes text for HTML and SVG content and attribute values (`&`, `<`, `>`, quotes). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * At most `max` points of a series in time order, so a long migration draws a page of bounded
 * size: the points split into max/2 buckets, each kept as its lowest and highest point, so
 * spikes and dips stay visible. The first and last points are always kept.
 */
export function downsample<T extends readonly [number, number]>(points: readonly T[], max: number): T[] {
  if (points.length <= max) return [...points];
  const buckets = Math.max(1, Math.floor((max - 2) / 2));
  const inner = points.slice(1, -1);
  const out: T[] = [points[0] as T];
  for (let b = 0; b < buckets; b++) {
    const part = inner.slice(
      Math.floor((b * inner.length) / buckets),
      Math.floor(((b + 1) * inner.length) / buckets),
    );
    if (part.length === 0) continue;
    let lo = part[0] as T;
    let hi = part[0] as T;
    for (const p of part) {
      if (p[1] < lo[1]) lo = p;
      if (p[1] > hi[1]) hi = p;
    }
    if (lo === hi) out.push(lo);
    else out.push(...(lo[0] <= hi[0] ? [lo, hi] : [hi, lo]));
  }
  out.push(points[points.length - 1] as T);
  return out;
}

/** A round step (1, 2 or 5 times a power of ten) that splits `range` into about `count` parts. */
export function niceStep(range: number, count: number, integer = false): number {
  if (!(range > 0)) return 1;
  const raw = range / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  return integer ? Math.max(1, Math.round(step)) : step;
}

/** A tick's text: as many decimals as the step needs; k and M for large values. */
export function tickLabel(v: number, step: number): string {
  if (Math.abs(v) >= 1e6 && step >= 1e5) return `${trim(v / 1e6, step / 1e6)}M`;
  if (Math.abs(v) >= 1e4 && step >= 1e3) return `${trim(v / 1e3, step / 1e3)}k`;
  return trim(v, step);
}

function trim(v: number, step: number): string {
  const decimals = Math.min(6, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

/** Maps seconds and values to pixels inside the plot area. */
interface Frame {
  x(s: number): number;
  y(v: number): number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function frameOf(endS: number, yMax: number, height: number): Frame {
  const left = MARGIN.left;
  const right = WIDTH - MARGIN.right;
  const top = MARGIN.top;
  const bottom = height - MARGIN.bottom;
  return {
    left,
    right,
    top,
    bottom,
    x: (s) => left + (Math.max(0, Math.min(endS, s)) / endS) * (right - left),
    y: (v) => bottom - (Math.max(0, Math.min(yMax, v)) / yMax) * (bottom - top),
  };
}

const px = (n: number) => (Math.round(n * 10) / 10).toString();

/** The axes: grid lines with tick labels on both, the y unit, and "s" under the x axis. */
function axes(f: Frame, endS: number, yMax: number, yStep: number, unit: string): string {
  const parts: string[] = [];
  for (let v = 0; v <= yMax + yStep / 1e6; v += yStep) {
    const y = px(f.y(v));
    parts.push(
      `<line class="grid" x1="${f.left}" x2="${f.right}" y1="${y}" y2="${y}"/>`,
      `<text class="tick" x="${f.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${escapeHtml(tickLabel(v, yStep))}</text>`,
    );
  }
  // From 20 minutes on the x axis counts minutes: 7200 s reads worse than 120 min.
  const div = endS >= 1200 ? 60 : 1;
  const xStep = niceStep(endS / div, 10) * div;
  for (let s = 0; s <= endS + xStep / 1e6; s += xStep) {
    const x = px(f.x(s));
    parts.push(
      `<line class="grid" x1="${x}" x2="${x}" y1="${f.top}" y2="${f.bottom}"/>`,
      `<text class="tick" x="${x}" y="${f.bottom + 15}" text-anchor="middle">${escapeHtml(tickLabel(s / div, xStep / div))}</text>`,
    );
  }
  parts.push(
    `<line class="axis" x1="${f.left}" x2="${f.right}" y1="${f.bottom}" y2="${f.bottom}"/>`,
    `<line class="axis" x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.bottom}"/>`,
    `<text class="unit" x="${f.left - 6}" y="${f.top - 12}" text-anchor="end">${escapeHtml(unit)}</text>`,
    `<text class="unit" x="${f.right}" y="${f.bottom + 32}" text-anchor="end">${div === 60 ? 'min' : 's'} since migrate</text>`,
  );
  return parts.join('');
}

/** Shaded spans, at least 3 px wide so a 1 ms downtime still shows, then their tags. */
function spans(f: Frame, list: readonly ChartSpan[]): string {
  const rects = list.map((s) => {
    const x0 = f.x(s.startS);
    const w = Math.max(3, f.x(s.endS) - x0);
    return `<rect class="span span-${escapeHtml(s.id)}" data-span="${escapeHtml(s.id)}" x="${px(x0)}" y="${f.top}" width="${px(w)}" height="${px(f.bottom - f.top)}" fill="${escapeHtml(s.color)}" fill-opacity="${s.opacity}"><title>${escapeHtml(s.label)}</title></rect>`;
  });
  return rects.join('') + spanTags(f, list);
}

/**
 * The spans' tags above the plot, the last span's first (it is drawn on top: the most
 * important). Each stays inside the chart; one that would overlap a tag already placed goes
 * to its left, or is left out (the legend names the colors).
 */
function spanTags(f: Frame, list: readonly ChartSpan[]): string {
  const taken: [number, number][] = [];
  const out: string[] = [];
  for (const s of [...list].reverse()) {
    if (!s.tag) continue;
    const x0 = f.x(s.startS);
    const x1 = Math.max(x0 + 3, f.x(s.endS));
    const width = s.tag.length * 6.2;
    const leftward = s.tagSide ? s.tagSide === 'left' : (x0 + x1) / 2 > (f.left + f.right) / 2;
    let from = Math.min(f.right - width, Math.max(f.left, leftward ? x1 - width : x0));
    const clash = () => taken.find(([a, b]) => from < b + 6 && from + width > a - 6);
    const hit = clash();
    if (hit) from = hit[0] - 8 - width;
    if (from < f.left || clash()) continue;
    taken.push([from, from + width]);
    out.push(
      `<text class="span-tag" x="${px(from)}" y="${f.top - 4}" fill="${escapeHtml(s.color)}">${escapeHtml(s.tag)}</text>`,
    );
  }
  return out.join('');
}

/** Roughly how wide a marker label is drawn (10 px sans-serif), to keep labels apart. */
const labelWidth = (text: string) => text.length * 5.6 + 4;

/**
 * Vertical dashed markers with their labels (none when there are too many to read); a label
 * that would overlap the one before is left out, its line stays.
 */
function markers(f: Frame, list: readonly ChartMarker[]): string {
  if (list.length > MAX_MARKERS) return '';
  let freeFrom = Number.NEGATIVE_INFINITY;
  return list
    .map((m) => {
      const at = f.x(m.atS);
      const x = px(at);
      // Near the right edge the label goes left of its line, so it is not cut.
      const end = at + labelWidth(m.label) > f.right;
      const [from, to] = end ? [at - labelWidth(m.label), at] : [at, at + labelWidth(m.label)];
      let label = '';
      if (from >= freeFrom) {
        freeFrom = to + 4;
        label = `<text class="marker-label" x="${x}" y="${f.top + 9}" dx="${end ? -2 : 2}" text-anchor="${end ? 'end' : 'start'}">${escapeHtml(m.label)}</text>`;
      }
      return `<line class="marker" x1="${x}" x2="${x}" y1="${f.top}" y2="${f.bottom}"/>${label}`;
    })
    .join('');
}

/** The path of one series; steps hold each value until the next point. */
function seriesPath(f: Frame, s: ChartSeries): string {
  const cmds: string[] = [];
  let prevY: number | undefined;
  for (const [i, [t, v]] of s.points.entries()) {
    const x = px(f.x(t));
    const y = f.y(v);
    if (i === 0) cmds.push(`M${x} ${px(y)}`);
    else if (s.step === 'after' && prevY !== undefined) cmds.push(`H${x}V${px(y)}`);
    else if (s.step === 'before') cmds.push(`V${px(y)}H${x}`);
    else cmds.push(`L${x} ${px(y)}`);
    prevY = y;
  }
  // A single point still shows: a dot, and a path of a few pixels.
  const dots =
    s.points.length < 3
      ? s.points
          .map(
            ([t, v]) => `<circle cx="${px(f.x(t))}" cy="${px(f.y(v))}" r="3" fill="${escapeHtml(s.color)}"/>`,
          )
          .join('')
      : '';
  if (s.points.length === 1) cmds.push('h3');
  const id = escapeHtml(s.id);
  return `<path class="series series-${id}" data-series="${id}" d="${cmds.join('')}" fill="none" stroke="${escapeHtml(s.color)}" stroke-width="2" stroke-linejoin="round"/>${dots}`;
}

/**
 * The value the y axis must reach: the highest point, or with `clip` 1.5 times the 90th
 * percentile when the highest is more than 3 times that (a few peaks over a flat bulk).
 */
function scaleTop(values: number[], clip: boolean): number {
  const highest = values.reduce((a, b) => Math.max(a, b), 0);
  if (!clip || values.length < 8) return highest;
  const sorted = [...values].sort((a, b) => a - b);
  const p90 = sorted[Math.floor(0.9 * (sorted.length - 1))] ?? 0;
  return p90 > 0 && highest > 3 * p90 ? 1.5 * p90 : highest;
}

/** The highest point of a series cut by the y axis, written at the top edge: `↑ 1000 MiB/s`. */
function peakLabel(f: Frame, s: ChartSeries, yMax: number, unit: string): string {
  const peak = s.points.reduce<readonly [number, number] | undefined>(
    (a, p) => (a && a[1] >= p[1] ? a : p),
    undefined,
  );
  if (!peak || peak[1] <= yMax * 1.0001) return '';
  const x = f.x(peak[0]);
  const right = x > (f.left + f.right) / 2;
  const label = `\u2191 ${Math.round(peak[1])} ${unit}`;
  return `<text class="peak" x="${px(x)}" y="${f.top + 24}" dx="${right ? -4 : 4}" text-anchor="${right ? 'end' : 'start'}" fill="${escapeHtml(s.color)}">${escapeHtml(label)}</text>`;
}

/**
 * One chart as an `<svg>` element: grid and ticks, the spans under the lines, the markers,
 * the series. The y axis starts at 0 and ends at a round value above the highest point.
 */
export function renderChart(spec: ChartSpec): string {
  const height = spec.height ?? 200;
  const endS = spec.endS > 0 ? spec.endS : 1;
  const highest = scaleTop(
    spec.series.flatMap((s) => s.points.map((p) => p[1])),
    spec.clipPeaks === true,
  );
  // All zeros (nothing dirtied): one step of 1, not a scale of fractions of nothing.
  const yStep = highest > 0 ? niceStep(highest, 4, spec.integer) : 1;
  const yMax = Math.max(yStep, Math.ceil(highest / yStep - 1e-9) * yStep);
  const f = frameOf(endS, yMax, height);
  const names = spec.series.map((s) => s.name).join(', ');
  return [
    `<svg class="chart" id="chart-${escapeHtml(spec.id)}" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" role="img" aria-label="${escapeHtml(names)}" xmlns="http://www.w3.org/2000/svg">`,
    axes(f, endS, yMax, yStep, spec.unit),
    spans(f, spec.spans ?? []),
    markers(f, spec.markers ?? []),
    ...spec.series.filter((s) => s.points.length > 0).map((s) => seriesPath(f, s)),
    ...spec.series.map((s) => peakLabel(f, s, yMax, spec.unit)),
    '</svg>',
  ].join('');
}
