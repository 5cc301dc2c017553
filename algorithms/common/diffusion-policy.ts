// What Diffusion-QL and EDP share: a discrete-time diffusion policy (the toolkit's 'dql' or 'edp' behaviour
// model) with an EMA / target copy, a twin-Q critic regressed to targets at actions sampled from that copy,
// the normalised Q term of their policy losses, candidate selection by the target critic at evaluation, and
// the single-phase run (log, checkpoints, resume, evaluations, baselines, curves, summary) behind both commands.
//
// Every training-step function here is recordable (engine/record.ts): no readbacks, no host writes (the row
// repeats a step needs are made by the eager first step and cached), random numbers from Generators only, and
// branches fixed per step variant (the target actor's update every emaEvery steps is its own variant).
import { join } from 'node:path';
import { backward, detach, noGrad } from '../../engine/autograd.ts';
import { HostRng } from '../../engine/init.ts';
import type { Module } from '../../engine/nn.ts';
import { abs, add, div, lt, minimum, mul, neg, sub } from '../../engine/ops/elementwise.ts';
import { max, mean } from '../../engine/ops/reduce.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { AdamW, clipScale, cosineLR, polyakUpdate } from '../../engine/optim.ts';
import type { ParamGroup } from '../../engine/params.ts';
import { Generator } from '../../engine/random.ts';
import type { Tensor } from '../../engine/tensor.ts';
import type { ObservationStats, RewardPreset } from '../../datasets/presets.ts';
import type { ReplayBatch, ReplayStore } from '../../datasets/replay.ts';
import type { BatchPolicy, EvaluateResult } from '../../envs/evaluate.ts';
import { makeBehaviorModel, type BehaviorModel } from '../diffusion/behavior.ts';
import type { DiscreteDiffusion } from '../diffusion/models.ts';
import { repeatRows, selectByCritic } from '../diffusion/select.ts';
import { twinTdLoss } from '../iql.ts';
import { TwinQ } from './critic-nets.ts';
import { JsonlLog, assignDefined, RUN_FILES, formatDuration, removeStaleTemps, writeFileAtomic, type OptionSpec, type ProgressStream } from './run.ts';
import {
  ENGINE_CLI_OPTIONS, applyOfflineArgs, curvesSvg, envPolicy, evaluatePolicy, loadOfflineData, phaseStart, runPhase, say, type PhaseRun, type RunContext,
} from './offline.ts';
import { datasetPath, trainBcMlp } from '../srpo.ts';
import type { ActionBox } from '../srpo/actor.ts';

// =========================================================================================================
// Configuration shared by both methods

export type PolicySampler = 'ddpm' | 'dpm';

export interface DiffusionPolicyConfig {
  /** Preset name: a D4RL task (hopper-medium-v2, ...) or 'pendulum-quick'. */
  task: string;
  /** HDF5 file in D4RL's layout, or a built-in dataset name. */
  dataset: string;
  /** Environment id for evaluation (envs/registry.ts). */
  env: string;
  seed: number;
  rewardPreset: RewardPreset;
  /** z-score observations with the dataset's statistics (the same transform at evaluation). */
  normalizeObs: boolean;

  trainSteps: number;
  batch: number;

  // the diffusion policy (DQLNoiseNet on a discrete chain of T steps)
  /** Diffusion steps: Diffusion-QL 5 (vp schedule), EDP 100 (scaled linear, T >= 21). */
  T: number;
  actorHidden: number;
  /** Adam learning rate of the policy. */
  lr: number;
  /**
   * Cosine decay of the policy's learning rate to 0 over trainSteps (Diffusion-QL's and EDP's lr_decay option,
   * off by default; Diffusion-QL's README recommends it).
   */
  lrDecay?: boolean;

  // twin-Q critic: 3 x (Linear, Mish) per head
  criticHidden: number[];
  criticLr: number;
  discount: number;
  /** Polyak rate of the target critic, every step. */
  targetTau: number;
  /** Global gradient-norm clip of the policy's and the critic's gradients (0: none). */
  gradClip: number;

  // target (EMA) policy: every emaEvery steps, a copy before emaStart, an EMA with emaDecay from then on
  emaDecay: number;
  emaEvery: number;
  emaStart: number;

  /** Sampler of the critic targets' next actions (from the target policy): the full chain or DPM-Solver++. */
  targetSampler: PolicySampler;
  /** DPM-Solver++ network evaluations (ddpm: all T). */
  targetSamplerSteps: number;
  /** Max-Q backup: per next state, the max over maxQSamples next actions per head, then the min over heads. */
  maxQBackup: boolean;
  maxQSamples: number;

  // evaluation: `candidates` actions per state from the online policy, one drawn from softmax(min Q')
  evalSampler: PolicySampler;
  evalSamplerSteps: number;
  candidates: number;
  /**
   * Multiplier of min Q' in the selection softmax (CleanDiffuser's weight_temperature). EDP and Diffusion-QL
   * use 1, nearly an argmax at D4RL's Q scale (hundreds); Q values of a few units need a larger one for the
   * same sharpness. Default 1.
   */
  selectTemperature?: number;
  evalEvery: number;
  evalEpisodes: number;
  /** Episode i of an evaluation is reset with evalSeed + i. */
  evalSeed: number;
  /** Evaluate the MSE-fitted MLP behaviour-cloning baseline. */
  bcEval: boolean;
  bcMlpSteps: number;
  logEvery: number;
  checkpointEvery: number;
}

/** Stream offsets, so networks and streams draw independent random numbers from one seed. */
export const SEED = { actor: 1, critic: 2, train: 5, select: 8, bcMlp: 9 } as const;

// =========================================================================================================
// The policy and its target copy

export interface DiffusionActor {
  model: BehaviorModel;
  diffusion: DiscreteDiffusion;
  /** The target / EMA copy (null where the method never samples it). */
  target: BehaviorModel | null;
  optimizer: AdamW;
}

export function makeDiffusionActor(kind: 'dql' | 'edp', obsDim: number, actDim: number, cfg: DiffusionPolicyConfig, withTarget: boolean): DiffusionActor {
  const opts = { hidden: cfg.actorHidden, T: cfg.T, maxAction: 1, seed: cfg.seed * 16 + SEED.actor };
  const model = makeBehaviorModel(kind, obsDim, actDim, opts);
  let target: BehaviorModel | null = null;
  if (withTarget) {
    target = makeBehaviorModel(kind, obsDim, actDim, { ...opts, seed: 0 });
    netOf(target).copyFrom(netOf(model));
    for (const p of netOf(target).parameters()) p.requiresGrad = false;
  }
  const schedule = cfg.lrDecay && cfg.trainSteps > 0 ? { schedule: cosineLR(cfg.lr, cfg.trainSteps) } : {};
  return { model, diffusion: model.diffusion as DiscreteDiffusion, target, optimizer: new AdamW(netOf(model).paramGroup(), { lr: cfg.lr, ...schedule }) };
}

export function netOf(b: BehaviorModel): Module {
  return b.net as unknown as Module;
}

/** Step variants of the phase: 0 plain, 1 also copies the policy into its target, 2 also moves the target by EMA. */
export const TARGET_NONE = 0;
export const TARGET_COPY = 1;
export const TARGET_EMA = 2;

/**
 * The variant of 0-based step i (Diffusion-QL's step_ema: every emaEvery steps, a copy before emaStart and an
 * EMA update from then on; EDP updates its target policy on the same rule).
 */
export function targetVariant(cfg: Pick<DiffusionPolicyConfig, 'emaEvery' | 'emaStart'>, i: number): number {
  if (i % cfg.emaEvery !== 0) return TARGET_NONE;
  return i < cfg.emaStart ? TARGET_COPY : TARGET_EMA;
}

export function updateTarget(actor: DiffusionActor, cfg: Pick<DiffusionPolicyConfig, 'emaDecay'>, variant: number): void {
  if (variant === TARGET_NONE || !actor.target) return;
  polyakUpdate(netOf(actor.target).paramGroup(), actor.optimizer.group, variant === TARGET_COPY ? 1 : 1 - cfg.emaDecay);
}

/** One Adam step over the group's gradients, clipped to a global norm when clip > 0. */
export function clippedStep(opt: AdamW, clip: number): void {
  if (clip > 0) opt.step(undefined, clipScale(opt.group, clip).scale);
  else opt.step();
}

/** Runs fn with the modules' parameters off the tape: gradients flow through them to their inputs, not into them. */
export function withFrozen<T>(modules: Module[], fn: () => T): T {
  const params = modules.flatMap((mod) => mod.parameters()).filter((p) => p.requiresGrad);
  for (const p of params) p.requiresGrad = false;
  try {
    return fn();
  } finally {
    for (const p of params) p.requiresGrad = true;
  }
}

// =========================================================================================================
// Policy samples inside a training step

/**
 * Actions of a policy at `cond` [B, S] (one per row), no gradient: the full reverse chain or DPM-Solver++ with
 * `steps` network evaluations (and the clipped data prediction at its end time).
 */
export function samplePolicy(b: BehaviorModel, cond: Tensor, gen: Generator, sampler: PolicySampler, steps: number): Tensor {
  return b.sample(cond, 1, gen, sampler === 'dpm' ? { sampler: 'dpm', steps } : { sampler: 'ddpm' });
}

// =========================================================================================================
// Critic: twin Q regressed to r + discount notDone min Q'(s', a') with a' from the target policy

export interface TwinQCriticConfig {
  hidden: readonly number[];
  lr: number;
  discount: number;
  tau: number;
  gradClip: number;
  seed: number;
}

export class TwinQCritic {
  readonly q: TwinQ;
  readonly qTarget: TwinQ;
  readonly optimizer: AdamW;
  readonly config: Readonly<TwinQCriticConfig>;
  private readonly targetGroup: ParamGroup;

  constructor(obsDim: number, actDim: number, config: TwinQCriticConfig) {
    this.config = Object.freeze({ ...config, hidden: [...config.hidden] });
    this.q = new TwinQ(obsDim, actDim, { hidden: config.hidden, act: 'mish', rng: new HostRng(config.seed) });
    this.qTarget = new TwinQ(obsDim, actDim, { hidden: config.hidden, act: 'mish', rng: new HostRng(0) });
    this.qTarget.copyFrom(this.q);
    for (const p of this.qTarget.parameters()) p.requiresGrad = false;
    this.optimizer = new AdamW(this.q.paramGroup(), { lr: config.lr });
    this.targetGroup = this.qTarget.paramGroup();
  }

  /**
   * min over heads of Q'(s', a') [B, 1], no gradient. With samples n > 1 the next actions are [B*n, A]
   * state-major (n per next state): each head takes its max over the n first (the max-Q backup).
   */
  nextValue(nextObs: Tensor, nextActions: Tensor, samples = 1): Tensor {
    return noGrad(() => {
      const B = nextObs.shape[0]!;
      const [q1, q2] = this.qTarget.forward(repeatRows(nextObs, samples), nextActions);
      if (samples === 1) return minimum(q1, q2);
      const best = (q: Tensor) => max(reshape(q, [B, samples]), { axis: -1, keepDim: true });
      return minimum(best(q1), best(q2));
    });
  }

  /** One step on MSE(Q1, y) + MSE(Q2, y), y = r + discount notDone nextV, then the target's Polyak update. */
  update(batch: ReplayBatch, nextV: Tensor): Tensor {
    const c = this.config;
    const [q1, q2] = this.q.forward(batch.obs, batch.actions);
    const loss = twinTdLoss(q1, q2, batch.rewards, batch.notDone, nextV, c.discount, 'sum');
    this.optimizer.group.zeroGrad();
    backward(loss);
    clippedStep(this.optimizer, c.gradClip);
    polyakUpdate(this.targetGroup, this.optimizer.group, c.tau);
    return detach(loss);
  }

  modules(): Record<string, Module> {
    return { q: this.q, qTarget: this.qTarget };
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}

// =========================================================================================================
// The normalised Q term of the policy losses

/**
 * -mean Q_j(s, a) / stopgrad(mean |Q_k(s, a)|) with the head j drawn uniformly per step on the GPU (one number
 * from gen, no readback): k = j ('same', EDP's TD3 backbone: lambda = alpha / mean |Q_j|) or k the other head
 * ('other', Diffusion-QL: q1 / |q2|, swapped with probability 0.5). Scalar [1], differentiable in q1 and q2.
 */
export function randomHeadQLoss(q1: Tensor, q2: Tensor, gen: Generator, normaliser: 'same' | 'other'): Tensor {
  const first = lt(gen.uniform([1]), 0.5);
  const m1 = mean(q1);
  const m2 = mean(q2);
  const scale1 = detach(mean(abs(normaliser === 'same' ? q1 : q2)));
  const scale2 = detach(mean(abs(normaliser === 'same' ? q2 : q1)));
  const loss1 = neg(div(m1, scale1));
  const loss2 = neg(div(m2, scale2));
  return add(mul(first, loss1), mul(sub(1, first), loss2));
}

// =========================================================================================================
// Evaluation

/** Anything with a target twin Q to score candidates. */
export interface TargetCritic {
  qTarget: TwinQ;
}

/**
 * Per state, `candidates` actions of the online policy, one drawn from softmax(min(Q1', Q2')), [S, actDim].
 * No gradient.
 */
export function selectAction(
  policy: BehaviorModel,
  critic: TargetCritic,
  obs: Tensor,
  gen: Generator,
  opts: { candidates: number; sampler: PolicySampler; steps: number; temperature?: number },
): Tensor {
  return noGrad(() => {
    const n = opts.candidates;
    const a = policy.sample(obs, n, gen, opts.sampler === 'dpm' ? { sampler: 'dpm', steps: opts.steps } : { sampler: 'ddpm' });
    if (n === 1) return a;
    const states = repeatRows(obs, n);
    return selectByCritic(a, critic.qTarget.min(states, a), n, gen, { temperature: opts.temperature ?? 1 });
  });
}

export function diffusionPolicy(
  policy: BehaviorModel,
  critic: TargetCritic,
  cfg: Pick<DiffusionPolicyConfig, 'candidates' | 'evalSampler' | 'evalSamplerSteps' | 'selectTemperature'>,
  stats: ObservationStats | null,
  box: ActionBox,
  gen: Generator,
): BatchPolicy {
  const opts = { candidates: cfg.candidates, sampler: cfg.evalSampler, steps: cfg.evalSamplerSteps, temperature: cfg.selectTemperature ?? 1 };
  return envPolicy((s) => selectAction(policy, critic, s, gen, opts), stats, box);
}

// =========================================================================================================
// The run: one training phase with evaluations, baselines, curves and a summary

/** What a method gives the run. */
export interface MethodModels {
  actor: DiffusionActor;
  critic: TargetCritic;
  /** Checkpoint parts beyond the policy, its target and its optimiser: the critic's networks and optimisers. */
  criticModules: Record<string, Module>;
  criticOptimizers: Record<string, AdamW>;
  /** One training step of the given target variant on a batch; returns its losses. */
  step(batch: ReplayBatch, gen: Generator, variant: number): Record<string, Tensor | [Tensor, string[]]>;
  /** The variant of 0-based step i (default: targetVariant when the actor has a target, else 0). */
  variant?(i: number): number;
  dispose(): void;
}

/** The training phase over a replay store; `evaluate` (optional) scores the policy at eval points. */
export function trainPhase(m: MethodModels, cfg: DiffusionPolicyConfig, store: ReplayStore, checkpoint: string, evaluate?: PhaseRun['evaluate']): PhaseRun {
  const gen = new Generator(cfg.seed * 16 + SEED.train);
  const { actor } = m;
  const modules: Record<string, Module> = { actor: netOf(actor.model), ...(actor.target ? { actorTarget: netOf(actor.target) } : {}), ...m.criticModules };
  const variant = m.variant ? (i: number) => m.variant!(i) : actor.target ? (i: number) => targetVariant(cfg, i) : undefined;
  return {
    phase: 'train',
    steps: cfg.trainSteps,
    checkpoint,
    parts: { modules, optimizers: { actor: actor.optimizer, ...m.criticOptimizers }, generators: { data: gen } },
    evalEvery: cfg.evalEvery,
    evaluate,
    variant,
    step: (v) => m.step(store.sample(cfg.batch, gen), gen, v),
  };
}

export interface DiffusionPolicyRunOptions {
  dir: string;
  resume?: boolean;
  stream?: ProgressStream;
  quiet?: boolean;
  stopRequested?: () => boolean;
  eager?: boolean;
}

type Score = { mean: number; std: number };

export interface DiffusionPolicySummary {
  method: string;
  task: string;
  env: string;
  dataset: string;
  /** Normalised score of the final policy (D4RL x100). */
  score: Score & { returnMean: number; episodes: number };
  /** An MLP fitted to the actions by mean squared error (behaviour cloning), when evaluated. */
  bcMlpScore: Score | null;
  datasetScore: (Score & { episodes: number }) | null;
  phaseSeconds: { setup: number; train: number; evaluation: number };
  totalSeconds: number;
  evals: { step: number; mean: number; std: number }[];
  dir: string;
}

/** Runs (or resumes) training with evaluations and writes everything under opts.dir. */
export async function runDiffusionPolicy(
  method: string,
  cfg: DiffusionPolicyConfig,
  build: (obsDim: number, actDim: number) => MethodModels,
  opts: DiffusionPolicyRunOptions,
): Promise<DiffusionPolicySummary> {
  const tStart = performance.now();
  const dir = opts.dir;
  removeStaleTemps(dir);
  const log = new JsonlLog(join(dir, RUN_FILES.log));
  const ctx: RunContext = { cfg, log, stream: opts.stream, quiet: opts.quiet, stopRequested: opts.stopRequested, eager: opts.eager };
  const seconds = { setup: 0, train: 0, evaluation: 0 };
  const file = datasetPath(cfg.dataset);
  const { data, box } = await loadOfflineData(cfg, file, dir, opts);
  const { obsDim, actDim } = data.transitions;
  seconds.setup = (performance.now() - tStart) / 1000;
  const m = build(obsDim, actDim);
  const evalTimed = async (policy: BatchPolicy): Promise<EvaluateResult> => {
    const t = performance.now();
    const res = await evaluatePolicy(policy, cfg);
    seconds.evaluation += (performance.now() - t) / 1000;
    return res;
  };

  let bcMlpScore: Score | null = null;
  if (cfg.bcEval && !opts.resume) {
    const t = performance.now();
    const mlp = trainBcMlp(data.store, obsDim, actDim, {
      actorHidden: cfg.actorHidden, actorLayers: 3, actorLr: 1e-3, actorSteps: cfg.bcMlpSteps, actorBatch: cfg.batch, seed: cfg.seed,
    });
    seconds.evaluation += (performance.now() - t) / 1000;
    const res = await evalTimed(envPolicy((s) => mlp.forward(s), data.obsStats, box));
    bcMlpScore = { mean: res.normalizedMean!, std: res.normalizedStd! };
    log.write({ phase: 'baseline', bcMlpEval: { ...bcMlpScore, returnMean: res.mean } });
    say(opts, `behaviour cloning (MLP, mean squared error, ${cfg.bcMlpSteps} steps): score ${bcMlpScore.mean.toFixed(1)} +- ${bcMlpScore.std.toFixed(1)}`);
  } else if (opts.resume) {
    const prior = JsonlLog.read(log.path).find((r) => r['bcMlpEval']);
    if (prior) bcMlpScore = prior['bcMlpEval'] as Score;
  }

  const policy = diffusionPolicy(m.actor.model, m.critic, cfg, data.obsStats, box, new Generator(cfg.seed * 16 + SEED.select));
  const path = join(dir, 'train.safetensors');
  let final: EvaluateResult | null = null;
  const evals: DiffusionPolicySummary['evals'] = [];
  let evalMs = 0;
  const run = trainPhase(m, cfg, data.store, path, async (step) => {
    const t = performance.now();
    const res = await evaluatePolicy(policy, cfg);
    evalMs += performance.now() - t;
    if (step === cfg.trainSteps) final = res;
    return { mean: res.normalizedMean!, std: res.normalizedStd!, returnMean: res.mean };
  });
  const start = await phaseStart('train', run.parts, path, { resume: opts.resume, quiet: opts.quiet, log });
  if (start !== 'done') {
    const r = await runPhase(run, ctx, start);
    seconds.train = (r.ms - evalMs) / 1000;
    seconds.evaluation += evalMs / 1000;
    evals.push(...r.evals);
  }
  if (!final) final = await evalTimed(policy);
  const result = final as EvaluateResult;
  const summary: DiffusionPolicySummary = {
    method,
    task: cfg.task,
    env: cfg.env,
    dataset: file,
    score: { mean: result.normalizedMean!, std: result.normalizedStd!, returnMean: result.mean, episodes: result.returns.length },
    bcMlpScore,
    datasetScore: data.datasetScore,
    phaseSeconds: seconds,
    totalSeconds: (performance.now() - tStart) / 1000,
    evals,
    dir,
  };
  log.write({ phase: 'summary', ...summary });
  writeFileAtomic(join(dir, RUN_FILES.summary), JSON.stringify(summary, null, 2));
  writeFileAtomic(
    join(dir, RUN_FILES.curves),
    curvesSvg(JsonlLog.read(log.path), { 'BC (MLP)': bcMlpScore, dataset: data.datasetScore }, { phases: ['train'], evalPhase: 'train', policy: `${method} policy` }),
  );
  data.store.dispose();
  m.dispose();
  return summary;
}

export function printSummary(s: DiffusionPolicySummary): void {
  const line = (label: string, v: string) => console.log(`  ${label.padEnd(32)}${v}`);
  console.log(`\n${s.method} ${s.task} on ${s.env} (${s.dataset})`);
  line(`normalised score (${s.method})`, `${s.score.mean.toFixed(1)} +- ${s.score.std.toFixed(1)}  (${s.score.episodes} episodes, mean return ${s.score.returnMean.toFixed(1)})`);
  if (s.bcMlpScore) line('behaviour cloning (MLP)', `${s.bcMlpScore.mean.toFixed(1)} +- ${s.bcMlpScore.std.toFixed(1)}`);
  if (s.datasetScore) line('dataset (behaviour policy)', `${s.datasetScore.mean.toFixed(1)} +- ${s.datasetScore.std.toFixed(1)}  (${s.datasetScore.episodes} episodes)`);
  const p = s.phaseSeconds;
  line('wall time', `setup ${formatDuration(p.setup * 1000)}, train ${formatDuration(p.train * 1000)}, evaluation ${formatDuration(p.evaluation * 1000)}; total ${formatDuration(s.totalSeconds * 1000)}`);
  line('outputs', s.dir);
}

// =========================================================================================================
// Command line: the options both commands take

export const COMMON_CLI_OPTIONS = {
  dataset: { type: 'string', placeholder: 'name|file', description: "D4RL-layout HDF5 file or a built-in dataset (pendulum-medium-v1, hopper-expert-v4); default: the task's" },
  env: { type: 'string', placeholder: 'id', description: 'evaluation environment (default: from the task or dataset name)' },
  seed: { type: 'integer', nonNegative: true, description: 'seed of every network and random stream (default 0)' },
  'train-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'training steps (critic and policy per step)' },
  'batch-size': { type: 'integer', positive: true, placeholder: 'n', description: 'batch size' },
  lr: { type: 'number', nonNegative: true, description: "policy learning rate (default: the task's)" },
  'lr-decay': { type: 'boolean', description: "cosine decay of the policy's learning rate to 0 over the training steps" },
  T: { type: 'integer', positive: true, placeholder: 'n', description: 'diffusion steps of the policy' },
  'grad-clip': { type: 'number', nonNegative: true, description: "global gradient-norm clip (0: none; default: the task's)" },
  'max-q-backup': { type: 'boolean', description: 'critic target: max over 10 next actions per head, then min over heads' },
  candidates: { type: 'integer', positive: true, placeholder: 'n', description: 'policy samples per state at evaluation, one picked by softmax(min Q\')' },
  'select-temperature': { type: 'number', nonNegative: true, description: "multiplier of min Q' in the selection softmax (default: the task's; 10 in pendulum-quick, 1 in the papers' tasks)" },
  out: { type: 'string', placeholder: 'dir', description: 'run directory (default runs/<method>-<task>-<timestamp>)' },
  resume: { type: 'string', placeholder: 'dir', description: 'continue the run in dir from its last checkpoint, with its config.json' },
  'eval-every': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'training steps between evaluations (0: only at the end)' },
  'eval-episodes': { type: 'integer', positive: true, placeholder: 'n', description: 'episodes per evaluation' },
  'no-bc-eval': { type: 'boolean', description: 'skip the behaviour-cloning baseline (MSE-fitted MLP)' },
  'log-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between log lines and NaN checks' },
  'checkpoint-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between checkpoints' },
  device: { type: 'string', default: 'auto', placeholder: 'auto|name', description: 'WebGPU adapter: auto, or part of an adapter name (e.g. llvmpipe, nvidia)' },
  quiet: { type: 'boolean', description: 'print only the summary' },
  ...ENGINE_CLI_OPTIONS,
} as const satisfies Record<string, OptionSpec>;

/** Options that do not change training (allowed with --resume). */
export const NON_TRAINING_OPTIONS = ['resume', 'device', 'quiet', 'out', 'eager', 'tune'];

/** Applies the shared options to a preset's config. */
export function applyCommonArgs(
  cfg: DiffusionPolicyConfig,
  args: {
    dataset?: string; env?: string; seed?: number; 'train-steps'?: number; 'batch-size'?: number; lr?: number; 'lr-decay'?: boolean; T?: number; 'grad-clip'?: number;
    'max-q-backup'?: boolean; candidates?: number; 'select-temperature'?: number; 'eval-every'?: number; 'eval-episodes'?: number; 'no-bc-eval'?: boolean; 'log-every'?: number; 'checkpoint-every'?: number;
  },
): void {
  applyOfflineArgs(cfg, args);
  assignDefined(cfg, {
    trainSteps: args['train-steps'],
    batch: args['batch-size'],
    lr: args.lr,
    T: args.T,
    gradClip: args['grad-clip'],
    candidates: args.candidates,
    selectTemperature: args['select-temperature'],
  });
  if (args['max-q-backup']) cfg.maxQBackup = true;
  if (args['lr-decay']) cfg.lrDecay = true;
}
