// SRPO's surrogate policy loss as one differentiable op (kernels/srpo.ts):
//   L = mean_b [ w(t_b) (e_b . a_b) - beta (gq_b . a_b) ]
// Its gradient with respect to the actor's actions a is (w e - beta gq) / B per row, which backpropagated through
// the actor is the score-regularised policy gradient w eps^T da/dtheta - beta grad_a Q^T da/dtheta. eps, z, g and
// the row scales are constants (the behaviour model and the critic are frozen here).
import { expectMatrix, expectRows, launch, recordIfNeeded } from '../../engine/fused.ts';
import { mul } from '../../engine/ops/elementwise.ts';
import { rowThreads, sum } from '../../engine/ops/reduce.ts';
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

/**
 * The fused surrogate loss. a: the actor's actions [B, D]; eps: the behaviour model's noise prediction at
 * alpha a + sigma z [B, D]; g: d/da of the critic [B, D]; alpha, sigma: [B] the rows' diffusion scales.
 */
export function srpoSurrogateLoss(a: Tensor, eps: Tensor, g: Tensor, alpha: Tensor, sigma: Tensor, opts: SurrogateLossOptions): SurrogateLoss {
  const op = 'srpoSurrogateLoss';
  expectMatrix(op, 'actions', a);
  const rows = a.shape[0]!;
  const dim = a.shape[1]!;
  expectMatrix(op, 'eps', eps, rows, dim);
  expectMatrix(op, 'g', g, rows, dim);
  expectRows(op, 'alpha', alpha, rows);
  expectRows(op, 'sigma', sigma, rows);
  const noise = opts.noise ?? null;
  if (noise) expectMatrix(op, 'noise', noise, rows, dim);
  const weighting = opts.weighting ?? 'VDS';
  if (!SRPO_WEIGHTINGS.includes(weighting)) throw new Error(`srpoSurrogateLoss: weighting must be one of ${SRPO_WEIGHTINGS.join(', ')}, got ${String(weighting)}`);
  if (!Number.isFinite(opts.beta)) throw new Error(`srpoSurrogateLoss: beta must be finite, got ${opts.beta}`);
  const variant = { weighting, baseline: noise !== null, normalizeQGrad: opts.normalizeQGrad ?? false };
  const chunks = Math.ceil(rows / SRPO_LOSS_CHUNK);
  const threads = rowThreads(Math.min(rows, SRPO_LOSS_CHUNK));
  const partial = empty([chunks]);
  const partialTerms = empty([chunks * 2]);
  const dir = empty([rows, dim]);
  const buffers: Record<string, Tensor> = { a, eps, g, alpha, sigma, out: partial, terms: partialTerms, dir };
  if (noise) buffers.noise = noise;
  launch(srpoLossKey(variant, threads), () => srpoLossSource(variant, threads), buffers, { rows: chunks, batch: rows, dim, chunk: SRPO_LOSS_CHUNK, beta: opts.beta, scale: 1 / rows }, rowGrid(chunks, threads));
  let loss = partial;
  let terms = partialTerms;
  if (chunks > 1) {
    loss = sum(partial);
    partial.dispose();
    terms = empty([2]);
    launch('srpo_terms_sum', srpoTermsSumSource, { partial: partialTerms, total: terms }, { chunks }, [1]);
    partialTerms.dispose();
  }
  if (!recordIfNeeded(op, [a], [loss], ([gLoss]) => [mul(dir, gLoss!)])) dir.dispose();
  return { loss, terms };
}
