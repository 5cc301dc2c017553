// SRPO's surrogate policy loss as one differentiable op (kernels/srpo.ts):
//   L = mean_b [ w(t_b) (e_b . a_b) - beta (gq_b . a_b) ]
// Its gradient with respect to the actor's actions a is (w e - beta gq) / B per row, which backpropagated through
// the actor is the score-regularised policy gradient w eps^T da/dtheta - beta grad_a Q^T da/dtheta. eps, z, g and
// the row scales are constants (the behaviour model and the critic are frozen here).
import { needsGrad, record } from '../../engine/autograd.ts';
import { kernel } from '../../engine/kernel.ts';
import { mul } from '../../engine/ops/elementwise.ts';
import { rowThreads, sum } from '../../engine/ops/reduce.ts';
import { runtime } from '../../engine/runtime.ts';
import { empty, type Tensor } from '../../engine/tensor.ts';
import { rowGrid } from '../../kernels/reduce.ts';
import { srpoLossKey, srpoLossSource, srpoTermsSumSource, type SrpoWeighting } from '../../kernels/srpo.ts';

export type { SrpoWeighting };
export const SRPO_WEIGHTINGS: readonly SrpoWeighting[] = ['VDS', 'stable', 'score'];

/** Rows one workgroup (or invocation) of the loss pass sums; larger batches leave partial sums. */
export const SRPO_LOSS_CHUNK = 4096;

export interface SurrogateLossOptions {
  /** Multiplies the critic's action gradient (SRPO's per-task temperature). */
  beta: number;
  /** w(t): 'VDS' sigma^2 (default), 'stable' 1, 'score' alpha/sigma. */
  weighting?: SrpoWeighting;
  /** The drawn noise z [B, D]; when given, eps - z replaces eps (the baseline). */
  noise?: Tensor | null;
  /** Divide each row of g by its root-mean-square over the action dims (antmaze). */
  normalizeQGrad?: boolean;
}

export interface SurrogateLoss {
  /** [1] the loss; differentiable in the actions. */
  loss: Tensor;
  /** [2] diagnostics, not differentiable: mean_b w (e . a) and mean_b gq . a. */
  terms: Tensor;
}

function check2d(name: string, t: Tensor, rows: number, dim: number): void {
  if (t.dtype !== 'f32' || t.rank !== 2 || t.shape[0] !== rows || t.shape[1] !== dim) {
    throw new Error(`srpoSurrogateLoss: ${name} must be f32 [${rows}, ${dim}] like the actions, got ${t.dtype} [${t.shape}]`);
  }
}

function checkRows(name: string, t: Tensor, rows: number): void {
  if (t.dtype !== 'f32' || t.size !== rows || t.rank > 2 || (t.rank === 2 && t.shape[1] !== 1)) {
    throw new Error(`srpoSurrogateLoss: ${name} must be f32 [${rows}] (one value per row), got ${t.dtype} [${t.shape}]`);
  }
}

/**
 * The fused surrogate loss. a: the actor's actions [B, D]; eps: the behaviour model's noise prediction at
 * alpha a + sigma z [B, D]; g: d/da of the critic [B, D]; alpha, sigma: [B] the rows' diffusion scales.
 */
export function srpoSurrogateLoss(a: Tensor, eps: Tensor, g: Tensor, alpha: Tensor, sigma: Tensor, opts: SurrogateLossOptions): SurrogateLoss {
  if (a.dtype !== 'f32' || a.rank !== 2 || a.size === 0) throw new Error(`srpoSurrogateLoss: actions must be a non-empty f32 [B, D], got ${a.dtype} [${a.shape}]`);
  const rows = a.shape[0]!;
  const dim = a.shape[1]!;
  check2d('eps', eps, rows, dim);
  check2d('g', g, rows, dim);
  checkRows('alpha', alpha, rows);
  checkRows('sigma', sigma, rows);
  const noise = opts.noise ?? null;
  if (noise) check2d('noise', noise, rows, dim);
  const weighting = opts.weighting ?? 'VDS';
  if (!SRPO_WEIGHTINGS.includes(weighting)) throw new Error(`srpoSurrogateLoss: weighting must be one of ${SRPO_WEIGHTINGS.join(', ')}, got ${String(weighting)}`);
  if (!Number.isFinite(opts.beta)) throw new Error(`srpoSurrogateLoss: beta must be finite, got ${opts.beta}`);
  const variant = { weighting, baseline: noise !== null, normalizeQGrad: opts.normalizeQGrad ?? false };
  const chunks = Math.ceil(rows / SRPO_LOSS_CHUNK);
  const threads = rowThreads(Math.min(rows, SRPO_LOSS_CHUNK));
  const k = kernel(srpoLossKey(variant, threads), () => srpoLossSource(variant, threads));
  const partial = empty([chunks]);
  const partialTerms = empty([chunks * 2]);
  const dir = empty([rows, dim]);
  const buffers: Record<string, Tensor> = { a, eps, g, alpha, sigma, out: partial, terms: partialTerms, dir };
  if (noise) buffers.noise = noise;
  const rt = runtime();
  rt.dispatch(k, buffers, { rows: chunks, batch: rows, dim, chunk: SRPO_LOSS_CHUNK, beta: opts.beta, scale: 1 / rows }, rowGrid(chunks, threads));
  let loss = partial;
  let terms = partialTerms;
  if (chunks > 1) {
    loss = sum(partial);
    partial.dispose();
    terms = empty([2]);
    rt.dispatch(kernel('srpo_terms_sum', srpoTermsSumSource), { partial: partialTerms, total: terms }, { chunks }, [1]);
    partialTerms.dispose();
  }
  if (needsGrad(a)) {
    record('srpoSurrogateLoss', [a], [loss], ([gLoss]) => [mul(dir, gLoss!)]);
  } else {
    dir.dispose();
  }
  return { loss, terms };
}
