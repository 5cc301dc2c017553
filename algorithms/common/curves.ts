// The training-curves pictures a run directory gets (curves.svg): an offline run's losses per phase and its
// evaluation scores against the baselines, and an online run's learning curve and losses against env steps.
import { lineSvg, stackSvgs, type LineSeries } from './svg.ts';

const num = (v: unknown) => (typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : Number.NaN);

/** One SVG: a loss chart per phase and the evaluation scores of `evalPhase` with baselines, stacked. */
export function offlineCurvesSvg(
  records: Record<string, unknown>[],
  baselines: Record<string, { mean: number } | null>,
  opts: { phases: readonly string[]; evalPhase: string; policy: string },
): string {
  const charts: string[] = [];
  for (const phase of opts.phases) {
    const rows = records.filter((r) => r['phase'] === phase && typeof r['step'] === 'number' && r['eval'] === undefined);
    if (rows.length === 0) continue;
    const keys = new Set<string>();
    for (const r of rows) for (const k of Object.keys(r)) if (!['phase', 'step', 'time'].includes(k) && typeof r[k] !== 'object') keys.add(k);
    const series: LineSeries[] = [...keys].map((k) => ({ name: k, x: rows.map((r) => num(r['step'])), y: rows.map((r) => num(r[k])) }));
    if (series.length) charts.push(lineSvg(series, { title: `${phase} losses`, xLabel: 'step', width: 640, height: 300 }));
  }
  const evals = records.filter((r) => r['phase'] === opts.evalPhase && r['eval'] && typeof r['step'] === 'number');
  if (evals.length) {
    const x = evals.map((r) => num(r['step']));
    const series: LineSeries[] = [{ name: opts.policy, x, y: evals.map((r) => num((r['eval'] as Record<string, unknown>)['mean'])) }];
    for (const [name, b] of Object.entries(baselines)) if (b) series.push({ name, x, y: x.map(() => b.mean) });
    charts.push(lineSvg(series, { title: 'evaluation: normalised score', xLabel: `${opts.evalPhase} step`, width: 640, height: 300 }));
  }
  if (charts.length === 0) charts.push(lineSvg([{ name: 'no data', x: [0], y: [0] }], { title: 'no training records' }));
  return stackSvgs(charts);
}

/** Log keys that are counters, not curves. */
const NOT_CURVES = new Set(['phase', 'step', 'time', 'updates', 'episodes', 'eval', 'episodeReturn']);

/**
 * One SVG: the learning curve (evaluation return against env steps, the behaviour policy's training-episode
 * returns, flat reference lines), then one small chart per logged loss or statistic, all against env steps.
 */
export function onlineCurvesSvg(records: Record<string, unknown>[], references: Record<string, number> = {}, opts: { phase?: string; policy?: string } = {}): string {
  const phase = opts.phase ?? 'online';
  const rows = records.filter((r) => r['phase'] === phase && typeof r['step'] === 'number');
  const evals = rows.filter((r) => r['eval'] && typeof r['eval'] === 'object');
  const logs = rows.filter((r) => r['eval'] === undefined);
  const charts: string[] = [];
  const learning: LineSeries[] = [];
  const ex = evals.map((r) => num(r['step']));
  if (evals.length) learning.push({ name: `${opts.policy ?? 'policy'} (evaluation)`, x: ex, y: evals.map((r) => num((r['eval'] as Record<string, unknown>)['mean'])) });
  const episodic = logs.filter((r) => r['episodeReturn'] !== undefined);
  if (episodic.length) learning.push({ name: 'training episodes', x: episodic.map((r) => num(r['step'])), y: episodic.map((r) => num(r['episodeReturn'])) });
  const allX = [...ex, ...episodic.map((r) => num(r['step']))];
  if (learning.length && allX.length) {
    const x = [Math.min(...allX), Math.max(...allX)];
    for (const [name, v] of Object.entries(references)) learning.push({ name, x, y: [v, v] });
  }
  if (learning.length) charts.push(lineSvg(learning, { title: 'return', xLabel: 'env steps', width: 640, height: 320 }));
  const keys = new Set<string>();
  for (const r of logs) for (const k of Object.keys(r)) if (!NOT_CURVES.has(k) && typeof r[k] !== 'object') keys.add(k);
  for (const k of keys) {
    const have = logs.filter((r) => r[k] !== undefined);
    charts.push(lineSvg([{ name: k, x: have.map((r) => num(r['step'])), y: have.map((r) => num(r[k])) }], { title: k, xLabel: 'env steps', width: 640, height: 200 }));
  }
  if (charts.length === 0) charts.push(lineSvg([{ name: 'no data', x: [0], y: [0] }], { title: 'no training records' }));
  return stackSvgs(charts);
}
