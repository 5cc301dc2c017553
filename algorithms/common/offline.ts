// What the offline RL commands (SRPO, DTQL) share beyond the generic run tools of run.ts: the training view of a
// D4RL-layout dataset, policy evaluation in the matching environment, the phase runner (steps, progress, log,
// NaN checks, checkpoints, Ctrl-C), phase resume decisions, the training-curves picture and the command-line
// plumbing of a run (config.json, --resume, device choice, interrupts).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { init, type Runtime, runtime } from '../../engine/runtime.ts';
import { tidy, type Tensor } from '../../engine/tensor.ts';
import { recordStep, type RecordedStep } from '../../engine/record.ts';
import { prepareMatmulTuning } from './tuning-cache.ts';
import { readD4RL, qlearningDataset, episodeRanges, type D4RLData, type Transitions } from '../../datasets/d4rl.ts';
import {
  normalizeObservations, normalizedScore, observationStats, rewardPreset, transformRewards,
  type ObservationStats, type RewardPreset, type RewardTransform,
} from '../../datasets/presets.ts';
import { ReplayStore } from '../../datasets/replay.ts';
import { evaluate, gpuPolicy, type BatchPolicy, type EvaluateResult } from '../../envs/evaluate.ts';
import { makeEnv } from '../../envs/registry.ts';
import type { Env } from '../../envs/core.ts';
import { lineSvg, stackSvgs, type LineSeries } from './svg.ts';
import {
  CliError, GpuChurnGuard, assignDefined, LossMeter, Progress, RUN_FILES, assertFinite, createRunDir, formatNumber, loadCheckpoint,
  readCheckpointInfo, saveCheckpoint, writeFileAtomic, type CheckpointParts, type ProgressStream,
} from './run.ts';
import { ActionBox } from '../srpo/actor.ts';
import { envForDataset } from '../srpo/presets.ts';

/** An error whose message is for the person running the command (printed without a stack). */
export function userError(message: string): Error {
  const e = new Error(message);
  (e as { userFacing?: boolean }).userFacing = true;
  return e;
}

export function say(opts: { quiet?: boolean }, message: string): void {
  if (!opts.quiet) process.stderr.write(`${message}\n`);
}

// =========================================================================================================
// Data: z-scored observations, actions in [-1, 1], rewards by the preset, all on the GPU

/** The dataset settings prepareData reads. */
export interface DataConfig {
  normalizeObs: boolean;
  rewardPreset: RewardPreset;
  env: string;
}

export interface OfflineData {
  transitions: Transitions;
  store: ReplayStore;
  obsStats: ObservationStats | null;
  rewardTransform: RewardTransform;
  box: ActionBox;
  /** Dataset action values outside the box (clipped on the way in). */
  clippedActions: number;
  /** Mean and std of the dataset's own normalised episode scores (complete episodes), when known. */
  datasetScore: { mean: number; std: number; episodes: number } | null;
}

/** Normalised score of each complete episode of the data (D4RL x100), or null without reference returns. */
export function datasetScores(data: D4RLData, env: string): number[] | null {
  const scores: number[] = [];
  try {
    for (const [lo, hi] of episodeRanges(data)) {
      if (!(data.terminals[hi - 1] || data.timeouts[hi - 1])) continue;
      let ret = 0;
      for (let i = lo; i < hi; i++) ret += data.rewards[i]!;
      scores.push(normalizedScore(env, ret));
    }
  } catch {
    return null;
  }
  return scores;
}

/** Builds the training view of a dataset for an environment's action box. */
export function prepareData(data: D4RLData, box: ActionBox, cfg: DataConfig): OfflineData {
  if (data.actDim !== box.dim) throw userError(`dataset has ${data.actDim} action dims, the environment ${box.dim}`);
  const raw = qlearningDataset(data);
  const obsStats = cfg.normalizeObs ? observationStats(data.observations, data.obsDim) : null;
  const rewardTransform = rewardPreset(cfg.rewardPreset, data);
  const { actions, clipped } = box.toUnit(raw.actions);
  let transitions: Transitions = { ...raw, actions };
  if (obsStats) {
    transitions = { ...transitions, observations: normalizeObservations(raw.observations, obsStats), nextObservations: normalizeObservations(raw.nextObservations, obsStats) };
  }
  transitions = transformRewards(transitions, rewardTransform);
  const scores = datasetScores(data, cfg.env);
  let datasetScore: OfflineData['datasetScore'] = null;
  if (scores && scores.length) {
    const mean = scores.reduce((s, x) => s + x, 0) / scores.length;
    const std = Math.sqrt(scores.reduce((s, x) => s + (x - mean) ** 2, 0) / scores.length);
    datasetScore = { mean, std, episodes: scores.length };
  }
  return { transitions, store: ReplayStore.fromTransitions(transitions), obsStats, rewardTransform, box, clippedActions: clipped, datasetScore };
}

/**
 * The environment's dimensions and action box, the dataset read and checked against them, and its training
 * view; prints one line about the data and writes obs_stats.json into `dir` when observations are z-scored.
 * Any dimension mismatch stops here, before training.
 */
export async function loadOfflineData(
  cfg: DataConfig & { task: string },
  file: string,
  dir: string,
  opts: { quiet?: boolean },
): Promise<{ data: OfflineData; box: ActionBox }> {
  if (!cfg.env) throw userError(`no environment for task '${cfg.task}'; pass --env (known: Pendulum-v1, Hopper-v4, HalfCheetah-v4, Walker2d-v4)`);
  let env: Env;
  try {
    env = await makeEnv(cfg.env);
  } catch (err) {
    throw userError(err instanceof Error ? err.message : String(err));
  }
  const box = new ActionBox(env.actionLow, env.actionHigh);
  const envDims = { obsDim: env.obsDim, actDim: env.actDim };
  env.close();
  let raw: D4RLData;
  try {
    raw = await readD4RL(file, { expect: envDims });
  } catch (err) {
    throw userError(`${err instanceof Error ? err.message : String(err)} (environment ${cfg.env})`);
  }
  const data = prepareData(raw, box, cfg);
  const { obsDim, actDim } = data.transitions;
  say(opts, `data: ${file}, ${data.transitions.size} transitions, obs ${obsDim}, act ${actDim}; rewards '${cfg.rewardPreset}' (x${formatNumber(data.rewardTransform.scale)})` +
    (data.clippedActions ? `; ${data.clippedActions} action values clipped to the box` : '') +
    (data.datasetScore ? `; dataset score ${data.datasetScore.mean.toFixed(1)} +- ${data.datasetScore.std.toFixed(1)}` : ''));
  if (data.obsStats) {
    writeFileAtomic(join(dir, 'obs_stats.json'), JSON.stringify({ mean: [...data.obsStats.mean], std: [...data.obsStats.std] }));
  }
  return { data, box };
}

// =========================================================================================================
// Evaluation

/** The evaluation settings evaluatePolicy reads. */
export interface EvalConfig {
  env: string;
  evalEpisodes: number;
  /** Episode i is reset with evalSeed + i. */
  evalSeed: number;
}

/** A policy on raw environment observations: z-scored with the training statistics, mapped to the env's box. */
export function envPolicy(act: (obs: Tensor) => Tensor, stats: ObservationStats | null, box: ActionBox): BatchPolicy {
  const gpu = gpuPolicy(act);
  return async (obs, n) => box.fromUnit(await gpu(stats ? normalizeObservations(obs, stats) : obs, n));
}

export async function evaluatePolicy(policy: BatchPolicy, cfg: EvalConfig): Promise<EvaluateResult> {
  return evaluate(policy, () => makeEnv(cfg.env), {
    episodes: cfg.evalEpisodes,
    numEnvs: Math.min(cfg.evalEpisodes, 20),
    seed: cfg.evalSeed,
    normalize: (ret) => normalizedScore(cfg.env, ret),
  });
}

// =========================================================================================================
// Running a phase: steps, progress, log, checks and checkpoints

export interface PhaseRun {
  /** Name in progress lines, log records and checkpoints. */
  phase: string;
  steps: number;
  /** Where checkpoints go. */
  checkpoint: string;
  parts: CheckpointParts;
  /**
   * Runs one step; returns its losses, left on the GPU. Called inside tidy. It is recorded once and replayed
   * (engine/record.ts), so it must read nothing back, write nothing from the host, draw random numbers from
   * Generators and take learning rates from the optimisers' schedules.
   */
  step: (variant: number) => Record<string, Tensor | [Tensor, string[]]>;
  /**
   * Which variant of the step the step at 0-based index `step` runs (e.g. 1 on the steps that also update a
   * target network): a small non-negative integer passed to `step`. Each variant is recorded on its own at
   * its second use and replayed after that. Absent: always 0.
   */
  variant?: (step: number) => number;
  /** Run every step eagerly through autograd (a step that cannot be recorded, or debugging). */
  eager?: boolean;
  /** Called at log points with the step reached; may return evaluation results to log. */
  evaluate?: (step: number) => Promise<Record<string, number> | null>;
  evalEvery?: number;
}

export interface RunContext {
  cfg: { logEvery: number; checkpointEvery: number };
  /** Polled after every step; when it returns true the phase checkpoints and stops with PhaseInterrupted. */
  stopRequested?: () => boolean;
  /** Where log records go (a JsonlLog, or anything with write). */
  log: { write(record: Record<string, unknown>): void } | null;
  stream?: ProgressStream;
  /** Print messages (default: stderr through the progress line). */
  quiet?: boolean;
  /** Run every phase eagerly instead of replaying a recorded step (debugging). */
  eager?: boolean;
}

/** A phase stopped on request (Ctrl-C) after writing its checkpoint. */
export class PhaseInterrupted extends Error {
  readonly phase: string;
  readonly step: number;
  readonly userFacing = true;

  constructor(phase: string, step: number, checkpoint: string) {
    super(`interrupted in phase '${phase}' at step ${step}; checkpoint written to ${checkpoint}`);
    this.name = 'PhaseInterrupted';
    this.phase = phase;
    this.step = step;
  }
}

export interface PhaseResult {
  /** Name in progress lines, log records and checkpoints. */
  phase: string;
  steps: number;
  /** Step the phase started from in this session (non-zero when resumed). */
  startStep: number;
  ms: number;
  last: Record<string, number>;
  evals: { step: number; mean: number; std: number }[];
}

/**
 * Runs a phase from `startStep` to `run.steps`: losses summed on the GPU and read every logEvery steps (and at
 * the end), checked for NaN/Inf, logged and shown; checkpoints at log points every checkpointEvery steps and
 * at the end, each written only after the losses up to it were found finite.
 */
export async function runPhase(run: PhaseRun, ctx: RunContext, startStep = 0): Promise<PhaseResult> {
  const { cfg } = ctx;
  const progress = new Progress(run.phase, run.steps, { stream: ctx.stream, startStep });
  const meter = new LossMeter();
  const churn = new GpuChurnGuard();
  const t0 = performance.now();
  let lastLog = startStep;
  let lastCheckpoint = startStep;
  let checkpointPath: string | null = startStep > 0 ? run.checkpoint : null;
  let last: Record<string, number> = {};
  const evals: PhaseResult['evals'] = [];
  const eager = (run.eager ?? false) || (ctx.eager ?? false);
  // one recording per step variant; the first use of a variant runs eagerly (building pipelines, lazily made
  // buffers and the meter's sums), the second is recorded and later ones replay it
  const recorded = new Map<number, RecordedStep<Record<string, never>>>();
  const ranEagerly = new Set<number>();
  const stepAndMeter = (variant: number) => () => {
    meter.add(run.step(variant));
    return {};
  };
  type LossTicket = { values: Promise<Record<string, number>>; step: number; fromStep: number };
  let pendingLosses: LossTicket | null = null;
  const takeLosses = async (t: LossTicket) => {
    const values = await t.values;
    assertFinite(run.phase, t.step, values, { fromStep: t.fromStep, checkpoint: checkpointPath });
    last = values;
    ctx.log?.write({ phase: run.phase, step: t.step, ...values });
    if (t.step < run.steps) progress.update(t.step, values);
  };
  try {
    for (let step = startStep; step < run.steps; ) {
      const variant = run.variant ? run.variant(step) : 0;
      const replay = recorded.get(variant);
      if (eager || !ranEagerly.has(variant)) {
        ranEagerly.add(variant);
        tidy(stepAndMeter(variant));
        runtime().flush();
      } else if (!replay) recorded.set(variant, recordStep(stepAndMeter(variant)));
      else replay.replay();
      step++;
      const end = step === run.steps;
      const stop = !end && (ctx.stopRequested?.() ?? false);
      if (step - lastLog < cfg.logEvery && !end && !stop) continue;
      const every = run.evalEvery ?? 0;
      const evalDue = run.evaluate !== undefined && (end || (every > 0 && step % every === 0));
      const checkpointDue = end || stop || step - lastCheckpoint >= cfg.checkpointEvery;
      // losses travel back while the next steps run; a checkpoint, an evaluation or the end waits for them,
      // so nothing is saved before the losses up to it were found finite
      const ticket = { values: meter.drainLater(), step, fromStep: lastLog };
      lastLog = step;
      if (pendingLosses) await takeLosses(pendingLosses);
      pendingLosses = null;
      if (checkpointDue || evalDue) await takeLosses(ticket);
      else pendingLosses = ticket;
      churn.check();
      if (checkpointDue) {
        await saveCheckpoint(run.checkpoint, { ...run.parts, step, extra: { phase: run.phase, complete: end, steps: run.steps } });
        checkpointPath = run.checkpoint;
        lastCheckpoint = step;
      }
      if (stop) {
        progress.finish(step, last);
        throw new PhaseInterrupted(run.phase, step, run.checkpoint);
      }
      if (evalDue) {
        const r = await run.evaluate!(step);
        if (r) {
          evals.push({ step, mean: r.mean!, std: r.std! });
          ctx.log?.write({ phase: run.phase, step, eval: r });
          if (!ctx.quiet) progress.log(`[${run.phase}] step ${step}: evaluation score ${formatNumber(r.mean!)} +- ${formatNumber(r.std!)}`);
        }
      }
    }
    progress.finish(run.steps, last);
  } finally {
    for (const r of recorded.values()) r.dispose();
    meter.dispose();
  }
  return { phase: run.phase, steps: run.steps, startStep, ms: performance.now() - t0, last, evals };
}

/** One SVG: a loss chart per phase and the evaluation scores, stacked. */

function phaseState(path: string): { step: number; complete: boolean } | null {
  if (!existsSync(path)) return null;
  const info = readCheckpointInfo(path);
  return { step: info.step, complete: info.extra['complete'] === true };
}

/**
 * Decides where a phase starts: loaded from `file` (its networks only; the phase is skipped and a copy goes to
 * `path`, so that --resume finds it complete), resumed from `path`, complete there, or from scratch (0).
 */
export async function phaseStart(
  phase: string,
  parts: CheckpointParts,
  path: string,
  opts: { file?: string; resume?: boolean; quiet?: boolean; log: { write(record: Record<string, unknown>): void } },
): Promise<number | 'done'> {
  const { file, log } = opts;
  if (file) {
    const info = loadCheckpoint(file, { modules: parts.modules });
    say(opts, `${phase}: loaded from ${file}${info.step ? ` (step ${info.step})` : ''}; phase skipped`);
    log.write({ phase, loaded: file });
    await saveCheckpoint(path, { modules: parts.modules, step: info.step, extra: { phase, complete: true, loadedFrom: file } });
    return 'done';
  }
  if (!opts.resume) return 0;
  const state = phaseState(path);
  if (!state) return 0;
  // a complete phase needs only its networks (a copy of a loaded file holds nothing else)
  loadCheckpoint(path, state.complete ? { modules: parts.modules } : parts);
  say(opts, `${phase}: ${state.complete ? 'complete' : `resuming at step ${state.step}`} (${path})`);
  return state.complete ? 'done' : state.step;
}

// =========================================================================================================
// Training curves

/** One SVG: a loss chart per phase and the evaluation scores of `evalPhase` with baselines, stacked. */
export function curvesSvg(
  records: Record<string, unknown>[],
  baselines: Record<string, { mean: number } | null>,
  opts: { phases: readonly string[]; evalPhase: string; policy: string },
): string {
  const charts: string[] = [];
  const num = (v: unknown) => (typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : Number.NaN);
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

// =========================================================================================================
// Command-line plumbing of a run

/**
 * The configuration and run directory of a command: with --resume the saved config.json of that directory
 * (training options on the command line are refused), else a fresh directory holding `fresh()`'s config.
 */
export function openRun<C>(
  args: { resume?: string; out?: string },
  argv: string[],
  trainingOptions: readonly string[],
  fresh: () => { cfg: C; name: string },
): { cfg: C; dir: string; resumed: boolean } {
  if (args.resume !== undefined) {
    const given = trainingOptions.filter((k) => argv.some((a) => a === `--${k}` || a.startsWith(`--${k}=`)));
    if (given.length) throw new CliError(`--resume continues a run with its saved config.json; drop ${given.map((k) => `--${k}`).join(', ')}`);
    const configPath = join(args.resume, RUN_FILES.config);
    if (!existsSync(configPath)) throw new CliError(`--resume: ${configPath} not found`);
    return { cfg: JSON.parse(readFileSync(configPath, 'utf8')) as C, dir: args.resume, resumed: true };
  }
  const { cfg, name } = fresh();
  const dir = createRunDir(name, { out: args.out });
  writeFileSync(join(dir, RUN_FILES.config), `${JSON.stringify(cfg, null, 2)}\n`);
  return { cfg, dir, resumed: false };
}

/** The WebGPU runtime on the adapter asked for ('auto', or part of an adapter name). */
/**
 * The dataset and evaluation environment a command line asks for: --dataset replaces the preset's, --env names
 * the environment, else it is inferred from the dataset's name (keeping the preset's when nothing matches).
 * A task with no shipped dataset and no --dataset is a usage error.
 */
export function applyDatasetArgs(cfg: { task: string; dataset: string; env: string }, args: { dataset?: string; env?: string }): void {
  if (args.dataset !== undefined) cfg.dataset = args.dataset;
  if (!cfg.dataset) throw new CliError(`task '${cfg.task}' has no shipped dataset; pass --dataset path/to/${cfg.task}.hdf5`);
  if (args.env !== undefined) cfg.env = args.env;
  else if (args.dataset !== undefined) cfg.env = envForDataset(args.dataset) ?? cfg.env;
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

/** Options every training command shares for how the engine runs (not part of a run's configuration). */
export const ENGINE_CLI_OPTIONS = {
  eager: { type: 'boolean', description: 'run every training step through autograd instead of replaying the recorded step (slower; for debugging)' },
  tune: { type: 'boolean', description: 'time matrix-product kernels for shapes not yet in the tuning cache (about 2 s) before training; cached results are always used' },
} as const;

/** Where a training command reports tuning progress: stderr unless quiet. */
export function tuningLog(quiet: boolean | undefined): ((line: string) => void) | undefined {
  return quiet ? undefined : (line) => process.stderr.write(`${line}\n`);
}

/**
 * Starts the engine on the named adapter ('auto': the default one) and installs the matrix-product tuning
 * cached for it by earlier runs (bench/tune.ts --rl --save, or --tune). With `tune`, shape classes still
 * missing are timed within a small budget first and the cache file is updated.
 */
export async function openDevice(device: string, opts: { tune?: boolean; log?: (line: string) => void } = {}): Promise<Runtime> {
  let rt: Runtime;
  try {
    rt = await init(device === 'auto' ? {} : { dawnFlags: [`adapter=${device}`] });
  } catch (err) {
    throw userError(`no WebGPU device: ${err instanceof Error ? err.message : String(err)}`);
  }
  await prepareMatmulTuning({ budgetMs: opts.tune ? 2000 : 0, log: opts.log });
  return rt;
}

/**
 * Runs `fn` with a stop flag the first Ctrl-C raises (training stops at the next step with a checkpoint); a
 * second Ctrl-C exits at once. A PhaseInterrupted error gets the command that continues the run appended.
 */
export async function interruptible<T>(dir: string, resumeCommand: string, fn: (stopRequested: () => boolean) => Promise<T>): Promise<T> {
  let stop = false;
  const onInterrupt = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write(`\nstopping after this step (Ctrl-C again to quit at once); resume with --resume ${dir}\n`);
  };
  process.on('SIGINT', onInterrupt);
  try {
    return await fn(() => stop);
  } catch (err) {
    if (err instanceof PhaseInterrupted) {
      (err as { message: string }).message += `; continue with: ${resumeCommand} --resume ${dir}`;
      process.exitCode = 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}
