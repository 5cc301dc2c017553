// One harness for every offline method. A method is described once (its name, how its networks are built, its
// phases in order, its deployed policy, its baselines, its own flags) and runOffline does the rest: the data and
// the environment, the run directory, resume, each phase (or its networks loaded from a file), the baselines,
// evaluations, the summary and the curves; offlineCommand makes it a command with --help.
import { join } from 'node:path';
import { BUILTIN_DATASETS, datasetPath, envForDataset } from '../../datasets/builtin.ts';
import type { ReplayStore } from '../../datasets/replay.ts';
import type { BatchPolicy, EvaluateResult } from '../../envs/evaluate.ts';
import type { ActionBox } from './action-box.ts';
import { CliError, assignDefined, isMainModule, runMain, type CliValues, type OptionSpec, type OptionSpecs } from './cli.ts';
import { runCommand, runOptions, type RunSettings, type TrainingCommand } from './command.ts';
import { offlineCurvesSvg } from './curves.ts';
import { writePicture } from './picture.ts';
import { evaluatePolicy, type EvalConfig } from './evaluation.ts';
import { currentRecords, formatDuration, JsonlLog, say, type ProgressStream } from './monitor.ts';
import { loadOfflineData, type DataConfig, type OfflineData } from './offline-data.ts';
import { phaseStart, runPhase, sessionEnd, type PhaseRun, type RunContext } from './phase.ts';
import { RUN_FILES, removeStaleTemps, writeFileAtomic } from './run-files.ts';

/** What every offline method's configuration holds. */
export interface OfflineConfig extends DataConfig, EvalConfig {
  /** Preset name: a D4RL task (hopper-medium-v2, ...) or a quick preset. */
  task: string;
  /** HDF5 file in D4RL's layout, or a built-in dataset name. */
  dataset: string;
  seed: number;
  /** Steps of the last phase between evaluations (0: only at the end). */
  evalEvery: number;
  /** Evaluate the behaviour-cloning baselines. */
  bcEval: boolean;
  /** Steps between log lines (losses are read back and checked for NaN/Inf this often). */
  logEvery: number;
  /** Steps between checkpoints within a phase (each phase also writes one at its end). */
  checkpointEvery: number;
}

/** One phase of a method, built when it starts. */
export interface PhaseSpec<C, M> {
  name: string;
  /** Its name in the wall-time line (default: name). */
  title?: string;
  /** The option that loads the phase's networks from a checkpoint and skips the phase. */
  loadOption?: { name: string; description: string };
  /** The phase over the training data, checkpointing to `checkpoint`; `finish` runs once it is over. */
  make(m: M, cfg: C, store: ReplayStore, checkpoint: string): PhaseRun & { finish?(): void };
}

export type Score = { mean: number; std: number };

/** A policy scored beside the method's on the same episodes. */
export interface Baseline<M> {
  /** Its key in summary.json. */
  key: 'bcScore' | 'bcMlpScore';
  /** Its key in the log record. */
  logKey: string;
  /** Its line in the printed summary, and its line in the curves. */
  label: string;
  curve: string;
  /** What it is, in the progress message. */
  describe: string;
  /** The phase it runs after (null: before the first). */
  after: string | null;
  /** The policy (training one first if it needs to: timed as evaluation). */
  policy(m: M, data: OfflineData, box: ActionBox): BatchPolicy;
}

export interface OfflineMethod<C extends OfflineConfig, M, S extends OptionSpecs = OptionSpecs> {
  /** File stem under algorithms/ and run-directory prefix. */
  name: string;
  /** Display name, e.g. 'SRPO'. */
  title(cfg: C): string;
  /** The deployed policy's name in the summary and curves, e.g. 'SRPO actor'. */
  policyName(cfg: C): string;
  build(obsDim: number, actDim: number, cfg: C): M;
  phases: readonly PhaseSpec<C, M>[];
  /** The deployed policy, scored during and after the last phase. */
  policy(m: M, cfg: C, data: OfflineData, box: ActionBox): BatchPolicy;
  baselines(cfg: C): Baseline<M>[];
  dispose(m: M): void;
  cli: OfflineCli<C, S>;
}

/** A method's command line beyond what every offline command takes. */
export interface OfflineCli<C, S extends OptionSpecs> {
  description: string;
  examples: string[];
  taskNames: readonly string[];
  /** The preset a command line starts from (--task, and whatever else selects one). */
  preset(args: CliValues<S> & { task: string }): C;
  /** The method's own options, listed after --task. */
  options: S;
  /** Writes the method's options that were given into cfg (the shared ones are applied already). */
  apply(cfg: C, args: CliValues<S>): void;
  /** The run-directory stem (default '<name>-<task>'). */
  runName?(cfg: C): string;
}

export interface OfflineSummary {
  method: string;
  task: string;
  env: string;
  dataset: string;
  /** Normalised score of the final policy (D4RL x100). */
  score: Score & { returnMean: number; episodes: number };
  /** The behaviour model sampled by itself (behaviour cloning on the same data), when the method has it and it ran. */
  bcScore?: Score | null;
  /** A deterministic MLP fitted to the actions by mean squared error (the other behaviour cloning), when it ran. */
  bcMlpScore?: Score | null;
  datasetScore: (Score & { episodes: number }) | null;
  /** Wall time per phase in seconds, summed over every session of the run (0 for a phase loaded from a file). */
  phaseSeconds: Record<string, number>;
  totalSeconds: number;
  evals: { step: number; mean: number; std: number }[];
  dir: string;
}

export interface OfflineRunSettings extends RunSettings {
  /** Checkpoints to load phases' networks from (by phase name); those phases are skipped. */
  load?: Record<string, string | undefined>;
  stream?: ProgressStream;
}

/** Runs (or resumes) a method's phases, baselines and evaluations; writes everything under run.dir. */
export async function runOffline<C extends OfflineConfig, M>(method: OfflineMethod<C, M>, cfg: C, run: OfflineRunSettings): Promise<OfflineSummary> {
  const tStart = performance.now();
  const { dir } = run;
  removeStaleTemps(dir);
  const log = new JsonlLog(join(dir, RUN_FILES.log));
  const ctx: RunContext = { cfg, log, stream: run.stream, quiet: run.quiet, stopRequested: run.stopRequested, eager: run.eager };
  // this session's wall times, logged however it ends (a kill -9 loses them) and summed over sessions in the summary
  const seconds: Record<string, number> = { setup: 0, ...Object.fromEntries(method.phases.map((p) => [p.name, 0])), evaluation: 0 };
  let sessionLogged = false;
  const logSession = (err?: unknown) => {
    if (sessionLogged) return;
    sessionLogged = true;
    log.write({ phase: 'session', ...sessionEnd(err), seconds: { ...seconds, total: (performance.now() - tStart) / 1000 } });
  };
  try {
    return await offlineSession(method, cfg, run, log, ctx, seconds, tStart, logSession);
  } catch (err) {
    logSession(err);
    throw err;
  }
}

async function offlineSession<C extends OfflineConfig, M>(
  method: OfflineMethod<C, M>,
  cfg: C,
  run: OfflineRunSettings,
  log: JsonlLog,
  ctx: RunContext,
  seconds: Record<string, number>,
  tStart: number,
  logSession: (err?: unknown) => void,
): Promise<OfflineSummary> {
  const { dir } = run;
  const evaluationTimed = async <T>(fn: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      seconds['evaluation']! += (performance.now() - t) / 1000;
    }
  };

  // ---- environment and data; any dimension mismatch stops here, before training
  const file = datasetPath(cfg.dataset);
  const { data, box } = await loadOfflineData(cfg, file, dir, run);
  const { obsDim, actDim } = data.transitions;
  seconds['setup'] = (performance.now() - tStart) / 1000;
  const m = method.build(obsDim, actDim, cfg);

  // ---- baselines: each scored once per run directory (a resumed run takes its score from the log)
  const baselines = method.baselines(cfg);
  const scores: Record<string, Score | null> = Object.fromEntries(baselines.map((b) => [b.key, null]));
  const earlier = run.resume ? JsonlLog.read(log.path) : [];
  const scoreBaselines = async (after: string | null) => {
    if (!cfg.bcEval) return;
    for (const b of baselines.filter((x) => x.after === after)) {
      const logged = earlier.find((r) => r[b.logKey])?.[b.logKey] as Score | undefined;
      const res = logged ? null : await evaluationTimed(() => evaluatePolicy(b.policy(m, data, box), cfg));
      const score = logged ? { mean: logged.mean, std: logged.std } : { mean: res!.normalizedMean!, std: res!.normalizedStd! };
      scores[b.key] = score;
      if (res) log.write({ phase: after ?? 'baseline', [b.logKey]: { ...score, returnMean: res.mean } });
      say(run, `${b.describe}: score ${score.mean.toFixed(1)} +- ${score.std.toFixed(1)}${logged ? ' (from the log)' : ''}`);
    }
  };

  // ---- the phases; the last one is the deployed policy's, evaluated every evalEvery steps and at its end
  let policy: BatchPolicy | null = null;
  let final: EvaluateResult | null = null;
  let lastSteps = 0;
  await scoreBaselines(null);
  for (const [i, spec] of method.phases.entries()) {
    const path = join(dir, `${spec.name}.safetensors`);
    const phase = spec.make(m, cfg, data.store, path);
    let evalMs = 0;
    if (i === method.phases.length - 1) {
      const deployed = (policy = method.policy(m, cfg, data, box));
      lastSteps = phase.steps;
      phase.evalEvery = cfg.evalEvery;
      phase.evaluate = async (step) => {
        const t = performance.now();
        const res = await evaluatePolicy(deployed, cfg);
        evalMs += performance.now() - t;
        if (step === phase.steps) final = res;
        return { mean: res.normalizedMean!, std: res.normalizedStd!, returnMean: res.mean };
      };
    }
    const start = await phaseStart(spec.name, phase.parts, path, { file: run.load?.[spec.name], resume: run.resume, quiet: run.quiet, log });
    if (start !== 'done') {
      const r = await runPhase(phase, ctx, start);
      seconds[spec.name] = (r.ms - evalMs) / 1000;
      seconds['evaluation']! += evalMs / 1000;
    }
    phase.finish?.();
    await scoreBaselines(spec.name);
  }
  // ---- the run as the log holds it over every session: the deployed phase's evaluations, the wall times
  const lastPhase = method.phases[method.phases.length - 1]!.name;
  const records = () => currentRecords(JsonlLog.read(log.path));
  const evalRecords = records().filter((r) => r['phase'] === lastPhase && typeof r['step'] === 'number' && r['eval']);
  const evals = evalRecords.map((r) => ({ step: r['step'] as number, mean: (r['eval'] as Score).mean, std: (r['eval'] as Score).std }));
  let score: OfflineSummary['score'];
  const finalRecord = evalRecords.find((r) => r['step'] === lastSteps)?.['eval'] as (Score & { returnMean: number }) | undefined;
  if (final) {
    const r = final as EvaluateResult;
    score = { mean: r.normalizedMean!, std: r.normalizedStd!, returnMean: r.mean, episodes: r.returns.length };
  } else if (finalRecord) {
    score = { mean: finalRecord.mean, std: finalRecord.std, returnMean: finalRecord.returnMean, episodes: cfg.evalEpisodes };
  } else {
    const r = await evaluationTimed(() => evaluatePolicy(policy!, cfg));
    score = { mean: r.normalizedMean!, std: r.normalizedStd!, returnMean: r.mean, episodes: r.returns.length };
  }
  logSession();
  const sessions = records().filter((r) => r['phase'] === 'session').map((r) => r['seconds'] as Record<string, number>);
  const sum = (k: string) => sessions.reduce((acc, x) => acc + (x[k] ?? 0), 0);

  // ---- summary and curves
  const summary: OfflineSummary = {
    method: method.title(cfg),
    task: cfg.task,
    env: cfg.env,
    dataset: file,
    score,
    ...scores,
    datasetScore: data.datasetScore,
    phaseSeconds: Object.fromEntries(Object.keys(seconds).map((k) => [k, sum(k)])),
    totalSeconds: sum('total'),
    evals,
    dir,
  };
  log.write({ phase: 'summary', ...summary });
  writeFileAtomic(join(dir, RUN_FILES.summary), JSON.stringify(summary, null, 2));
  const lines = { ...Object.fromEntries(baselines.map((b) => [b.curve, scores[b.key] ?? null])), dataset: data.datasetScore };
  const phases = method.phases.map((p) => p.name);
  writePicture(join(dir, RUN_FILES.curves), offlineCurvesSvg(records(), lines, { phases, evalPhase: phases[phases.length - 1]!, policy: method.policyName(cfg) }));
  data.store.dispose();
  method.dispose(m);
  return summary;
}

export function printOfflineSummary<C extends OfflineConfig, M>(method: OfflineMethod<C, M>, cfg: C, s: OfflineSummary): void {
  const policyLabel = `normalised score (${method.policyName(cfg)})`;
  const width = Math.max(32, policyLabel.length + 2);
  const line = (label: string, v: string) => console.log(`  ${label.padEnd(width)}${v}`);
  const pm = (x: Score) => `${x.mean.toFixed(1)} +- ${x.std.toFixed(1)}`;
  console.log(`\n${s.method} ${s.task} on ${s.env} (${s.dataset})`);
  line(policyLabel, `${pm(s.score)}  (${s.score.episodes} episodes, mean return ${s.score.returnMean.toFixed(1)})`);
  for (const b of method.baselines(cfg)) {
    const score = s[b.key];
    if (score) line(b.label, pm(score));
  }
  if (s.datasetScore) line('dataset (behaviour policy)', `${pm(s.datasetScore)}  (${s.datasetScore.episodes} episodes)`);
  const phases = method.phases.map((p) => `${p.title ?? p.name} ${formatDuration(s.phaseSeconds[p.name]! * 1000)}`);
  const p = s.phaseSeconds;
  line('wall time', `setup ${formatDuration(p['setup']! * 1000)}, ${phases.join(', ')}, evaluation ${formatDuration(p['evaluation']! * 1000)}; total ${formatDuration(s.totalSeconds * 1000)}`);
  line('outputs', s.dir);
}

/**
 * The dataset and evaluation environment a command line asks for: --dataset replaces the preset's, --env names
 * the environment, else it is inferred from the dataset's name (keeping the preset's when nothing matches).
 * A task with no shipped dataset and no --dataset is a usage error.
 */
export function applyDatasetArgs(cfg: { task: string; dataset: string; env: string }, args: { dataset?: string; env?: string }): void {
  if (args.dataset !== undefined) cfg.dataset = args.dataset;
  if (!cfg.dataset) throw new CliError(`task '${cfg.task}' has no shipped dataset; pass --dataset path/to/${cfg.task}.hdf5`);
  const implied = args.dataset !== undefined ? envForDataset(args.dataset) : null;
  // a task's settings are tuned for its environment: training them on another one's data must be asked for
  if (implied && cfg.env && implied !== cfg.env && args.env === undefined) {
    throw new CliError(
      `--dataset ${args.dataset} is ${implied} data, but task '${cfg.task}' holds settings for ${cfg.env}; ` +
        `choose a task for ${implied} (see --help), or pass --env ${implied} to train these settings on it anyway`,
    );
  }
  if (args.env !== undefined) cfg.env = args.env;
  else if (implied) cfg.env = implied;
}

/** The options every offline command shares: the dataset and environment, the seed, evaluation, logging, checkpoints. */
export function applyOfflineArgs(
  cfg: { task: string; dataset: string; env: string; seed: number; evalEvery: number; evalEpisodes: number; bcEval: boolean; logEvery: number; checkpointEvery: number },
  args: {
    dataset?: string; env?: string; seed?: number; 'eval-every'?: number; 'eval-episodes'?: number; 'no-bc-eval'?: boolean; 'log-every'?: number; 'checkpoint-every'?: number;
  },
): void {
  applyDatasetArgs(cfg, args);
  assignDefined(cfg, {
    seed: args.seed,
    evalEvery: args['eval-every'],
    evalEpisodes: args['eval-episodes'],
    logEvery: args['log-every'],
    checkpointEvery: args['checkpoint-every'],
  });
  if (args['no-bc-eval']) cfg.bcEval = false;
}


/** The options every offline command takes around the method's own. */
function offlineOptions<C extends OfflineConfig, M, S extends OptionSpecs>(method: OfflineMethod<C, M, S>): OptionSpecs {
  const { cli } = method;
  const defaults = Object.fromEntries(Object.entries(cli.options).flatMap(([k, o]) => (o.default !== undefined ? [[k, o.default]] : [])));
  const sample = cli.preset({ ...defaults, task: cli.taskNames[0]! } as CliValues<S> & { task: string });
  const baselineNames = method.baselines(sample).map((b) => b.describe.replace(/^behaviour cloning \((.*)\)$/, '$1'));
  const loads = Object.fromEntries(
    method.phases.filter((p) => p.loadOption).map((p) => [p.loadOption!.name, { type: 'string', placeholder: 'file', description: p.loadOption!.description } satisfies OptionSpec]),
  );
  return {
    task: { type: 'string', default: cli.taskNames[0]!, placeholder: 'name', description: `preset: ${cli.taskNames.join(', ')}` },
    ...cli.options,
    dataset: { type: 'string', placeholder: 'name|file', description: `D4RL-layout HDF5 file or a built-in dataset (${Object.keys(BUILTIN_DATASETS).join(', ')}); default: the task's` },
    env: { type: 'string', placeholder: 'id', description: 'evaluation environment (default: from the task or dataset name)' },
    seed: { type: 'integer', nonNegative: true, description: 'seed of every network and random stream (default 0)' },
    ...loads,
    'eval-every': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'steps of the last phase between evaluations (0: only at the end)' },
    'eval-episodes': { type: 'integer', positive: true, placeholder: 'n', description: 'episodes per evaluation' },
    'no-bc-eval': { type: 'boolean', description: `skip the behaviour-cloning baselines (${baselineNames.join('; ')})` },
    'log-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between log lines and NaN checks' },
    'checkpoint-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between checkpoints within a phase' },
    ...runOptions(`${method.name}-<task>`),
  };
}

/** The configuration a command line asks for: the preset, then the dataset and shared options, then the method's. */
export function offlineConfig<C extends OfflineConfig, M, S extends OptionSpecs>(method: OfflineMethod<C, M, S>, args: Record<string, unknown>): C {
  const cfg = method.cli.preset(args as CliValues<S> & { task: string });
  applyOfflineArgs(cfg, args as Parameters<typeof applyOfflineArgs>[1]);
  method.cli.apply(cfg, args as CliValues<S>);
  return cfg;
}

/** A method as a command: `node algorithms/<name>.ts [options]`. */
export function offlineCommand<C extends OfflineConfig, M, S extends OptionSpecs>(method: OfflineMethod<C, M, S>): TrainingCommand<OptionSpecs, C, OfflineSummary> {
  const outputs = method.phases.map((p) => p.name).join('/');
  return {
    name: method.name,
    spec: {
      usage: `node algorithms/${method.name}.ts [options]`,
      description:
        `${method.cli.description}\n\n` +
        `Outputs go to runs/${method.name}-<task>-<timestamp>/: config.json, log.jsonl, ${outputs}.safetensors (weights, optimiser ` +
        'state, step), curves.svg and summary.json. Ctrl-C stops at a checkpoint; --resume continues.',
      options: offlineOptions(method),
      examples: method.cli.examples,
    },
    config: (args) => {
      const cfg = offlineConfig(method, args);
      return { cfg, name: method.cli.runName?.(cfg) ?? `${method.name}-${cfg.task}` };
    },
    title: (cfg) => `${method.title(cfg)} ${cfg.task}`,
    template: (cfg) => method.cli.preset(cfg as unknown as CliValues<S> & { task: string }),
    train: (cfg, run, args) => {
      const load = Object.fromEntries(method.phases.filter((p) => p.loadOption).map((p) => [p.name, args[p.loadOption!.name] as string | undefined]));
      return runOffline(method, cfg, { ...run, load });
    },
    print: (s, cfg) => printOfflineSummary(method, cfg, s),
  };
}

/** Runs the method's command when its file is the script Node started (the last line of algorithms/<name>.ts). */
export async function offlineMain<C extends OfflineConfig, M, S extends OptionSpecs>(moduleUrl: string, method: OfflineMethod<C, M, S>): Promise<void> {
  if (isMainModule(moduleUrl)) await runMain(method.name, async () => void (await runCommand(offlineCommand(method), process.argv.slice(2))));
}
