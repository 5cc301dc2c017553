// SDAC's reverse chains: the noise network's first layer at one diffusion step, with the state's share
// (s W_s^T + b, the same at every step) and the step's share (t_emb(k) W_t^T, one row per step) computed once per
// chain, so a step reads only the noisy action's few columns of the weight.
import { ACTIVATION_HELPERS, actForward, flatEntry } from './common.ts';

/**
 * One invocation per output element (row r, unit h):
 *   out[r, h] = mish(base[r, h] + stepShare[step, h] + sum_d x[r, d] W[h, xOffset + d])
 * with W the first layer's weight [hidden, inF] read in place.
 */
export function chainFirstLayerSource(): string {
  return /* wgsl */ `
struct Params { rows: u32, hidden: u32, actDim: u32, inF: u32, xOffset: u32, step: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> base: array<f32>;
@group(0) @binding(4) var<storage, read> stepShare: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
${ACTIVATION_HELPERS}
${flatEntry()}
  if (i >= p.rows * p.hidden) { return; }
  let r = i / p.hidden;
  let h = i - r * p.hidden;
  var z = base[i] + stepShare[p.step * p.hidden + h];
  let w0 = h * p.inF + p.xOffset;
  let x0 = r * p.actDim;
  for (var d = 0u; d < p.actDim; d++) { z += x[x0 + d] * weight[w0 + d]; }
  out[i] = ${actForward('mish', 'z')};
}`;
}
