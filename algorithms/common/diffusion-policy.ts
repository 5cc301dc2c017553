// What Diffusion-QL and EDP share: a discrete-time diffusion policy (the toolkit's 'dql' or 'edp' behaviour
// model) with an EMA / target copy, a twin-Q critic regressed to targets at actions sampled from that copy,
// the normalised Q term of their policy losses, candidate selection by the target critic at evaluation, and
// the offline method both are: one training phase, the selected policy deployed, the MSE-fitted MLP beside it.
//
// Every training-step function here is recordable (engine/record.ts): no readbacks, no host writes (the row
// repeats a step needs are made by the eager first step and cached), random numbers from Generators only, and
// branches fixed per step variant (the target actor's update every emaEvery steps is its own variant).
import { detach, noGrad } from '../../engine/autograd.ts';
import type { Module } from '../../engine/nn.ts';
import { abs, add, div, lt, mul, neg, sub } from '../../engine/ops/elementwise.ts';
import { mean } from '../../engine/ops/reduce.ts';
import { AdamW, cosineLR, polyakUpdate } from '../../engine/optim.ts';
import { Generator } from '../../engine/random.ts';
import type { Tensor } from '../../engine/tensor.ts';
import type { ObservationStats } from '../../datasets/presets.ts';
import type { ReplayBatch, ReplayStore } from '../../datasets/replay.ts';
import type { BatchPolicy } from '../../envs/evaluate.ts';
import { makeBehaviorModel, type BehaviorModel } from '../diffusion/behavior.ts';
import type { DiscreteDiffusion } from '../diffusion/models.ts';
import { repeatRows, selectByCritic } from '../diffusion/select.ts';
import type { ActionBox } from './action-box.ts';
import { mlpBaseline } from './baselines.ts';
import type { OptionSpecs } from './cli.ts';
import { envPolicy } from './evaluation.ts';
import type { OfflineCli, OfflineConfig, OfflineMethod } from './offline-method.ts';
import type { PhaseRun } from './phase.ts';
import type { StepLosses } from './step-scheduler.ts';
import type { TwinQ } from './critic-nets.ts';

// =========================================================================================================
// Configuration shared by both methods

export type PolicySampler = 'ddpm' | 'dpm';

export interface DiffusionPolicyConfig extends OfflineConfig {
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
  bcMlpSteps: number;
}

/** Stream offsets, so networks and streams draw independent random numbers from one seed. */
export const SEED = { actor: 1, critic: 2, train: 5, select: 8 } as const;

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
    target.net.copyFrom(model.net);
    for (const p of target.net.parameters()) p.requiresGrad = false;
  }
  const schedule = cfg.lrDecay && cfg.trainSteps > 0 ? { schedule: cosineLR(cfg.lr, cfg.trainSteps) } : {};
  return { model, diffusion: model.diffusion as DiscreteDiffusion, target, optimizer: new AdamW(model.net.paramGroup(), { lr: cfg.lr, ...schedule }) };
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
  polyakUpdate(actor.target.net.paramGroup(), actor.optimizer.group, variant === TARGET_COPY ? 1 : 1 - cfg.emaDecay);
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
// The method: one training phase, the policy deployed with candidate selection, the MLP baseline

/** What Diffusion-QL and EDP build: the policy, the critic, and their training step. */
export interface MethodModels {
  actor: DiffusionActor;
  critic: TargetCritic;
  /** Checkpoint parts beyond the policy, its target and its optimiser: the critic's networks and optimisers. */
  criticModules: Record<string, Module>;
  criticOptimizers: Record<string, AdamW>;
  /** One training step of the given target variant on a batch; returns its losses. */
  step(batch: ReplayBatch, gen: Generator, variant: number): StepLosses;
  /** The variant of 0-based step i (default: targetVariant when the actor has a target, else 0). */
  variant?(i: number): number;
  dispose(): void;
}

/** The training phase over a replay store. */
export function trainPhase(m: MethodModels, cfg: DiffusionPolicyConfig, store: ReplayStore, checkpoint: string): PhaseRun {
  const gen = new Generator(cfg.seed * 16 + SEED.train);
  const { actor } = m;
  const modules: Record<string, Module> = { actor: actor.model.net, ...(actor.target ? { actorTarget: actor.target.net } : {}), ...m.criticModules };
  const variant = m.variant ? (i: number) => m.variant!(i) : actor.target ? (i: number) => targetVariant(cfg, i) : undefined;
  return {
    phase: 'train',
    steps: cfg.trainSteps,
    checkpoint,
    parts: { modules, optimizers: { actor: actor.optimizer, ...m.criticOptimizers }, generators: { data: gen } },
    variant,
    step: (v) => m.step(store.sample(cfg.batch, gen), gen, v),
  };
}

/** Diffusion-QL or EDP as an offline method: everything but the models and the command line is the same. */
export function diffusionPolicyMethod<C extends DiffusionPolicyConfig, M extends MethodModels, S extends OptionSpecs>(
  name: string,
  title: (cfg: C) => string,
  build: (obsDim: number, actDim: number, cfg: C) => M,
  cli: OfflineCli<C, S>,
): OfflineMethod<C, M, S> {
  return {
    name,
    title,
    policyName: (cfg) => `${title(cfg)} policy`,
    build,
    phases: [{ name: 'train', make: (m, cfg, store, path) => trainPhase(m, cfg, store, path) }],
    policy: (m, cfg, data, box) => diffusionPolicy(m.actor.model, m.critic, cfg, data.obsStats, box, new Generator(cfg.seed * 16 + SEED.select)),
    baselines: (cfg) => [mlpBaseline(null, { hidden: cfg.actorHidden, layers: 3, lr: 1e-3, steps: cfg.bcMlpSteps, batch: cfg.batch, seed: cfg.seed })],
    dispose: (m) => m.dispose(),
    cli,
  };
}

