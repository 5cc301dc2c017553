// Fused kernels of diffusion training: forward noising with the time and the noise drawn inline from the
// Philox stream, the score-matching losses reduced to partial sums in the same dispatch, and their backwards.
//
// Noising stream layout (one draw of rows * (quads + 1) Philox blocks, quads = ceil(dim / 4)):
//   row r owns blocks r * (quads + 1) .. r * (quads + 1) + quads
//   block r * (quads + 1)          word x: the row's time (discrete step, uniform t, or log-logistic sigma)
//   block r * (quads + 1) + 1 + q  the noise of dims 4q .. 4q + 3, as Box-Muller pairs (x, y) and (z, w)
// One invocation per (row, quad) recomputes its row's time block, so any dim spreads over the device.
import { flatEntry } from './common.ts';
import { chunkedLossPass } from './reduce.ts';
import { PHILOX_WGSL } from './rng.ts';

export type NoiseFamily = 'discrete' | 'vpsde' | 'edm';

// exp(x) - 1 without the cancellation of exp(x) - 1.0 near 0 (WGSL has no expm1); a Taylor series to x^6,
// whose truncation error at |x| < 0.05 is below f32 rounding.
const EXPM1_WGSL = /* wgsl */ `
fn wd_expm1(x: f32) -> f32 {
  if (abs(x) < 0.05) {
    return x * (1.0 + x * (0.5 + x * (0.16666667 + x * (0.041666668 + x * (0.008333334 + x * 0.0013888889)))));
  }
  return exp(x) - 1.0;
}`;

function familyParams(family: NoiseFamily): string {
  switch (family) {
    case 'discrete':
      return 'steps: u32';
    case 'vpsde':
      return 'tMin: f32, tMax: f32, beta0: f32, beta1: f32';
    case 'edm':
      return 'loc: f32, scale: f32, cdfLo: f32, cdfHiComp: f32, cdfSpan: f32, sigmaData: f32';
  }
}

function familyBindings(family: NoiseFamily): string {
  switch (family) {
    case 'discrete':
      // [sqrt(alphaBar_0..T-1), sqrt(1 - alphaBar_0..T-1)]
      return '@group(0) @binding(2) var<storage, read> table: array<f32>;';
    case 'vpsde':
      return '';
    case 'edm':
      return '@group(0) @binding(8) var<storage, read_write> netInput: array<f32>;\n@group(0) @binding(9) var<storage, read_write> cIn: array<f32>;';
  }
}

/** WGSL that sets `a`, `s` (signal and noise scales) and `tnet` (network time) from the random word `w`. */
function familyTime(family: NoiseFamily): string {
  switch (family) {
    case 'discrete':
      return `
  let k = philox_below(w, p.steps);
  let a = table[k];
  let s = table[p.steps + k];
  let tnet = f32(k);`;
    case 'vpsde':
      return `
  let t = p.tMin + (p.tMax - p.tMin) * philox_unit(w);
  let logA = -0.25 * t * t * (p.beta1 - p.beta0) - 0.5 * t * p.beta0;
  let a = exp(logA);
  let s = sqrt(-wd_expm1(2.0 * logA));
  let tnet = t;`;
    case 'edm':
      // u = (m + 1/2) / 2^24 and 1 - u are each an exact 24-bit integer over 2^24 plus half a step (m + 0.5
      // itself would need 25 bits), so v and 1 - v are formed without cancellation even where the truncated
      // CDF is within f32 rounding of 1 (sigma near sigmaMax).
      return `
  let m = w >> 8u;
  let halfStep = p.cdfSpan * 2.98023223876953125e-8;
  let v = p.cdfLo + p.cdfSpan * (f32(m) * 5.9604644775390625e-8) + halfStep;
  let vc = p.cdfHiComp + p.cdfSpan * (f32(16777215u - m) * 5.9604644775390625e-8) + halfStep;
  let lnSigma = p.loc + p.scale * (log(v) - log(vc));
  let a = 1.0;
  let s = exp(lnSigma);
  let tnet = 0.25 * lnSigma;
  let rowCIn = inverseSqrt(s * s + p.sigmaData * p.sigmaData);`;
  }
}

/**
 * x_t = a x0 + s z for every element, with the row's (a, s) from its drawn time; also writes z, the network
 * time and (a, s) per row, and for EDM the network input cIn x_t and cIn per row.
 */
export function noiseForwardSource(family: NoiseFamily): string {
  const edm = family === 'edm';
  return /* wgsl */ `
struct Params { rows: u32, dim: u32, quads: u32, key_lo: u32, key_hi: u32, base_lo: u32, base_hi: u32, ${familyParams(family)} }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
${familyBindings(family)}
@group(0) @binding(3) var<storage, read_write> xt: array<f32>;
@group(0) @binding(4) var<storage, read_write> noise: array<f32>;
@group(0) @binding(5) var<storage, read_write> time: array<f32>;
@group(0) @binding(6) var<storage, read_write> alpha: array<f32>;
@group(0) @binding(7) var<storage, read_write> sigma: array<f32>;
${PHILOX_WGSL}
${EXPM1_WGSL}
${flatEntry()}
  if (i >= p.rows * p.quads) { return; }
  let row = i / p.quads;
  let q = i - row * p.quads;
  let key = vec2<u32>(p.key_lo, p.key_hi);
  let first = row * (p.quads + 1u);
  let w = philox_block(key, p.base_lo, p.base_hi, first).x;
  ${familyTime(family)}
  if (q == 0u) {
    time[row] = tnet;
    alpha[row] = a;
    sigma[row] = s;${edm ? '\n    cIn[row] = rowCIn;' : ''}
  }
  let r = philox_block(key, p.base_lo, p.base_hi, first + 1u + q);
  let z = vec4<f32>(philox_box_muller(r.x, r.y), philox_box_muller(r.z, r.w));
  let d0 = q * 4u;
  let base = row * p.dim + d0;
  for (var j = 0u; j < 4u; j++) {
    if (d0 + j < p.dim) {
      let v = a * x0[base + j] + s * z[j];
      xt[base + j] = v;
      noise[base + j] = z[j];${edm ? '\n      netInput[base + j] = rowCIn * v;' : ''}
    }
  }
}`;
}

/**
 * out = a[row] * g1 (+ b[row] * g2): the gradient of the noising with respect to x0 (a = alpha, and for EDM's
 * network input b = cIn).
 */
export function rowScaleSumSource(terms: 1 | 2): string {
  const second = terms === 2;
  return /* wgsl */ `
struct Params { n: u32, dim: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g1: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
${second ? '@group(0) @binding(3) var<storage, read> g2: array<f32>;\n@group(0) @binding(4) var<storage, read> b: array<f32>;' : ''}
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
${flatEntry()}
  if (i >= p.n) { return; }
  let row = i / p.dim;
  out[i] = a[row] * g1[i]${second ? ' + b[row] * g2[i]' : ''};
}`;
}

/**
 * The losses reduced here, each a sum over the [rows, dim] elements times `scale`:
 * - mse: (pred - truth)^2
 * - mseWeighted: weights[rowStep[row]] (pred - truth)^2, with rowStep the network time of a discrete draw
 * - edm: ((D - x0) / cOut)^2 with D = clip(cSkip xt + cOut F) and (cSkip, cOut) from the row's sigma
 */
export type DiffusionLoss = 'mse' | 'mseWeighted' | 'edm';

function lossBindings(loss: DiffusionLoss): string {
  switch (loss) {
    case 'mse':
      return `@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> truth: array<f32>;`;
    case 'mseWeighted':
      return `@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> truth: array<f32>;
@group(0) @binding(3) var<storage, read> rowStep: array<f32>;
@group(0) @binding(4) var<storage, read> weights: array<f32>;`;
    case 'edm':
      return `@group(0) @binding(1) var<storage, read> F: array<f32>;
@group(0) @binding(2) var<storage, read> xt: array<f32>;
@group(0) @binding(3) var<storage, read> x0: array<f32>;
@group(0) @binding(4) var<storage, read> sigma: array<f32>;`;
  }
}

// EDM's preconditioned residual of element e in row `row`, with `inside` whether D escaped the clip.
const EDM_RESIDUAL_WGSL = /* wgsl */ `
struct EdmTerm { err: f32, cSkip: f32, cOut: f32, inside: bool }
fn edm_term(e: u32, row: u32) -> EdmTerm {
  let s = sigma[row];
  let sd2 = p.sigmaData * p.sigmaData;
  let r2 = s * s + sd2;
  let cSkip = sd2 / r2;
  let cOut = s * p.sigmaData * inverseSqrt(r2);
  let raw = cSkip * xt[e] + cOut * F[e];
  let inside = p.clip == 0u || abs(raw) <= p.maxAction;
  let d = select(clamp(raw, -p.maxAction, p.maxAction), raw, p.clip == 0u);
  return EdmTerm((d - x0[e]) / cOut, cSkip, cOut, inside);
}`;

function lossTerm(loss: DiffusionLoss): string {
  switch (loss) {
    case 'mse':
      return `let d = pred[e] - truth[e];
    acc += d * d;`;
    case 'mseWeighted':
      return `let d = pred[e] - truth[e];
    acc += weights[u32(rowStep[e / p.dim])] * d * d;`;
    case 'edm':
      return `let term = edm_term(e, e / p.dim);
    acc += term.err * term.err;`;
  }
}

function lossParams(loss: DiffusionLoss): string {
  return loss === 'edm' ? ', sigmaData: f32, maxAction: f32, clip: u32' : '';
}

/**
 * One pass of a loss reduction: output c is scale times the loss summed over elements c * chunk .. of the
 * flattened [rows, dim] inputs. With one chunk it is the whole loss; several leave partial sums for a sum pass.
 */
export function lossReduceSource(loss: DiffusionLoss, threads: number): string {
  return /* wgsl */ `
struct Params { rows: u32, n: u32, dim: u32, chunk: u32, scale: f32${lossParams(loss)} }
@group(0) @binding(0) var<uniform> p: Params;
${lossBindings(loss)}
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
${loss === 'edm' ? EDM_RESIDUAL_WGSL : ''}
${chunkedLossPass(lossTerm(loss), threads)}`;
}

/** d pred = 2 scale w (pred - truth) g, with g the loss's scalar output gradient. */
export function mseBackwardSource(weighted: boolean): string {
  return /* wgsl */ `
struct Params { n: u32, dim: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> truth: array<f32>;
${weighted ? '@group(0) @binding(3) var<storage, read> rowStep: array<f32>;\n@group(0) @binding(4) var<storage, read> weights: array<f32>;' : ''}
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read_write> dpred: array<f32>;
${flatEntry()}
  if (i >= p.n) { return; }
  let w = ${weighted ? 'weights[u32(rowStep[i / p.dim])]' : '1.0'};
  dpred[i] = 2.0 * p.scale * w * (pred[i] - truth[i]) * g[0];
}`;
}

/**
 * Gradients of the EDM loss: with err = (D - x0)/cOut and D = cSkip xt + cOut F (zero slope where clipped),
 * dF = 2 scale err inside g, dxt = 2 scale err cSkip / cOut inside g, dx0 = -2 scale err / cOut g.
 */
export function edmBackwardSource(): string {
  return /* wgsl */ `
struct Params { rows: u32, n: u32, dim: u32, chunk: u32, scale: f32, sigmaData: f32, maxAction: f32, clip: u32 }
@group(0) @binding(0) var<uniform> p: Params;
${lossBindings('edm')}
@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read_write> dF: array<f32>;
@group(0) @binding(7) var<storage, read_write> dxt: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx0: array<f32>;
${EDM_RESIDUAL_WGSL}
${flatEntry()}
  if (i >= p.n) { return; }
  let term = edm_term(i, i / p.dim);
  let k = 2.0 * p.scale * term.err * g[0];
  let through = select(0.0, k, term.inside);
  dF[i] = through;
  dxt[i] = through * term.cSkip / term.cOut;
  dx0[i] = -k / term.cOut;
}`;
}

/**
 * x0 estimate from an eps prediction, (xt - s eps) / a per row, clipped to +-maxAction when clip is set.
 * The backward writes d eps = -s/a g and d xt = g/a inside the box, 0 outside.
 */
export function predictX0Source(backward: boolean): string {
  const body = backward
    ? `let inside = p.clip == 0u || abs(v) <= p.maxAction;
  let gi = select(0.0, g[i], inside) / a;
  deps[i] = -s * gi;
  dxt[i] = gi;`
    : `out[i] = select(clamp(v, -p.maxAction, p.maxAction), v, p.clip == 0u);`;
  const outputs = backward
    ? `@group(0) @binding(5) var<storage, read> g: array<f32>;
@group(0) @binding(6) var<storage, read_write> deps: array<f32>;
@group(0) @binding(7) var<storage, read_write> dxt: array<f32>;`
    : '@group(0) @binding(6) var<storage, read_write> out: array<f32>;';
  return /* wgsl */ `
struct Params { n: u32, dim: u32, maxAction: f32, clip: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xt: array<f32>;
@group(0) @binding(2) var<storage, read> eps: array<f32>;
@group(0) @binding(3) var<storage, read> alpha: array<f32>;
@group(0) @binding(4) var<storage, read> sigma: array<f32>;
${outputs}
${flatEntry()}
  if (i >= p.n) { return; }
  let row = i / p.dim;
  let a = alpha[row];
  let s = sigma[row];
  let v = (xt[i] - s * eps[i]) / a;
  ${body}
}`;
}
