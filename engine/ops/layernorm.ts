// Layer normalisation over the last axis with fused forward and backward kernels.
import { kernel } from '../kernel.ts';
import { runtime } from '../runtime.ts';
import { empty, type Tensor } from '../tensor.ts';
import { needsGrad, record } from '../autograd.ts';
import { flatGrid } from '../../kernels/common.ts';
import { rowGrid } from '../../kernels/reduce.ts';
import {
  columnSumPairSource,
  layerNormBackwardSource,
  layerNormForwardSource,
  layerNormParamGradSource,
} from '../../kernels/layernorm.ts';
import { rowThreads } from './reduce.ts';

function checkParam(name: string, p: Tensor | null, cols: number, x: Tensor): void {
  if (!p) return;
  if (p.dtype !== 'f32' || p.size !== cols || p.rank !== 1) {
    throw new Error(`layerNorm: ${name} must be an f32 tensor of shape [${cols}] for x [${x.shape}], got ${p.dtype} [${p.shape}]`);
  }
}

/** Rows per chunk for the parameter gradients: one pass for few rows, else about sqrt(rows) in each pass. */
function paramChunking(rows: number): { rowsPerChunk: number; chunks: number } {
  if (rows <= 256) return { rowsPerChunk: Math.max(rows, 1), chunks: 1 };
  const rowsPerChunk = Math.max(64, Math.ceil(Math.sqrt(rows)));
  return { rowsPerChunk, chunks: Math.ceil(rows / rowsPerChunk) };
}

/**
 * (x - mean) / sqrt(var + eps) * gamma + beta over the last axis (biased variance, as in PyTorch). gamma and
 * beta are [D] tensors or null (then 1 and 0). The row mean and 1/std are kept for the backward.
 */
export function layerNorm(x: Tensor, gamma: Tensor | null, beta: Tensor | null, eps = 1e-5): Tensor {
  if (x.dtype !== 'f32' || x.rank < 1) throw new Error(`layerNorm: x must be an f32 tensor with at least one axis, got ${x.dtype} [${x.shape}]`);
  const cols = x.shape[x.rank - 1]!;
  if (cols === 0) throw new Error(`layerNorm: the last axis of [${x.shape}] is empty`);
  checkParam('gamma', gamma, cols, x);
  checkParam('beta', beta, cols, x);
  const rows = x.size / cols;
  const threads = rowThreads(cols);
  const affine = { gamma: gamma !== null, beta: beta !== null };
  const y = empty(x.shape);
  const mean = empty([rows]);
  const rstd = empty([rows]);
  const buffers: Record<string, Tensor> = { x, y, mean, rstd };
  if (gamma) buffers.gamma = gamma;
  if (beta) buffers.beta = beta;
  const fwd = kernel(`layerNorm_t${threads}_g${+affine.gamma}_b${+affine.beta}`, () => layerNormForwardSource(threads, affine));
  runtime().dispatch(fwd, buffers, { rows, cols, eps }, rowGrid(rows, threads));

  const inputs = [x, gamma, beta].filter((t): t is Tensor => t !== null);
  if (!needsGrad(...inputs)) {
    mean.dispose();
    rstd.dispose();
    return y;
  }
  record('layerNorm', inputs, [y], ([g]) => {
    const grads = new Map<Tensor, Tensor>();
    if (x.requiresGrad) {
      const dx = empty(x.shape);
      const bwd: Record<string, Tensor> = { g: g!, x, mean, rstd, dx };
      if (gamma) bwd.gamma = gamma;
      const k = kernel(`layerNormBackward_t${threads}_g${+affine.gamma}`, () => layerNormBackwardSource(threads, affine.gamma));
      runtime().dispatch(k, bwd, { rows, cols }, rowGrid(rows, threads));
      grads.set(x, dx);
    }
    if (gamma?.requiresGrad || beta?.requiresGrad) {
      const { rowsPerChunk, chunks } = paramChunking(rows);
      const dgamma = empty(chunks === 1 ? [cols] : [chunks, cols]);
      const dbeta = empty(chunks === 1 ? [cols] : [chunks, cols]);
      runtime().dispatch(
        kernel('layerNormParamGrad', layerNormParamGradSource),
        { g: g!, x, mean, rstd, dgamma, dbeta },
        { rows, cols, rowsPerChunk, chunks },
        flatGrid(chunks * cols),
      );
      let sumGamma = dgamma;
      let sumBeta = dbeta;
      if (chunks > 1) {
        sumGamma = empty([cols]);
        sumBeta = empty([cols]);
        runtime().dispatch(
          kernel('columnSumPair', columnSumPairSource),
          { partA: dgamma, partB: dbeta, sumA: sumGamma, sumB: sumBeta },
          { chunks, cols },
          flatGrid(cols),
        );
        dgamma.dispose();
        dbeta.dispose();
      }
      if (gamma) grads.set(gamma, sumGamma);
      if (beta) grads.set(beta, sumBeta);
    }
    return inputs.map((t) => grads.get(t) ?? null);
  });
  return y;
}
