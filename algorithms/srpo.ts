// SRPO: Score Regularized Policy Optimization through Diffusion Behavior (Chen, Lu, Wang, Su, Zhu, ICLR 2024).
//
// A deterministic one-step actor is extracted from two pretrained models, each trained once and independently:
//   phase 1  behaviour model: eps_theta(a_t, t, s) on the VP-SDE (ScoreNet_IDQL), t ~ U(1e-3, 1)
//   phase 2  critic: IQL (twin Q, expectile V), trained on the same data
//   phase 3  actor pi(s): per batch, a = pi(s), t ~ U(0.02, 0.98), a_t = alpha_t a + sigma_t z and
//              L = mean_b [ w(t) (eps_theta(a_t, t, s) . a) - beta (grad_a Q(s, a) . a) ]
//            whose gradient is the policy gradient of Q regularised by the behaviour score (the KL to the
//            behaviour policy, estimated at every noise level), with w(t) = sigma_t^2.
// Evaluation runs the actor, one forward pass per action, in the matching environment.
//
// `node algorithms/srpo.ts --help` for the command line; with no arguments it runs the quick Pendulum preset.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backward, detach, noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/init.ts';
import { AdamW, cosineLR, type LRSchedule } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import { dispose as disposeEngine, init, runtime, type Runtime } from '../engine/runtime.ts';
import { tidy, type Tensor } from '../engine/tensor.ts';
import { square, sub } from '../engine/ops/elementwise.ts';
import { mean } from '../engine/ops/reduce.ts';
import { readD4RL, qlearningDataset, episodeRanges, type D4RLData, type Transitions } from '../datasets/d4rl.ts';
import { normalizeObservations, normalizedScore, observationStats, rewardPreset, transformRewards, type ObservationStats, type RewardTransform } from '../datasets/presets.ts';
import { ReplayStore, type ReplayBatch } from '../datasets/replay.ts';
import { evaluate, gpuPolicy, type BatchPolicy, type EvaluateResult } from '../envs/evaluate.ts';
import { makeEnv } from '../envs/registry.ts';
import type { Env } from '../envs/core.ts';
import { noiseVPSDE } from './diffusion/losses.ts';
import { BehaviorModel, type BehaviorConfig } from './diffusion/behavior.ts';
import { VPSDEDiffusion } from './diffusion/models.ts';
import { IDQLScoreNet } from './diffusion/networks.ts';
import { VPSDE } from './diffusion/schedules.ts';
import { IQLCritic } from './iql.ts';
import { lineSvg, type LineSeries } from './common/svg.ts';
import {
  CliError, GpuChurnGuard, JsonlLog, LossMeter, Progress, RUN_FILES, assertFinite, createRunDir, formatDuration, formatNumber, isMainModule,
  loadCheckpoint, parseCli, readCheckpointInfo, removeStaleTemps, runMain, saveCheckpoint, writeFileAtomic,
  type CheckpointParts, type CliSpec, type OptionSpec, type ProgressStream,
} from './common/run.ts';
import { ActionBox, SrpoActor } from './srpo/actor.ts';
import { srpoSurrogateLoss } from './srpo/loss.ts';
import { BUILTIN_DATASETS, QUICK_PENDULUM, TASK_NAMES, envForDataset, taskConfig, type SrpoConfig } from './srpo/presets.ts';

export { taskConfig, QUICK_PENDULUM, type SrpoConfig };

export const PHASES = ['behavior', 'critic', 'actor'] as const;
export type Phase = (typeof PHASES)[number];

/** Per-phase stream offsets, so the phases draw independent random numbers from one seed. */
const PHASE_SEED: Record<Phase, number> = { behavior: 1, critic: 2, actor: 3 };

function userError(message: string): Error {
  const e = new Error(message);
  (e as { userFacing?: boolean }).userFacing = true;
  return e;
}

// =========================================================================================================
// Data: z-scored observations, actions in [-1, 1], rewards by the preset, all on the GPU

export interface SrpoData {
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
export function prepareData(data: D4RLData, box: ActionBox, cfg: Pick<SrpoConfig, 'normalizeObs' | 'rewardPreset' | 'env'>): SrpoData {
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
  let datasetScore: SrpoData['datasetScore'] = null;
  if (scores && scores.length) {
    const mean = scores.reduce((s, x) => s + x, 0) / scores.length;
    const std = Math.sqrt(scores.reduce((s, x) => s + (x - mean) ** 2, 0) / scores.length);
    datasetScore = { mean, std, episodes: scores.length };
  }
  return { transitions, store: ReplayStore.fromTransitions(transitions), obsStats, rewardTransform, box, clippedActions: clipped, datasetScore };
}

// =========================================================================================================
// Phase 1: behaviour model

export interface SrpoBehavior {
  /** The toolkit's 'srpo' behaviour model: ScoreNet_IDQL on the VP-SDE (algorithms/diffusion/behavior.ts). */
  model: BehaviorModel;
  diffusion: VPSDEDiffusion;
  net: IDQLScoreNet;
  /** The network's dropout mask stream, checkpointed with it so a resumed run draws the same masks. */
  dropout: Generator | null;
}

/**
 * ScoreNet_IDQL on the VP-SDE, wrapped in the toolkit's BehaviorModel (training loss, DPM-Solver sampling). The
 * network is built here rather than by makeBehaviorModel because the time-embedding sizes are part of the
 * preset: with a 64-wide trunk the paper's 64 Fourier features and 128-wide conditioning drown the state (on
 * the Pendulum data the samples stayed uncorrelated with the behaviour controller after 3000 steps, against
 * 0.28 with 32 and 32).
 */
export function makeBehavior(obsDim: number, actDim: number, cfg: SrpoConfig): SrpoBehavior {
  const dropout = cfg.behaviorDropout > 0 ? new Generator(cfg.seed * 16 + 11) : null;
  const net = new IDQLScoreNet(obsDim, actDim, {
    hidden: cfg.behaviorHidden,
    blocks: cfg.behaviorBlocks,
    dropout: cfg.behaviorDropout,
    embedDim: cfg.behaviorEmbedDim,
    condDim: cfg.behaviorCondDim,
    generator: dropout ?? undefined,
    rng: new HostRng(cfg.seed * 16 + PHASE_SEED.behavior),
  });
  const diffusion = new VPSDEDiffusion(net, new VPSDE(), { maxAction: 1 });
  const config: BehaviorConfig = {
    kind: 'srpo', stateDim: obsDim, actionDim: actDim, hidden: cfg.behaviorHidden, maxAction: 1,
    T: null, blocks: cfg.behaviorBlocks, dropout: cfg.behaviorDropout, sigmaData: null,
  };
  return { model: new BehaviorModel(config, net, diffusion), diffusion, net, dropout };
}

/** The paper trains the behaviour model with torch's AdamW, whose default weight decay is 0.01. */
export function behaviorOptimizer(b: SrpoBehavior, cfg: SrpoConfig): AdamW {
  return new AdamW(b.net.paramGroup(), { lr: cfg.behaviorLr, weightDecay: 0.01 });
}

/** One step: mean over the batch of sum over dims (eps_theta(a_t, t, s) - z)^2, t ~ U(1e-3, 1). Call in tidy. */
export function behaviorStep(b: SrpoBehavior, opt: AdamW, batch: ReplayBatch, gen: Generator): Tensor {
  b.net.train();
  const loss = b.model.loss(batch.actions, batch.obs, gen);
  opt.group.zeroGrad();
  backward(loss);
  opt.step();
  return loss;
}

// =========================================================================================================
// Phase 2: IQL critic

export function makeCritic(obsDim: number, actDim: number, cfg: SrpoConfig): IQLCritic {
  return new IQLCritic(
    obsDim,
    actDim,
    { expectile: cfg.expectile, discount: cfg.discount, tau: cfg.targetTau, lr: cfg.criticLr, hidden: [...cfg.criticHidden] },
    { seed: cfg.seed * 16 + PHASE_SEED.critic },
  );
}

// =========================================================================================================
// Phase 3: actor extraction

export interface ActorTraining {
  actor: SrpoActor;
  opt: AdamW;
  lr: LRSchedule;
  behavior: SrpoBehavior;
  critic: IQLCritic;
  schedule: VPSDE;
  cfg: SrpoConfig;
}

export function makeActor(obsDim: number, actDim: number, cfg: SrpoConfig): SrpoActor {
  return new SrpoActor(obsDim, actDim, { hidden: cfg.actorHidden, layers: cfg.actorLayers, rng: new HostRng(cfg.seed * 16 + PHASE_SEED.actor) });
}

export function actorTraining(actor: SrpoActor, behavior: SrpoBehavior, critic: IQLCritic, cfg: SrpoConfig): ActorTraining {
  // Adam with cosine annealing to 0 over the phase, as the paper's CosineAnnealingLR(T_max = all steps)
  const opt = new AdamW(actor.paramGroup(), { lr: cfg.actorLr });
  return { actor, opt, lr: cosineLR(cfg.actorLr, Math.max(1, cfg.actorSteps)), behavior, critic, schedule: behavior.diffusion.schedule, cfg };
}

/**
 * One policy-extraction step on a batch of states (call in tidy). `step` (0-based) sets the learning rate.
 * Returns the loss and its two terms [mean w (eps . a), mean g . a].
 */
export function actorStep(tr: ActorTraining, obs: Tensor, gen: Generator, step: number): { loss: Tensor; terms: Tensor } {
  const { actor, opt, behavior, critic, cfg } = tr;
  behavior.net.eval();
  const a = actor.forward(obs);
  // the perturbation and the behaviour score are constants of the loss: no tape through them
  const { eps, nb } = noGrad(() => {
    const nb = noiseVPSDE(detach(a), tr.schedule, gen, cfg.tMin, cfg.tMax);
    return { nb, eps: behavior.net.forward(nb.xt, nb.time, obs) };
  });
  const g = critic.targetQGrad(obs, a);
  const out = srpoSurrogateLoss(a, eps, g, nb.alpha, nb.sigma, {
    beta: cfg.beta,
    weighting: cfg.weighting,
    noise: cfg.baseline ? nb.noise : null,
    normalizeQGrad: cfg.normalizeQGrad,
  });
  opt.group.zeroGrad();
  backward(out.loss);
  opt.step(tr.lr(step));
  return out;
}

// =========================================================================================================
// Evaluation

/** A policy on raw environment observations: z-scored with the training statistics, mapped to the env's box. */
function envPolicy(act: (obs: Tensor) => Tensor, stats: ObservationStats | null, box: ActionBox): BatchPolicy {
  const gpu = gpuPolicy(act);
  return async (obs, n) => box.fromUnit(await gpu(stats ? normalizeObservations(obs, stats) : obs, n));
}

export function actorPolicy(actor: SrpoActor, stats: ObservationStats | null, box: ActionBox): BatchPolicy {
  return envPolicy((s) => actor.forward(s), stats, box);
}

/** Behaviour cloning by the diffusion model itself: one DPM-Solver++ sample per state. */
export function behaviorPolicy(b: SrpoBehavior, stats: ObservationStats | null, box: ActionBox, gen: Generator, steps: number): BatchPolicy {
  return envPolicy((s) => b.model.sample(s, 1, gen, { sampler: 'dpm', steps }), stats, box);
}

/**
 * The other behaviour-cloning baseline: the actor's network fitted to the data's actions by mean squared error
 * (Adam, the actor phase's batch, learning rate and step count). It regresses to the mean action per state, so
 * on data with zero-mean action noise it recovers a denoised behaviour policy.
 */
export function trainBcMlp(store: ReplayStore, obsDim: number, actDim: number, cfg: SrpoConfig): SrpoActor {
  const net = new SrpoActor(obsDim, actDim, { hidden: cfg.actorHidden, layers: cfg.actorLayers, rng: new HostRng(cfg.seed * 16 + 9) });
  const opt = new AdamW(net.paramGroup(), { lr: cfg.actorLr });
  const gen = new Generator(cfg.seed * 16 + 9);
  for (let i = 0; i < cfg.actorSteps; i++) {
    tidy(() => {
      const b = store.sample(cfg.actorBatch, gen);
      opt.group.zeroGrad();
      backward(mean(square(sub(net.forward(b.obs), b.actions))));
      opt.step();
    });
    runtime().flush();
  }
  opt.dispose();
  return net;
}

export async function evaluatePolicy(policy: BatchPolicy, cfg: SrpoConfig): Promise<EvaluateResult> {
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
  phase: Phase;
  steps: number;
  /** Where checkpoints go. */
  checkpoint: string;
  parts: CheckpointParts;
  /** Runs step `i` (0-based); returns this step's losses, left on the GPU. Called inside tidy. */
  step: (i: number) => Record<string, Tensor | [Tensor, string[]]>;
  /** Called at log points with the step reached; may return evaluation results to log. */
  evaluate?: (step: number) => Promise<Record<string, number> | null>;
  evalEvery?: number;
}

export interface RunContext {
  cfg: Pick<SrpoConfig, 'logEvery' | 'checkpointEvery'>;
  /** Polled after every step; when it returns true the phase checkpoints and stops with PhaseInterrupted. */
  stopRequested?: () => boolean;
  /** Where log records go (a JsonlLog, or anything with write). */
  log: { write(record: Record<string, unknown>): void } | null;
  stream?: ProgressStream;
  /** Print messages (default: stderr through the progress line). */
  quiet?: boolean;
}

/** A phase stopped on request (Ctrl-C) after writing its checkpoint. */
export class PhaseInterrupted extends Error {
  readonly phase: Phase;
  readonly step: number;
  readonly userFacing = true;

  constructor(phase: Phase, step: number, checkpoint: string) {
    super(`interrupted in phase '${phase}' at step ${step}; checkpoint written to ${checkpoint}`);
    this.name = 'PhaseInterrupted';
    this.phase = phase;
    this.step = step;
  }
}

export interface PhaseResult {
  phase: Phase;
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
  try {
    for (let step = startStep; step < run.steps; ) {
      tidy(() => meter.add(run.step(step)));
      // one submit per step: buffers released by the step return to the pool in a fixed order, so the next
      // step reuses the same buffers and finds its bind groups cached instead of creating new ones
      runtime().flush();
      step++;
      const end = step === run.steps;
      const stop = !end && (ctx.stopRequested?.() ?? false);
      if (step - lastLog < cfg.logEvery && !end && !stop) continue;
      const values = await meter.drain();
      assertFinite(run.phase, step, values, { fromStep: lastLog, checkpoint: checkpointPath });
      last = values;
      lastLog = step;
      ctx.log?.write({ phase: run.phase, step, ...values });
      if (!end) progress.update(step, values);
      churn.check();
      if (end || stop || step - lastCheckpoint >= cfg.checkpointEvery) {
        await saveCheckpoint(run.checkpoint, { ...run.parts, step, extra: { phase: run.phase, complete: end, steps: run.steps } });
        checkpointPath = run.checkpoint;
        lastCheckpoint = step;
      }
      if (stop) {
        progress.finish(step, last);
        throw new PhaseInterrupted(run.phase, step, run.checkpoint);
      }
      const every = run.evalEvery ?? 0;
      if (run.evaluate && (end || (every > 0 && step % every === 0))) {
        const r = await run.evaluate(step);
        if (r) {
          evals.push({ step, mean: r.mean!, std: r.std! });
          ctx.log?.write({ phase: run.phase, step, eval: r });
          if (!ctx.quiet) progress.log(`[${run.phase}] step ${step}: evaluation score ${formatNumber(r.mean!)} +- ${formatNumber(r.std!)}`);
        }
      }
    }
    progress.finish(run.steps, last);
  } finally {
    meter.dispose();
  }
  return { phase: run.phase, steps: run.steps, startStep, ms: performance.now() - t0, last, evals };
}

// =========================================================================================================
// The three phases as runnable units (what runSrpo runs; tests drive them directly)

/** Phase 1 over a replay store: the behaviour model, its optimiser, and the data and dropout streams. */
export function behaviorPhase(b: SrpoBehavior, store: ReplayStore, cfg: SrpoConfig, checkpoint: string): PhaseRun & { opt: AdamW } {
  const gen = new Generator(cfg.seed * 16 + PHASE_SEED.behavior);
  const opt = behaviorOptimizer(b, cfg);
  return {
    phase: 'behavior',
    steps: cfg.behaviorSteps,
    checkpoint,
    parts: { modules: { behavior: b.net }, optimizers: { behavior: opt }, generators: b.dropout ? { data: gen, dropout: b.dropout } : { data: gen } },
    step: () => ({ loss: behaviorStep(b, opt, store.sample(cfg.behaviorBatch, gen), gen) }),
    opt,
  };
}

/** Phase 2: IQL updates on minibatches of the store. */
export function criticPhase(critic: IQLCritic, store: ReplayStore, cfg: SrpoConfig, checkpoint: string): PhaseRun {
  const gen = new Generator(cfg.seed * 16 + PHASE_SEED.critic);
  return {
    phase: 'critic',
    steps: cfg.criticSteps,
    checkpoint,
    parts: { modules: critic.modules(), optimizers: { q: critic.qOptimizer, v: critic.vOptimizer }, generators: { data: gen } },
    step: () => {
      const { vLoss, qLoss } = critic.update(store.sample(cfg.criticBatch, gen));
      return { qLoss, vLoss };
    },
  };
}

/** Phase 3: the surrogate loss on the store's states; `evaluate` (optional) scores the actor at eval points. */
export function actorPhase(tr: ActorTraining, store: ReplayStore, checkpoint: string, evaluate?: PhaseRun['evaluate']): PhaseRun {
  const { cfg } = tr;
  const gen = new Generator(cfg.seed * 16 + PHASE_SEED.actor);
  return {
    phase: 'actor',
    steps: cfg.actorSteps,
    checkpoint,
    parts: { modules: { actor: tr.actor }, optimizers: { actor: tr.opt }, generators: { data: gen } },
    evalEvery: cfg.evalEvery,
    evaluate,
    step: (i) => {
      const { loss, terms } = actorStep(tr, store.sample(cfg.actorBatch, gen).obs, gen, i);
      return { loss, terms: [terms, ['scoreTerm', 'qGradTerm']] };
    },
  };
}

// =========================================================================================================
// The whole run

export interface SrpoRunOptions {
  /** Run directory (created if needed). */
  dir: string;
  /** Continue the phases found in `dir`. */
  resume?: boolean;
  /** Load the behaviour model (or critic) from this checkpoint and skip its phase. */
  behaviorFile?: string;
  criticFile?: string;
  stream?: ProgressStream;
  quiet?: boolean;
  /** Polled after every training step; true stops the run at a checkpoint (see PhaseInterrupted). */
  stopRequested?: () => boolean;
}

export interface SrpoSummary {
  task: string;
  env: string;
  dataset: string;
  /** Normalised score of the final actor (D4RL x100). */
  score: { mean: number; std: number; returnMean: number; episodes: number };
  /** The behaviour model sampled with DPM-Solver (behaviour cloning on the same data), when evaluated. */
  bcScore: { mean: number; std: number } | null;
  /** A deterministic MLP fitted to the actions by mean squared error (the other behaviour cloning), when evaluated. */
  bcMlpScore: { mean: number; std: number } | null;
  datasetScore: { mean: number; std: number; episodes: number } | null;
  /** Wall time per phase in seconds (this session; 0 for a phase loaded or already complete). */
  phaseSeconds: Record<Phase | 'evaluation' | 'setup', number>;
  totalSeconds: number;
  evals: { step: number; mean: number; std: number }[];
  dir: string;
}

function say(opts: { quiet?: boolean }, message: string): void {
  if (!opts.quiet) process.stderr.write(`${message}\n`);
}

/** Resolves a dataset name or path to a file path. */
export function datasetPath(nameOrPath: string): string {
  const builtin = BUILTIN_DATASETS[nameOrPath];
  if (builtin) return builtin.path;
  if (!existsSync(nameOrPath)) {
    throw userError(`dataset '${nameOrPath}' is neither a built-in name (${Object.keys(BUILTIN_DATASETS).join(', ')}) nor an existing file`);
  }
  return nameOrPath;
}

function phaseState(path: string): { step: number; complete: boolean } | null {
  if (!existsSync(path)) return null;
  const info = readCheckpointInfo(path);
  return { step: info.step, complete: info.extra['complete'] === true };
}

/** Runs (or resumes) phases 1-3 and the final evaluation; writes everything under opts.dir. */
export async function runSrpo(cfg: SrpoConfig, opts: SrpoRunOptions): Promise<SrpoSummary> {
  const tStart = performance.now();
  const dir = opts.dir;
  removeStaleTemps(dir);
  const log = new JsonlLog(join(dir, RUN_FILES.log));
  const ctx: RunContext = { cfg, log, stream: opts.stream, quiet: opts.quiet, stopRequested: opts.stopRequested };
  const seconds: SrpoSummary['phaseSeconds'] = { setup: 0, behavior: 0, critic: 0, actor: 0, evaluation: 0 };

  // ---- environment and data; any dimension mismatch stops here, before training
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
  const file = datasetPath(cfg.dataset);
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
  seconds.setup = (performance.now() - tStart) / 1000;

  const behavior = makeBehavior(obsDim, actDim, cfg);
  const critic = makeCritic(obsDim, actDim, cfg);
  const actor = makeActor(obsDim, actDim, cfg);
  const paths: Record<Phase, string> = { behavior: join(dir, 'behavior.safetensors'), critic: join(dir, 'critic.safetensors'), actor: join(dir, 'actor.safetensors') };
  const allEvals: SrpoSummary['evals'] = [];
  let bcScore: SrpoSummary['bcScore'] = null;
  let bcMlpScore: SrpoSummary['bcMlpScore'] = null;

  /** Decides where a phase starts: loaded from a file (skip), resumed, complete, or from scratch. */
  const prepare = async (phase: Phase, parts: CheckpointParts, file: string | undefined): Promise<number | 'done'> => {
    if (file) {
      const info = loadCheckpoint(file, { modules: parts.modules });
      say(opts, `${phase}: loaded from ${file}${info.step ? ` (step ${info.step})` : ''}; phase skipped`);
      log.write({ phase, loaded: file });
      // a copy in the run directory, so that --resume finds the phase complete
      await saveCheckpoint(paths[phase], { modules: parts.modules, step: info.step, extra: { phase, complete: true, loadedFrom: file } });
      return 'done';
    }
    if (!opts.resume) return 0;
    const state = phaseState(paths[phase]);
    if (!state) return 0;
    // a complete phase needs only its networks (a copy of a loaded file holds nothing else)
    loadCheckpoint(paths[phase], state.complete ? { modules: parts.modules } : parts);
    say(opts, `${phase}: ${state.complete ? 'complete' : `resuming at step ${state.step}`} (${paths[phase]})`);
    return state.complete ? 'done' : state.step;
  };

  // ---- phase 1: behaviour model
  {
    const run = behaviorPhase(behavior, data.store, cfg, paths.behavior);
    const start = await prepare('behavior', run.parts, opts.behaviorFile);
    if (start !== 'done') seconds.behavior = (await runPhase(run, ctx, start)).ms / 1000;
    run.opt.dispose();
    behavior.net.eval();
    if (cfg.bcEval) {
      const t = performance.now();
      const res = await evaluatePolicy(behaviorPolicy(behavior, data.obsStats, box, new Generator(cfg.seed * 16 + 7), cfg.bcSolverSteps), cfg);
      bcScore = { mean: res.normalizedMean!, std: res.normalizedStd! };
      seconds.evaluation += (performance.now() - t) / 1000;
      log.write({ phase: 'behavior', bcEval: { mean: bcScore.mean, std: bcScore.std, returnMean: res.mean } });
      say(opts, `behaviour cloning (diffusion samples, DPM-Solver++ ${cfg.bcSolverSteps} steps): score ${bcScore.mean.toFixed(1)} +- ${bcScore.std.toFixed(1)}`);
      const t2 = performance.now();
      const mlp = trainBcMlp(data.store, obsDim, actDim, cfg);
      const res2 = await evaluatePolicy(actorPolicy(mlp, data.obsStats, box), cfg);
      bcMlpScore = { mean: res2.normalizedMean!, std: res2.normalizedStd! };
      seconds.evaluation += (performance.now() - t2) / 1000;
      log.write({ phase: 'behavior', bcMlpEval: { mean: bcMlpScore.mean, std: bcMlpScore.std, returnMean: res2.mean } });
      say(opts, `behaviour cloning (MLP, mean squared error, ${cfg.actorSteps} steps): score ${bcMlpScore.mean.toFixed(1)} +- ${bcMlpScore.std.toFixed(1)}`);
    }
  }

  // ---- phase 2: critic
  {
    const run = criticPhase(critic, data.store, cfg, paths.critic);
    const start = await prepare('critic', run.parts, opts.criticFile);
    if (start !== 'done') seconds.critic = (await runPhase(run, ctx, start)).ms / 1000;
  }

  // ---- phase 3: actor
  const tr = actorTraining(actor, behavior, critic, cfg);
  const policy = actorPolicy(actor, data.obsStats, box);
  let final: EvaluateResult | null = null;
  {
    let evalMs = 0;
    const run = actorPhase(tr, data.store, paths.actor, async (step) => {
      const t = performance.now();
      const res = await evaluatePolicy(policy, cfg);
      evalMs += performance.now() - t;
      if (step === cfg.actorSteps) final = res;
      return { mean: res.normalizedMean!, std: res.normalizedStd!, returnMean: res.mean };
    });
    const start = await prepare('actor', run.parts, undefined);
    if (start !== 'done') {
      const r = await runPhase(run, ctx, start);
      seconds.actor = (r.ms - evalMs) / 1000;
      seconds.evaluation += evalMs / 1000;
      allEvals.push(...r.evals);
    }
  }
  if (!final) {
    const t = performance.now();
    final = await evaluatePolicy(policy, cfg);
    seconds.evaluation += (performance.now() - t) / 1000;
  }
  const result = final as EvaluateResult;
  const summary: SrpoSummary = {
    task: cfg.task,
    env: cfg.env,
    dataset: file,
    score: { mean: result.normalizedMean!, std: result.normalizedStd!, returnMean: result.mean, episodes: result.returns.length },
    bcScore,
    bcMlpScore,
    datasetScore: data.datasetScore,
    phaseSeconds: seconds,
    totalSeconds: (performance.now() - tStart) / 1000,
    evals: allEvals,
    dir,
  };
  log.write({ phase: 'summary', ...summary });
  writeFileAtomic(join(dir, RUN_FILES.summary), JSON.stringify(summary, null, 2));
  writeFileAtomic(join(dir, RUN_FILES.curves), curvesSvg(JsonlLog.read(log.path), { 'BC (diffusion)': bcScore, 'BC (MLP)': bcMlpScore, dataset: data.datasetScore }));
  data.store.dispose();
  critic.dispose();
  tr.opt.dispose();
  return summary;
}

// =========================================================================================================
// Training curves

/** One SVG: a loss chart per phase and the evaluation scores, stacked. */
export function curvesSvg(records: Record<string, unknown>[], baselines: Record<string, { mean: number } | null> = {}): string {
  const charts: string[] = [];
  const num = (v: unknown) => (typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : Number.NaN);
  for (const phase of PHASES) {
    const rows = records.filter((r) => r['phase'] === phase && typeof r['step'] === 'number' && r['eval'] === undefined);
    if (rows.length === 0) continue;
    const keys = new Set<string>();
    for (const r of rows) for (const k of Object.keys(r)) if (!['phase', 'step', 'time'].includes(k) && typeof r[k] !== 'object') keys.add(k);
    const series: LineSeries[] = [...keys].map((k) => ({ name: k, x: rows.map((r) => num(r['step'])), y: rows.map((r) => num(r[k])) }));
    if (series.length) charts.push(lineSvg(series, { title: `${phase} losses`, xLabel: 'step', width: 640, height: 300 }));
  }
  const evals = records.filter((r) => r['phase'] === 'actor' && r['eval'] && typeof r['step'] === 'number');
  if (evals.length) {
    const x = evals.map((r) => num(r['step']));
    const series: LineSeries[] = [{ name: 'SRPO actor', x, y: evals.map((r) => num((r['eval'] as Record<string, unknown>)['mean'])) }];
    for (const [name, b] of Object.entries(baselines)) if (b) series.push({ name, x, y: x.map(() => b.mean) });
    charts.push(lineSvg(series, { title: 'evaluation: normalised score', xLabel: 'actor step', width: 640, height: 300 }));
  }
  if (charts.length === 0) charts.push(lineSvg([{ name: 'no data', x: [0], y: [0] }], { title: 'no training records' }));
  let y = 0;
  const nested = charts.map((c) => {
    const h = Number(/height="(\d+)"/.exec(c)?.[1] ?? 300);
    const out = c.replace('<svg xmlns="http://www.w3.org/2000/svg" ', `<svg x="0" y="${y}" `);
    y += h;
    return out;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="${y}" viewBox="0 0 640 ${y}">\n${nested.join('\n')}</svg>\n`;
}

// =========================================================================================================
// Command line

const CLI_OPTIONS = {
  task: { type: 'string', default: 'pendulum-quick', placeholder: 'name', description: `preset: ${TASK_NAMES.join(', ')}` },
  dataset: { type: 'string', placeholder: 'name|file', description: `D4RL-layout HDF5 file or a built-in dataset (${Object.keys(BUILTIN_DATASETS).join(', ')}); default: the task's` },
  env: { type: 'string', placeholder: 'id', description: 'evaluation environment (default: from the task or dataset name)' },
  seed: { type: 'integer', nonNegative: true, description: 'seed of every network and random stream (default 0)' },
  'behavior-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'phase 1 steps' },
  'critic-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'phase 2 steps' },
  'actor-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'phase 3 steps' },
  'behavior-batch': { type: 'integer', positive: true, placeholder: 'n', description: 'phase 1 batch size' },
  'batch-size': { type: 'integer', positive: true, placeholder: 'n', description: 'phase 2 and 3 batch size' },
  beta: { type: 'number', nonNegative: true, description: "weight of the critic's action gradient (default: the task's)" },
  weighting: { type: 'string', choices: ['VDS', 'stable', 'score'], description: 'w(t): VDS sigma^2 (default), stable 1, score alpha/sigma' },
  baseline: { type: 'boolean', description: 'use eps - z instead of eps in the score term' },
  out: { type: 'string', placeholder: 'dir', description: 'run directory (default runs/srpo-<task>-<timestamp>)' },
  resume: { type: 'string', placeholder: 'dir', description: "continue the run in dir from its last checkpoints, with its config.json" },
  behavior: { type: 'string', placeholder: 'file', description: 'load the behaviour model from a checkpoint and skip phase 1' },
  critic: { type: 'string', placeholder: 'file', description: 'load the critic from a checkpoint and skip phase 2' },
  'eval-every': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'actor steps between evaluations (0: only at the end)' },
  'eval-episodes': { type: 'integer', positive: true, placeholder: 'n', description: 'episodes per evaluation' },
  'no-bc-eval': { type: 'boolean', description: 'skip the behaviour-cloning baselines (diffusion samples and MSE-fitted MLP)' },
  'log-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between log lines and NaN checks' },
  'checkpoint-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between checkpoints within a phase' },
  device: { type: 'string', default: 'auto', placeholder: 'auto|name', description: 'WebGPU adapter: auto, or part of an adapter name (e.g. llvmpipe, nvidia)' },
  quiet: { type: 'boolean', description: 'print only the summary' },
} as const satisfies Record<string, OptionSpec>;

export const CLI: CliSpec<typeof CLI_OPTIONS> = {
  usage: 'node algorithms/srpo.ts [options]',
  description:
    'Score Regularized Policy Optimization (Chen et al., ICLR 2024): trains a diffusion behaviour model (phase 1), an IQL ' +
    'critic (phase 2) and a deterministic one-step actor regularised by the behaviour score (phase 3), then evaluates ' +
    'the actor in the environment and prints its normalised score.\n\n' +
    'With no arguments it runs the quick preset on the shipped Pendulum dataset (pendulum-medium-v1) and compares the ' +
    'result with behaviour cloning (the behaviour model sampled with DPM-Solver, and an MLP fitted to the actions by ' +
    'mean squared error) and with the dataset itself. Outputs go ' +
    'to runs/srpo-<task>-<timestamp>/: config.json, log.jsonl, behavior/critic/actor.safetensors (weights, optimiser ' +
    'state, step), curves.svg and summary.json.',
  options: CLI_OPTIONS,
  examples: [
    'node algorithms/srpo.ts',
    'node algorithms/srpo.ts --task hopper-medium-v2 --dataset path/to/hopper-medium-v2.hdf5',
    'node algorithms/srpo.ts --dataset hopper-expert-v4 --task hopper-medium-expert-v2 --behavior-steps 20000',
    'node algorithms/srpo.ts --resume runs/srpo-pendulum-quick-20250101-120000',
    'node algorithms/srpo.ts --behavior runs/A/behavior.safetensors --critic runs/A/critic.safetensors --beta 0.1',
  ],
};


type CliArgs = NonNullable<ReturnType<typeof parseCli<typeof CLI_OPTIONS>>>;

/** The configuration the command line asks for (preset, then dataset/env inference, then explicit options). */
export function configFromArgs(args: CliArgs): SrpoConfig {
  const cfg = taskConfig(args.task);
  if (args.dataset !== undefined) cfg.dataset = args.dataset;
  if (!cfg.dataset) throw new CliError(`task '${cfg.task}' has no shipped dataset; pass --dataset path/to/${cfg.task}.hdf5`);
  if (args.env !== undefined) cfg.env = args.env;
  else if (args.dataset !== undefined) cfg.env = envForDataset(args.dataset) ?? cfg.env;
  const set = <K extends keyof SrpoConfig>(key: K, v: SrpoConfig[K] | undefined) => {
    if (v !== undefined) cfg[key] = v;
  };
  set('seed', args.seed);
  set('behaviorSteps', args['behavior-steps']);
  set('criticSteps', args['critic-steps']);
  set('actorSteps', args['actor-steps']);
  set('behaviorBatch', args['behavior-batch']);
  set('criticBatch', args['batch-size']);
  set('actorBatch', args['batch-size']);
  set('beta', args.beta);
  set('weighting', args.weighting as SrpoConfig['weighting'] | undefined);
  if (args.baseline) cfg.baseline = true;
  set('evalEvery', args['eval-every']);
  set('evalEpisodes', args['eval-episodes']);
  if (args['no-bc-eval']) cfg.bcEval = false;
  set('logEvery', args['log-every']);
  set('checkpointEvery', args['checkpoint-every']);
  return cfg;
}

/** Options that change training and therefore cannot be combined with --resume. */
const TRAINING_OPTIONS = Object.keys(CLI_OPTIONS).filter((k) => !['resume', 'device', 'quiet', 'out'].includes(k));

function printSummary(s: SrpoSummary): void {
  const line = (label: string, v: string) => console.log(`  ${label.padEnd(30)}${v}`);
  console.log(`\nSRPO ${s.task} on ${s.env} (${s.dataset})`);
  line('normalised score (SRPO actor)', `${s.score.mean.toFixed(1)} +- ${s.score.std.toFixed(1)}  (${s.score.episodes} episodes, mean return ${s.score.returnMean.toFixed(1)})`);
  if (s.bcScore) line('behaviour cloning (diffusion)', `${s.bcScore.mean.toFixed(1)} +- ${s.bcScore.std.toFixed(1)}`);
  if (s.bcMlpScore) line('behaviour cloning (MLP)', `${s.bcMlpScore.mean.toFixed(1)} +- ${s.bcMlpScore.std.toFixed(1)}`);
  if (s.datasetScore) line('dataset (behaviour policy)', `${s.datasetScore.mean.toFixed(1)} +- ${s.datasetScore.std.toFixed(1)}  (${s.datasetScore.episodes} episodes)`);
  const p = s.phaseSeconds;
  line('wall time', `setup ${formatDuration(p.setup * 1000)}, behaviour ${formatDuration(p.behavior * 1000)}, critic ${formatDuration(p.critic * 1000)}, actor ${formatDuration(p.actor * 1000)}, evaluation ${formatDuration(p.evaluation * 1000)}; total ${formatDuration(s.totalSeconds * 1000)}`);
  line('outputs', s.dir);
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<SrpoSummary | null> {
  const args = parseCli(CLI, argv);
  if (!args) return null;
  let cfg: SrpoConfig;
  let dir: string;
  if (args.resume !== undefined) {
    const given = TRAINING_OPTIONS.filter((k) => argv.some((a) => a === `--${k}` || a.startsWith(`--${k}=`)));
    if (given.length) throw new CliError(`--resume continues a run with its saved config.json; drop ${given.map((k) => `--${k}`).join(', ')}`);
    const configPath = join(args.resume, RUN_FILES.config);
    if (!existsSync(configPath)) throw new CliError(`--resume: ${configPath} not found`);
    cfg = JSON.parse(readFileSync(configPath, 'utf8')) as SrpoConfig;
    dir = args.resume;
  } else {
    cfg = configFromArgs(args);
    dir = createRunDir(`srpo-${cfg.task}`, { out: args.out });
    writeFileSync(join(dir, RUN_FILES.config), `${JSON.stringify(cfg, null, 2)}\n`);
  }
  let rt: Runtime;
  try {
    rt = await init(args.device === 'auto' ? {} : { dawnFlags: [`adapter=${args.device}`] });
  } catch (err) {
    throw userError(`no WebGPU device: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!args.quiet) {
    process.stderr.write(`SRPO ${cfg.task}: device ${rt.info.description || rt.info.vendor || 'unknown'} (${rt.info.adapterClass}); run directory ${dir}\n`);
  }
  // the first Ctrl-C stops at the next step with a checkpoint; a second one exits at once
  let stop = false;
  const onInterrupt = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write(`\nstopping after this step (Ctrl-C again to quit at once); resume with --resume ${dir}\n`);
  };
  process.on('SIGINT', onInterrupt);
  try {
    const summary = await runSrpo(cfg, { dir, resume: args.resume !== undefined, behaviorFile: args.behavior, criticFile: args.critic, quiet: args.quiet, stopRequested: () => stop });
    printSummary(summary);
    return summary;
  } catch (err) {
    if (err instanceof PhaseInterrupted) {
      (err as { message: string }).message += `; continue with: node algorithms/srpo.ts --resume ${dir}`;
      process.exitCode = 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onInterrupt);
    disposeEngine();
  }
}

if (isMainModule(import.meta.url)) await runMain('srpo', async () => void (await main()));
