// Kernels that update a whole flat parameter group in one pass: AdamW, the gradient-norm reduction and
// clip scaling, and the Polyak (EMA) target update. Each is generated for a vector width of 4 (when the
// group's length allows it, which halves the passes' cost on a CPU adapter) or 1; every element is
// independent, so padding that starts at zero stays zero.
import { flatEntry } from './common.ts';

export type VectorWidth = 1 | 4;

function vecType(width: VectorWidth): string {
  return width === 4 ? 'vec4<f32>' : 'f32';
}

/**
 * One AdamW step (PyTorch semantics): p <- p * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps), after
 * m and v absorb the gradient; the host folds lr, weight decay and both bias corrections into the uniforms.
 * With `scaled`, every gradient is first multiplied by grad_scale[0] (e.g. a clip factor left on the GPU).
 */
export function adamwSource(width: VectorWidth, scaled: boolean): string {
  const T = vecType(width);
  return /* wgsl */ `
struct Params { n: u32, beta1: f32, beta2: f32, one_minus_beta1: f32, one_minus_beta2: f32, decay: f32, step_size: f32, inv_sqrt_bc2: f32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> values: array<${T}>;
@group(0) @binding(2) var<storage, read> grads: array<${T}>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<${T}>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<${T}>;
${scaled ? '@group(0) @binding(5) var<storage, read> grad_scale: array<f32>;' : ''}
${flatEntry()}
  if (i >= p.n) { return; }
  let g = grads[i]${scaled ? ' * grad_scale[0]' : ''};
  let m = p.beta1 * exp_avg[i] + p.one_minus_beta1 * g;
  let v = p.beta2 * exp_avg_sq[i] + p.one_minus_beta2 * (g * g);
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  values[i] = values[i] * p.decay - p.step_size * m / (sqrt(v) * p.inv_sqrt_bc2 + p.eps);
}`;
}

/**
 * First pass of the squared-norm reduction: invocation k sums g^2 over elements k, k + parts, k + 2 parts, ...
 * (neighbouring invocations read neighbouring elements). No workgroup memory, so no barriers.
 */
export function sumSquaresPartialSource(width: VectorWidth): string {
  const T = vecType(width);
  const square = width === 4 ? 'dot(g, g)' : 'g * g';
  return /* wgsl */ `
struct Params { n: u32, parts: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grads: array<${T}>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
${flatEntry()}
  if (i >= p.parts) { return; }
  var s = 0.0;
  for (var j = i; j < p.n; j += p.parts) {
    let g = grads[j];
    s += ${square};
  }
  partials[i] = s;
}`;
}

export const NORM_FINALIZE_WG = 256;

/** Second pass: one workgroup sums the partials; writes the norm and the clip factor min(1, max_norm / (norm + 1e-6)). */
export function normFinalizeSource(): string {
  return /* wgsl */ `
struct Params { parts: u32, max_norm: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm: array<f32>;
@group(0) @binding(3) var<storage, read_write> scale: array<f32>;
var<workgroup> acc: array<f32, ${NORM_FINALIZE_WG}>;
@compute @workgroup_size(${NORM_FINALIZE_WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var j = lid; j < p.parts; j += ${NORM_FINALIZE_WG}u) {
    s += partials[j];
  }
  acc[lid] = s;
  workgroupBarrier();
  for (var width = ${NORM_FINALIZE_WG / 2}u; width > 0u; width = width / 2u) {
    if (lid < width) {
      acc[lid] += acc[lid + width];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let total = sqrt(acc[0]);
    norm[0] = total;
    scale[0] = min(1.0, p.max_norm / (total + 1e-6));
  }
}`;
}

/** grads *= scale[0], in place. */
export function scaleByScalarSource(width: VectorWidth): string {
  const T = vecType(width);
  return /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> grads: array<${T}>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
${flatEntry()}
  if (i >= p.n) { return; }
  grads[i] = grads[i] * scale[0];
}`;
}

/** target <- keep * target + tau * source, with keep = 1 - tau computed on the host. */
export function polyakSource(width: VectorWidth): string {
  const T = vecType(width);
  return /* wgsl */ `
struct Params { n: u32, keep: f32, tau: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> target_values: array<${T}>;
@group(0) @binding(2) var<storage, read> source_values: array<${T}>;
${flatEntry()}
  if (i >= p.n) { return; }
  target_values[i] = p.keep * target_values[i] + p.tau * source_values[i];
}`;
}
