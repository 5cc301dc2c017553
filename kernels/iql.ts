// Fused kernels of IQL: the expectile (asymmetric L2) value loss, the twin-head TD regression to
// r + discount * notDone * V(s'), and the advantage-weighted regression losses of the actor (deterministic
// squared error or diagonal-Gaussian negative log-likelihood, weights min(exp(beta * adv), maxWeight)).
// Each loss is one reduction dispatch: output c holds `scale` times the sum over elements c * chunk .. of
// the flattened inputs (one chunk for every batch the callers use; more leave partial sums for a sum pass).
// Each backward is one elementwise dispatch, plus one per-column pass for the Gaussian's log-std.
import { flatEntry } from './common.ts';
import { chunkedLossPass } from './reduce.ts';

export type IQLLoss = 'expectile' | 'twinTd' | 'awrDeterministic' | 'awrGaussian';

// ln(2 pi) / 2, the per-dimension constant of a Normal log-density
const HALF_LOG_TWO_PI = '0.91893853320467274';

function lossParams(loss: IQLLoss): string {
  switch (loss) {
    case 'expectile':
      return 'tau: f32';
    case 'twinTd':
      return 'discount: f32';
    case 'awrDeterministic':
      return 'dim: u32, beta: f32, maxWeight: f32';
    case 'awrGaussian':
      return 'dim: u32, beta: f32, maxWeight: f32, logStdMin: f32, logStdMax: f32';
  }
}

function lossBindings(loss: IQLLoss): string {
  switch (loss) {
    case 'expectile':
      return `@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> truth: array<f32>;`;
    case 'twinTd':
      return `@group(0) @binding(1) var<storage, read> q1: array<f32>;
@group(0) @binding(2) var<storage, read> q2: array<f32>;
@group(0) @binding(3) var<storage, read> reward: array<f32>;
@group(0) @binding(4) var<storage, read> notDone: array<f32>;
@group(0) @binding(5) var<storage, read> nextV: array<f32>;`;
    case 'awrDeterministic':
      return `@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> actions: array<f32>;
@group(0) @binding(3) var<storage, read> adv: array<f32>;`;
    case 'awrGaussian':
      return `@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> actions: array<f32>;
@group(0) @binding(3) var<storage, read> adv: array<f32>;
@group(0) @binding(4) var<storage, read> logStd: array<f32>;`;
  }
}

// Helpers each loss's forward and backward share, so both see the same residuals and weights.
function lossHelpers(loss: IQLLoss): string {
  switch (loss) {
    case 'expectile':
      // u = truth - pred (the target minus the prediction); weight tau above the prediction, 1 - tau below
      return `
fn expectile_weight(u: f32) -> f32 { return select(p.tau, 1.0 - p.tau, u < 0.0); }`;
    case 'twinTd':
      return `
fn td_target(b: u32) -> f32 { return reward[b] + p.discount * notDone[b] * nextV[b]; }`;
    case 'awrDeterministic':
      return `
fn awr_weight(b: u32) -> f32 { return min(exp(p.beta * adv[b]), p.maxWeight); }`;
    case 'awrGaussian':
      return `
fn awr_weight(b: u32) -> f32 { return min(exp(p.beta * adv[b]), p.maxWeight); }
fn clamped_log_std(d: u32) -> f32 { return clamp(logStd[d], p.logStdMin, p.logStdMax); }`;
  }
}

function lossTerm(loss: IQLLoss): string {
  switch (loss) {
    case 'expectile':
      return `let u = truth[e] - pred[e];
    acc += expectile_weight(u) * u * u;`;
    case 'twinTd':
      return `let y = td_target(e);
    let d1 = q1[e] - y;
    let d2 = q2[e] - y;
    acc += d1 * d1 + d2 * d2;`;
    case 'awrDeterministic':
      return `let d = pred[e] - actions[e];
    acc += awr_weight(e / p.dim) * d * d;`;
    case 'awrGaussian':
      return `let ls = clamped_log_std(e % p.dim);
    let z = (actions[e] - pred[e]) * exp(-ls);
    acc += awr_weight(e / p.dim) * (0.5 * z * z + ls + ${HALF_LOG_TWO_PI});`;
  }
}

/**
 * One pass of a loss reduction over n elements: out[c] = scale * sum of the loss terms of elements
 * c * chunk .. min(n, (c + 1) * chunk). `threads` lanes share a chunk (1 on software adapters).
 */
export function iqlLossSource(loss: IQLLoss, threads: number): string {
  return /* wgsl */ `
struct Params { rows: u32, n: u32, chunk: u32, scale: f32, ${lossParams(loss)} }
@group(0) @binding(0) var<uniform> p: Params;
${lossBindings(loss)}
@group(0) @binding(8) var<storage, read_write> out: array<f32>;
${lossHelpers(loss)}
${chunkedLossPass(lossTerm(loss), threads)}`;
}

/**
 * Gradients of the expectile loss, k = 2 scale w(u) u g with u = truth - pred: dpred = -k, dtruth = k.
 * (The target is bound as `truth`: `target` is reserved in WGSL.)
 * Only the requested outputs are bound and written.
 */
export function expectileBackwardSource(wantPred: boolean, wantTarget: boolean): string {
  return /* wgsl */ `
struct Params { n: u32, scale: f32, tau: f32 }
@group(0) @binding(0) var<uniform> p: Params;
${lossBindings('expectile')}
@group(0) @binding(3) var<storage, read> g: array<f32>;
${wantPred ? '@group(0) @binding(4) var<storage, read_write> dpred: array<f32>;' : ''}
${wantTarget ? '@group(0) @binding(5) var<storage, read_write> dtruth: array<f32>;' : ''}
${lossHelpers('expectile')}
${flatEntry()}
  if (i >= p.n) { return; }
  let u = truth[i] - pred[i];
  let k = 2.0 * p.scale * expectile_weight(u) * u * g[0];
  ${wantPred ? 'dpred[i] = -k;' : ''}
  ${wantTarget ? 'dtruth[i] = k;' : ''}
}`;
}

/** Gradients of the twin TD loss in the two heads: dq = 2 scale (q - y) g, the target y held constant. */
export function twinTdBackwardSource(): string {
  return /* wgsl */ `
struct Params { n: u32, scale: f32, discount: f32 }
@group(0) @binding(0) var<uniform> p: Params;
${lossBindings('twinTd')}
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq1: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq2: array<f32>;
${lossHelpers('twinTd')}
${flatEntry()}
  if (i >= p.n) { return; }
  let y = td_target(i);
  let k = 2.0 * p.scale * g[0];
  dq1[i] = k * (q1[i] - y);
  dq2[i] = k * (q2[i] - y);
}`;
}

/**
 * Gradient of an AWR loss in the predicted action (the Gaussian's mean): deterministic 2 scale w (pred - a) g,
 * Gaussian scale w (pred - a) / std^2 g. The weights are constants.
 */
export function awrBackwardSource(gaussian: boolean): string {
  const loss: IQLLoss = gaussian ? 'awrGaussian' : 'awrDeterministic';
  return /* wgsl */ `
struct Params { n: u32, scale: f32, ${lossParams(loss)} }
@group(0) @binding(0) var<uniform> p: Params;
${lossBindings(loss)}
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read_write> dpred: array<f32>;
${lossHelpers(loss)}
${flatEntry()}
  if (i >= p.n) { return; }
  let w = awr_weight(i / p.dim);
  let d = pred[i] - actions[i];
  ${gaussian ? 'let ls = clamped_log_std(i % p.dim);\n  dpred[i] = p.scale * w * d * exp(-2.0 * ls) * g[0];' : 'dpred[i] = 2.0 * p.scale * w * d * g[0];'}
}`;
}

/**
 * Gradient of the Gaussian AWR loss in the log-std, one invocation per action dimension looping over the
 * batch: scale g sum_b w_b (1 - z_b^2), zero where the clamp of the log-std is active (as torch.clamp).
 */
export function awrLogStdBackwardSource(): string {
  return /* wgsl */ `
struct Params { n: u32, scale: f32, ${lossParams('awrGaussian')} }
@group(0) @binding(0) var<uniform> p: Params;
${lossBindings('awrGaussian')}
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read_write> dlogStd: array<f32>;
${lossHelpers('awrGaussian')}
${flatEntry(64)}
  if (i >= p.dim) { return; }
  let raw = logStd[i];
  if (raw < p.logStdMin || raw > p.logStdMax) {
    dlogStd[i] = 0.0;
    return;
  }
  let inv = exp(-raw);
  var acc = 0.0;
  for (var e = i; e < p.n; e += p.dim) {
    let z = (actions[e] - pred[e]) * inv;
    acc += awr_weight(e / p.dim) * (1.0 - z * z);
  }
  dlogStd[i] = p.scale * acc * g[0];
}`;
}
