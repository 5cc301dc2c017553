// Differentiable GPU ops of diffusion training: forward noising (time and noise drawn on the GPU), the
// eps-prediction MSE, EDM's preconditioned loss and the x0 estimate of EDP's action approximation. Each is
// one dispatch forward (a loss over more than LOSS_CHUNK elements adds one sum pass over its partial sums)
// and one backward.
import { chunkedLoss, expectAlike, expectRows, launch, recordIfNeeded } from '../../engine/fused.ts';
import type { Generator } from '../../engine/random.ts';
import { empty, keep, tensor, type Tensor } from '../../engine/tensor.ts';
import { flatGrid } from '../../kernels/common.ts';
import {
  edmBackwardSource,
  lossReduceSource,
  mseBackwardSource,
  noiseForwardSource,
  predictX0Source,
  rowScaleSumSource,
  type NoiseFamily,
} from '../../kernels/diffusion.ts';
import type { DiscreteSchedule, EDMSchedule, VPSDE } from './schedules.ts';

/** Elements one invocation (or workgroup) of a loss pass sums; larger losses leave partial sums. */
export const LOSS_CHUNK = 8192;

/** A noised batch: x_t = alpha x0 + sigma z per row, and what the network and the losses read. */
export interface NoisedBatch {
  /** [B, D] */
  xt: Tensor;
  /** [B, D] the drawn z ~ N(0, I) */
  noise: Tensor;
  /** [B] the network's time input: the step k (discrete), t (VP-SDE) or cNoise = ln(sigma)/4 (EDM) */
  time: Tensor;
  /** [B] signal scale per row (1 for EDM) */
  alpha: Tensor;
  /** [B] noise scale per row */
  sigma: Tensor;
  /** [B, D] what the network receives as x: xt itself, or cIn xt for EDM */
  netInput: Tensor;
}

function checkBatch(op: string, x: Tensor): { rows: number; dim: number } {
  if (x.rank !== 2 || x.dtype !== 'f32' || x.shape[1]! < 1) {
    throw new Error(`${op}: x0 must be an f32 [B, D] tensor with D >= 1, got ${x.dtype} [${x.shape}]`);
  }
  return { rows: x.shape[0]!, dim: x.shape[1]! };
}

// ---- GPU copies of host tables, made once ----

const scheduleTables = new WeakMap<DiscreteSchedule, Tensor>();

/** [sqrt(alphaBar), sqrt(1 - alphaBar)] of a schedule on the GPU, uploaded on first use. */
function scheduleTable(schedule: DiscreteSchedule): Tensor {
  let t = scheduleTables.get(schedule);
  if (!t || t.isDisposed) {
    const T = schedule.steps;
    const data = new Float32Array(2 * T);
    data.set(schedule.sqrtAlphaBars, 0);
    data.set(schedule.sqrtOneMinusAlphaBars, T);
    t = keep(tensor(data, [2 * T]));
    scheduleTables.set(schedule, t);
  }
  return t;
}

const weightTables = new WeakMap<Float64Array, { values: Float64Array; gpu: Tensor }>();

/** Per-step weights on the GPU, re-uploaded only when the host array's contents change. */
function weightTable(weights: Float64Array): Tensor {
  const cached = weightTables.get(weights);
  if (cached && !cached.gpu.isDisposed && cached.values.length === weights.length && cached.values.every((v, i) => v === weights[i])) {
    return cached.gpu;
  }
  cached?.gpu.dispose();
  const gpu = keep(tensor(Float32Array.from(weights), [weights.length]));
  weightTables.set(weights, { values: Float64Array.from(weights), gpu });
  return gpu;
}

// ---- forward noising ----

function noise(op: string, family: NoiseFamily, x0: Tensor, gen: Generator, familyUniforms: Record<string, number>, table: Tensor | null): NoisedBatch {
  const { rows, dim } = checkBatch(op, x0);
  const quads = Math.ceil(dim / 4);
  const edm = family === 'edm';
  const xt = empty([rows, dim]);
  const z = empty([rows, dim]);
  const time = empty([rows]);
  const alpha = empty([rows]);
  const sigma = empty([rows]);
  const netInput = edm ? empty([rows, dim]) : xt;
  const cIn = edm ? empty([rows]) : null;
  const position = gen.reserve(rows * (quads + 1) * 4);
  const buffers: Record<string, Tensor> = { x0, xt, noise: z, time, alpha, sigma };
  if (table) buffers.table = table;
  if (cIn) {
    buffers.netInput = netInput;
    buffers.cIn = cIn;
  }
  launch(`diffusion_noise_${family}`, () => noiseForwardSource(family), buffers, [{ rows, dim, quads, ...familyUniforms }, position], flatGrid(rows * quads));
  const outputs = edm ? [xt, netInput] : [xt];
  const recorded = recordIfNeeded(op, [x0], outputs, ([gxt, gin]) => {
    const n = rows * dim;
    const terms: [Tensor, Tensor][] = [];
    if (gxt) terms.push([gxt, alpha]);
    if (gin) terms.push([gin, cIn!]);
    if (terms.length === 0) return [null];
    const out = empty([rows, dim]);
    const [[g1, a], second] = [terms[0]!, terms[1]];
    const bufs: Record<string, Tensor> = { g1, a, out };
    if (second) {
      bufs.g2 = second[0];
      bufs.b = second[1];
    }
    launch(`diffusion_rowScaleSum_${terms.length}`, () => rowScaleSumSource(terms.length as 1 | 2), bufs, { n, dim }, flatGrid(n));
    return [out];
  });
  if (!recorded) cIn?.dispose();
  return { xt, noise: z, time, alpha, sigma, netInput };
}

/**
 * Discrete DDPM noising: k ~ U{0..T-1} per row (time = k as f32), x_t = sqrt(alphaBar_k) x0 + sqrt(1 - alphaBar_k) z.
 * Differentiable in x0.
 */
export function noiseDiscrete(x0: Tensor, schedule: DiscreteSchedule, gen: Generator): NoisedBatch {
  return noise('noiseDiscrete', 'discrete', x0, gen, { steps: schedule.steps }, scheduleTable(schedule));
}

/**
 * VP-SDE noising: t ~ U(tMin, tMax) per row (time = t), x_t = alpha(t) x0 + sigma(t) z. Differentiable in x0.
 * tMax < 1 serves SRPO's policy extraction, which draws t ~ U(0.02, 0.98).
 */
export function noiseVPSDE(x0: Tensor, schedule: VPSDE, gen: Generator, tMin = schedule.tMin, tMax = 1): NoisedBatch {
  if (!(tMin >= 0 && tMin < tMax && tMax <= 1)) throw new Error(`noiseVPSDE: need 0 <= tMin < tMax <= 1, got tMin ${tMin}, tMax ${tMax}`);
  return noise('noiseVPSDE', 'vpsde', x0, gen, { tMin, tMax, beta0: schedule.beta0, beta1: schedule.beta1 }, null);
}

/**
 * EDM noising: sigma from the truncated log-logistic per row, x_t = x0 + sigma z, time = ln(sigma)/4,
 * netInput = cIn(sigma) x_t. Differentiable in x0 through both x_t and netInput.
 */
export function noiseEDM(x0: Tensor, schedule: EDMSchedule, gen: Generator): NoisedBatch {
  const cdfLo = schedule.logLogisticCdf(schedule.sigmaMin);
  const cdfHi = schedule.logLogisticCdf(schedule.sigmaMax);
  // 1 - cdf(sigmaMax) as sigmoid(-z), not by subtraction
  const cdfHiComp = 1 / (1 + Math.exp((Math.log(schedule.sigmaMax) - schedule.trainLoc) / schedule.trainScale));
  return noise(
    'noiseEDM',
    'edm',
    x0,
    gen,
    { loc: schedule.trainLoc, scale: schedule.trainScale, cdfLo, cdfHiComp, cdfSpan: cdfHi - cdfLo, sigmaData: schedule.sigmaData },
    null,
  );
}

// ---- losses ----

export interface EpsMseOptions {
  /** 'mean' (default): over batch and dims (DDPM); 'sumDims': sum over dims, mean over the batch (SRPO). */
  reduction?: 'mean' | 'sumDims';
  /** Per-step weights w_k, with `steps` the [B] step indices (a discrete NoisedBatch's time). */
  stepWeights?: Float64Array;
  steps?: Tensor;
}

/**
 * Scalar [1] eps-prediction loss sum_{b,d} w_{k_b} (pred - target)^2 / (B D) (or / B with 'sumDims').
 * Differentiable in pred; the target (drawn noise) is a constant.
 */
export function epsMse(pred: Tensor, target: Tensor, opts: EpsMseOptions = {}): Tensor {
  expectAlike('epsMse', ['pred', 'target'], [pred, target]);
  const rows = pred.shape[0]!;
  const dim = pred.shape[1]!;
  const n = rows * dim;
  const reduction = opts.reduction ?? 'mean';
  if (reduction !== 'mean' && reduction !== 'sumDims') throw new Error(`epsMse: reduction must be 'mean' or 'sumDims', got ${String(reduction)}`);
  const scale = reduction === 'mean' ? 1 / n : 1 / rows;
  const buffers: Record<string, Tensor> = { pred, truth: target };
  const weighted = opts.stepWeights !== undefined;
  if (weighted) {
    if (!opts.steps) throw new Error('epsMse: stepWeights needs steps (the [B] step indices the noise was drawn at)');
    expectRows('epsMse', 'steps', opts.steps, rows);
    buffers.rowStep = opts.steps;
    buffers.weights = weightTable(opts.stepWeights!);
  }
  const loss = weighted ? 'mseWeighted' : 'mse';
  const out = chunkedLoss(`diffusion_loss_${loss}`, (t) => lossReduceSource(loss, t), buffers, n, LOSS_CHUNK, { dim, scale });
  recordIfNeeded('epsMse', [pred], [out], ([g]) => {
    const dpred = empty(pred.shape);
    launch(`diffusion_mseBackward_${weighted}`, () => mseBackwardSource(weighted), { ...buffers, g: g!, dpred }, { n, dim, scale }, flatGrid(n));
    return [dpred];
  });
  return out;
}

function clipUniforms(op: string, maxAction: number | null): { maxAction: number; clip: number } {
  if (maxAction === null) return { maxAction: 0, clip: 0 };
  if (!(maxAction > 0 && Number.isFinite(maxAction))) throw new Error(`${op}: maxAction must be a positive number or null, got ${maxAction}`);
  return { maxAction, clip: 1 };
}

/**
 * Scalar [1] EDM loss mean(((D - x0) / cOut)^2) with D = clip(cSkip xt + cOut F) and (cSkip, cOut) from each
 * row's sigma; F is the network output at (cIn xt, ln(sigma)/4). Differentiable in F, xt and x0.
 */
export function edmLoss(F: Tensor, xt: Tensor, x0: Tensor, sigma: Tensor, sigmaData: number, maxAction: number | null): Tensor {
  expectAlike('edmLoss', ['F', 'xt', 'x0'], [F, xt, x0]);
  const rows = F.shape[0]!;
  const dim = F.shape[1]!;
  expectRows('edmLoss', 'sigma', sigma, rows);
  if (!(sigmaData > 0)) throw new Error(`edmLoss: sigmaData must be positive, got ${sigmaData}`);
  const n = rows * dim;
  const scale = 1 / n;
  const buffers = { F, xt, x0, sigma };
  const extra = { sigmaData, ...clipUniforms('edmLoss', maxAction) };
  const out = chunkedLoss('diffusion_loss_edm', (t) => lossReduceSource('edm', t), buffers, n, LOSS_CHUNK, { dim, scale, ...extra });
  recordIfNeeded('edmLoss', [F, xt, x0], [out], ([g]) => {
    const dF = empty(F.shape);
    const dxt = empty(F.shape);
    const dx0 = empty(F.shape);
    launch('diffusion_edmBackward', edmBackwardSource, { ...buffers, g: g!, dF, dxt, dx0 }, { rows: 1, n, dim, chunk: n, scale, ...extra }, flatGrid(n));
    return [dF, dxt, dx0];
  });
  return out;
}

/**
 * x0 estimate (xt - sigma eps) / alpha per row, clipped to +-maxAction (no clip for null): EDP's action
 * approximation. Differentiable in eps and xt; the clip stops the gradient outside the box.
 */
export function predictX0(xt: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor, maxAction: number | null): Tensor {
  expectAlike('predictX0', ['xt', 'eps'], [xt, eps]);
  const rows = xt.shape[0]!;
  const dim = xt.shape[1]!;
  expectRows('predictX0', 'alpha', alpha, rows);
  expectRows('predictX0', 'sigma', sigma, rows);
  const n = rows * dim;
  const uniforms = { n, dim, ...clipUniforms('predictX0', maxAction) };
  const out = empty(xt.shape);
  launch('diffusion_predictX0', () => predictX0Source(false), { xt, eps, alpha, sigma, out }, uniforms, flatGrid(n));
  recordIfNeeded('predictX0', [xt, eps], [out], ([g]) => {
    const deps = empty(xt.shape);
    const dxt = empty(xt.shape);
    launch('diffusion_predictX0Backward', () => predictX0Source(true), { xt, eps, alpha, sigma, g: g!, deps, dxt }, uniforms, flatGrid(n));
    return [dxt, deps];
  });
  return out;
}
