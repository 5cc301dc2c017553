// Optimisers over flat parameter groups: AdamW in one dispatch per step, global gradient-norm clipping with
// no readback, Polyak/EMA target updates, and learning-rate schedules.
import { kernel } from './kernel.ts';
import { runtime } from './runtime.ts';
import { empty, keep, type Tensor } from './tensor.ts';
import { fill_ } from './basic.ts';
import type { ParamGroup } from './params.ts';
import { flatGrid } from '../kernels/common.ts';
import {
  adamwSource,
  normFinalizeSource,
  polyakSource,
  scaleByScalarSource,
  sumSquaresPartialSource,
  type VectorWidth,
} from '../kernels/optim.ts';

function widthFor(length: number): VectorWidth {
  return length % 4 === 0 ? 4 : 1;
}

function checkScalar(what: string, v: number, ok: boolean, range: string): void {
  if (!Number.isFinite(v) || !ok) throw new Error(`${what} must be ${range}, got ${v}`);
}

export interface AdamWOptions {
  lr: number;
  /** Decay rates of the first and second moment averages; default [0.9, 0.999]. */
  betas?: [number, number];
  /** Added to the bias-corrected sqrt(v); default 1e-8. */
  eps?: number;
  /**
   * Decoupled weight decay: p <- p * (1 - lr * weightDecay) each step. Default 0, unlike PyTorch's AdamW (0.01),
   * because the diffusion-policy recipes this engine serves use Adam or AdamW without decay.
   */
  weightDecay?: number;
  /** Learning rate as a function of the step count (0-based); when set, step() without an lr uses it. */
  schedule?: LRSchedule;
}

/**
 * AdamW with PyTorch's semantics over one ParamGroup. The moment estimates m and v live in their own flat
 * buffers, laid out like the group, so a step is one dispatch; the bias corrections and the learning rate are
 * computed on the host from stepCount and travel in the uniforms, registered as per-step values so a recorded
 * step recomputes them at every replay.
 */
export class AdamW {
  readonly group: ParamGroup;
  /** The learning rate used by step() when none is passed. */
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  /** Learning rate by step count, used when step() gets no lr (then `lr` is ignored). */
  schedule: LRSchedule | null;
  /** Steps taken so far; step t (counting from 1) uses bias corrections 1 - beta^t. */
  stepCount = 0;
  readonly m: Tensor;
  readonly v: Tensor;

  constructor(group: ParamGroup, opts: AdamWOptions) {
    const betas = opts.betas ?? [0.9, 0.999];
    const eps = opts.eps ?? 1e-8;
    const weightDecay = opts.weightDecay ?? 0;
    checkScalar('AdamW: lr', opts.lr, opts.lr >= 0, '>= 0');
    checkScalar('AdamW: betas[0]', betas[0], betas[0] >= 0 && betas[0] < 1, 'in [0, 1)');
    checkScalar('AdamW: betas[1]', betas[1], betas[1] >= 0 && betas[1] < 1, 'in [0, 1)');
    checkScalar('AdamW: eps', eps, eps >= 0, '>= 0');
    checkScalar('AdamW: weightDecay', weightDecay, weightDecay >= 0, '>= 0');
    this.group = group;
    this.lr = opts.lr;
    this.betas = [betas[0], betas[1]];
    this.eps = eps;
    this.weightDecay = weightDecay;
    this.schedule = opts.schedule ?? null;
    this.m = keep(fill_(empty([group.length]), 0));
    this.v = keep(fill_(empty([group.length]), 0));
  }

  /**
   * One update of every parameter from the group's gradients, at learning rate `lr` if given, else
   * schedule(stepCount), else `this.lr` (the last two read afresh at every replay of a recorded step).
   * `gradScale`, a one-element tensor, multiplies every gradient inside the same dispatch (the `scale` of
   * clipScale clips without touching the gradients).
   */
  step(lr?: number, gradScale?: Tensor): void {
    if (lr !== undefined) checkScalar('AdamW.step: lr', lr, lr >= 0, '>= 0');
    if (gradScale && (gradScale.size !== 1 || gradScale.dtype !== 'f32')) {
      throw new Error(`AdamW.step: gradScale must be a one-element f32 tensor, got ${gradScale.dtype} [${gradScale.shape}]`);
    }
    const [beta1, beta2] = this.betas;
    const width = widthFor(this.group.length);
    const scaled = gradScale !== undefined;
    const k = kernel(`adamw_w${width}${scaled ? '_scaled' : ''}`, () => adamwSource(width, scaled));
    const buffers: Record<string, Tensor> = { values: this.group.values, grads: this.group.grads, exp_avg: this.m, exp_avg_sq: this.v };
    if (gradScale) buffers['grad_scale'] = gradScale;
    const n = this.group.length / width;
    const uniforms = { n, beta1, beta2, one_minus_beta1: 1 - beta1, one_minus_beta2: 1 - beta2, eps: this.eps, decay: 1, step_size: 0, inv_sqrt_bc2: 1 };
    this.advance(uniforms, lr);
    const rt = runtime();
    rt.perStep(uniforms, () => this.advance(uniforms, lr));
    rt.dispatch(k, buffers, uniforms, flatGrid(n));
  }

  /** Counts one step and writes its learning-rate and bias-correction terms into the uniforms. */
  private advance(u: { decay: number; step_size: number; inv_sqrt_bc2: number }, fixedLr: number | undefined): void {
    const lr = fixedLr ?? (this.schedule ? this.schedule(this.stepCount) : this.lr);
    checkScalar('AdamW.step: lr', lr, lr >= 0, '>= 0');
    const t = this.stepCount + 1;
    const [beta1, beta2] = this.betas;
    const biasCorrection1 = 1 - Math.pow(beta1, t);
    const biasCorrection2 = 1 - Math.pow(beta2, t);
    u.decay = 1 - lr * this.weightDecay;
    u.step_size = lr / biasCorrection1;
    u.inv_sqrt_bc2 = 1 / Math.sqrt(biasCorrection2);
    this.stepCount = t;
  }

  /** Forgets the moment estimates and the step count. */
  reset(): void {
    fill_(this.m, 0);
    fill_(this.v, 0);
    this.stepCount = 0;
  }

  dispose(): void {
    this.m.dispose();
    this.v.dispose();
  }
}

const MAX_PARTIALS = 4096;

/**
 * The global L2 norm of the group's gradients and the clip factor min(1, maxNorm / (norm + 1e-6)), both as
 * one-element tensors left on the GPU; the gradients are not changed. Two dispatches. Pass `scale` to
 * AdamW.step to clip inside the update.
 */
export function clipScale(group: ParamGroup, maxNorm: number): { norm: Tensor; scale: Tensor } {
  checkScalar('clipScale: maxNorm', maxNorm, maxNorm > 0, '> 0');
  const width = widthFor(group.length);
  const n = group.length / width;
  const parts = Math.min(MAX_PARTIALS, Math.max(1, Math.ceil(n / 256)));
  const rt = runtime();
  const partials = empty([parts]);
  rt.dispatch(kernel(`sum_squares_partial_w${width}`, () => sumSquaresPartialSource(width)), { grads: group.grads, partials }, { n, parts }, flatGrid(parts));
  const norm = empty([1]);
  const scale = empty([1]);
  rt.dispatch(kernel('norm_finalize', normFinalizeSource), { partials, norm, scale }, { parts, max_norm: maxNorm }, [1]);
  partials.dispose();
  return { norm, scale };
}

/** The global L2 norm of the group's gradients as a one-element tensor (two dispatches, no readback). */
export function gradNorm(group: ParamGroup): Tensor {
  const { norm, scale } = clipScale(group, 3.4e38);
  scale.dispose();
  return norm;
}

/**
 * Scales the group's gradients in place by min(1, maxNorm / (norm + 1e-6)), with norm their global L2 norm,
 * entirely on the GPU (three dispatches). Returns the norm before clipping as a one-element tensor.
 */
export function clipGradNorm(group: ParamGroup, maxNorm: number): Tensor {
  const { norm, scale } = clipScale(group, maxNorm);
  const width = widthFor(group.length);
  const n = group.length / width;
  runtime().dispatch(kernel(`scale_by_scalar_w${width}`, () => scaleByScalarSource(width)), { grads: group.grads, scale }, { n }, flatGrid(n));
  scale.dispose();
  return norm;
}

function sameLayout(a: ParamGroup, b: ParamGroup): string | null {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  if (a.entries.length !== b.entries.length) return `${a.entries.length} and ${b.entries.length} parameters`;
  for (let i = 0; i < a.entries.length; i++) {
    const ta = a.entries[i]!.tensor;
    const tb = b.entries[i]!.tensor;
    if (a.offsets[i] !== b.offsets[i] || ta.shape.length !== tb.shape.length || ta.shape.some((d, j) => d !== tb.shape[j])) {
      return `parameter ${i} (${a.entries[i]!.name} [${ta.shape}] at ${a.offsets[i]} vs ${b.entries[i]!.name} [${tb.shape}] at ${b.offsets[i]})`;
    }
  }
  return null;
}

/**
 * target <- (1 - tau) * target + tau * source over whole groups, in one dispatch. With tau = 1 - decay this is
 * an exponential moving average of the source. The groups must have identical layouts.
 */
export function polyakUpdate(target: ParamGroup, source: ParamGroup, tau: number): void {
  checkScalar('polyakUpdate: tau', tau, tau >= 0 && tau <= 1, 'in [0, 1]');
  if (target === source || target.values.storage.buffer === source.values.storage.buffer) {
    throw new Error('polyakUpdate: target and source are the same group');
  }
  const mismatch = sameLayout(target, source);
  if (mismatch) throw new Error(`polyakUpdate: groups differ in layout: ${mismatch}`);
  const width = widthFor(target.length);
  const n = target.length / width;
  runtime().dispatch(
    kernel(`polyak_w${width}`, () => polyakSource(width)),
    { target_values: target.values, source_values: source.values },
    { n, keep: 1 - tau, tau },
    flatGrid(n),
  );
}

export type LRSchedule = (step: number) => number;

export function constantLR(lr: number): LRSchedule {
  checkScalar('constantLR: lr', lr, lr >= 0, '>= 0');
  return () => lr;
}

/**
 * Cosine annealing from `base` to `min` over `totalSteps` optimiser steps (counted from 0), after an optional
 * linear warm-up: step s < warmup uses base * (s + 1) / warmup, so the first step already moves. Without
 * warm-up, step s <= totalSteps gives min + (base - min) * (1 + cos(pi * s / totalSteps)) / 2, as PyTorch's
 * CosineAnnealingLR; later steps stay at min.
 */
export function cosineLR(base: number, totalSteps: number, opts: { warmup?: number; min?: number } = {}): LRSchedule {
  const warmup = opts.warmup ?? 0;
  const min = opts.min ?? 0;
  checkScalar('cosineLR: base', base, base >= 0, '>= 0');
  checkScalar('cosineLR: totalSteps', totalSteps, Number.isInteger(totalSteps) && totalSteps > 0, 'a positive integer');
  checkScalar('cosineLR: warmup', warmup, Number.isInteger(warmup) && warmup >= 0 && warmup < totalSteps, 'an integer in [0, totalSteps)');
  checkScalar('cosineLR: min', min, min >= 0 && min <= base, 'in [0, base]');
  const decaySteps = totalSteps - warmup;
  return (step: number) => {
    if (!Number.isFinite(step) || step < 0) throw new Error(`cosineLR: step must be >= 0, got ${step}`);
    if (step < warmup) return (base * (step + 1)) / warmup;
    const progress = Math.min(1, (step - warmup) / decaySteps);
    return min + ((base - min) * (1 + Math.cos(Math.PI * progress))) / 2;
  };
}

/** One step over the group's gradients, clipped to a global norm first when clip > 0. */
export function clippedStep(opt: AdamW, clip: number): void {
  if (clip > 0) opt.step(undefined, clipScale(opt.group, clip).scale);
  else opt.step();
}
