// Learning curves of online runs (SAC, SDAC, ...) side by side: the evaluation returns each run's log.jsonl
// holds, against environment steps, in one SVG, and a table of return against env steps (one column per run).
//
//   node scripts/online-curves.ts --runs runs/sac-hopper-default-...,runs/sdac-hopper-default-... [--out curves.svg]
//
// The library part (readOnlineRun from bytes, onlineComparison) needs no files; main() reads the directories.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { lineSvg, type LineSeries } from '../algorithms/common/svg.ts';
import { CliError, isMainModule, parseCli, runMain, type CliSpec, type OptionSpec } from '../algorithms/common/cli.ts';

export interface OnlineRunCurve {
  /** Legend and column name. */
  name: string;
  /** Evaluations in env-step order. */
  evals: { envSteps: number; mean: number; std: number }[];
  /** Reference returns the run recorded (uniform random, scripted controller), from its summary. */
  references: Record<string, number>;
}

/**
 * A run from the text of its log.jsonl (evaluation records: {phase, step, eval: {mean, std}}) and, when given,
 * its config.json and summary.json. The name is '<algorithm> <env> <preset>' from the config, else `fallback`.
 */
export function readOnlineRun(logText: string, opts: { config?: string | null; summary?: string | null; fallback?: string } = {}): OnlineRunCurve {
  const evals: OnlineRunCurve['evals'] = [];
  for (const line of logText.split('\n')) {
    if (!line.trim()) continue;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // a partial last line of a run still going or crashed
    }
    const e = r['eval'] as Record<string, unknown> | undefined;
    if (!e || typeof e !== 'object' || typeof r['step'] !== 'number' || typeof e['mean'] !== 'number') continue;
    evals.push({ envSteps: r['step'] as number, mean: e['mean'] as number, std: typeof e['std'] === 'number' ? (e['std'] as number) : Number.NaN });
  }
  evals.sort((a, b) => a.envSteps - b.envSteps);
  let name = opts.fallback ?? 'run';
  if (opts.config) {
    const c = JSON.parse(opts.config) as Record<string, unknown>;
    const parts = [c['algorithm'], c['env'], c['preset']].filter((p) => typeof p === 'string' && p);
    if (parts.length) name = (parts as string[]).map((p, i) => (i === 0 ? p.toUpperCase() : p)).join(' ');
    if (typeof c['seed'] === 'number' && c['seed'] !== 0) name += ` seed ${c['seed']}`;
  }
  const references: Record<string, number> = {};
  if (opts.summary) {
    const s = JSON.parse(opts.summary) as { references?: Record<string, number> };
    Object.assign(references, s.references ?? {});
  }
  return { name, evals, references };
}

/** Reads a run directory (log.jsonl, and config.json / summary.json where present). */
export function readOnlineRunDir(dir: string): OnlineRunCurve {
  const log = join(dir, 'log.jsonl');
  if (!existsSync(log)) throw new CliError(`${dir}: no log.jsonl (is it a run directory of node algorithms/sac.ts or sdac.ts?)`);
  const maybe = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : null);
  return readOnlineRun(readFileSync(log, 'utf8'), { config: maybe('config.json'), summary: maybe('summary.json'), fallback: basename(dir) });
}

export interface Comparison {
  svg: string;
  /** Rows of the table: env steps, then one return per run (NaN where that run has no evaluation there). */
  rows: number[][];
  /** The table as text. */
  table: string;
}

/**
 * The runs' evaluation returns against env steps in one chart (with the references of the first run that
 * recorded them as flat lines), and a table over every env step at which some run evaluated. With
 * `equalSteps`, only the steps up to the shortest run's last evaluation are kept.
 */
export function onlineComparison(runs: OnlineRunCurve[], opts: { title?: string; equalSteps?: boolean } = {}): Comparison {
  if (runs.length === 0) throw new Error('onlineComparison: no runs');
  const empty = runs.filter((r) => r.evals.length === 0);
  if (empty.length) throw new CliError(`no evaluation records in ${empty.map((r) => r.name).join(', ')}`);
  const limit = opts.equalSteps ? Math.min(...runs.map((r) => r.evals[r.evals.length - 1]!.envSteps)) : Infinity;
  const kept = runs.map((r) => ({ ...r, evals: r.evals.filter((e) => e.envSteps <= limit) }));
  const series: LineSeries[] = kept.map((r) => ({ name: r.name, x: r.evals.map((e) => e.envSteps), y: r.evals.map((e) => e.mean) }));
  const allSteps = [...new Set(kept.flatMap((r) => r.evals.map((e) => e.envSteps)))].sort((a, b) => a - b);
  const references = runs.find((r) => Object.keys(r.references).length > 0)?.references ?? {};
  const span = [allSteps[0]!, allSteps[allSteps.length - 1]!];
  for (const [name, v] of Object.entries(references)) series.push({ name, x: span, y: [v, v] });
  const svg = lineSvg(series, { title: opts.title ?? 'evaluation return', xLabel: 'env steps', yLabel: 'return', width: 720, height: 420 });
  const rows = allSteps.map((s) => [s, ...kept.map((r) => r.evals.find((e) => e.envSteps === s)?.mean ?? Number.NaN)]);
  const header = ['env steps', ...kept.map((r) => r.name)];
  const cells = rows.map((row) => row.map((v, i) => (i === 0 ? String(v) : Number.isNaN(v) ? '-' : v.toFixed(1))));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const fmt = (c: string[]) => c.map((v, i) => v.padStart(widths[i]!)).join('  ');
  const lines = [fmt(header), ...cells.map(fmt)];
  for (const [name, v] of Object.entries(references)) lines.push(`${name}: ${v.toFixed(1)}`);
  return { svg, rows, table: lines.join('\n') };
}

const OPTIONS = {
  runs: { type: 'string', placeholder: 'dirs', description: 'comma-separated run directories (each with a log.jsonl)' },
  out: { type: 'string', placeholder: 'file', description: 'SVG to write (default online-curves.svg in the first run directory)' },
  'equal-steps': { type: 'boolean', description: "cut every run at the shortest run's last evaluation" },
  title: { type: 'string', placeholder: 'text', description: 'chart title' },
} as const satisfies Record<string, OptionSpec>;

const SPEC: CliSpec<typeof OPTIONS> = {
  usage: 'node scripts/online-curves.ts --runs DIR,DIR[,...] [--out FILE] [--equal-steps] [--title TEXT]',
  description:
    'Draws the learning curves (evaluation return against environment steps) of two or more online runs ' +
    '(node algorithms/sac.ts, node algorithms/sdac.ts) in one SVG and prints return against env steps as a table.',
  options: OPTIONS,
  examples: ['node scripts/online-curves.ts --runs runs/sac-hopper-default-20260101-120000,runs/sdac-hopper-default-20260101-130000'],
};

export async function main(argv = process.argv.slice(2)): Promise<void> {
  const args = parseCli(SPEC, argv);
  if (!args) return;
  const dirs = (args.runs ?? '').split(',').map((d) => d.trim()).filter(Boolean);
  if (dirs.length < 1) throw new CliError('--runs needs one or more run directories (see --help)');
  const runs = dirs.map(readOnlineRunDir);
  // runs of one command and preset share a name: tell them apart by directory
  runs.forEach((r, i) => {
    if (runs.some((o, j) => j !== i && o.name === r.name)) r.name = `${r.name} (${basename(dirs[i]!)})`;
  });
  const result = onlineComparison(runs, { title: args.title, equalSteps: args['equal-steps'] });
  const out = args.out ?? join(dirs[0]!, 'online-curves.svg');
  writeFileSync(out, result.svg);
  console.log(result.table);
  console.log(`\nwrote ${out}`);
}

if (isMainModule(import.meta.url)) await runMain('online-curves', () => main());
