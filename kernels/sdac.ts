// SDAC's reverse chains: the noise network's first layer at one diffusion step, with the state's share
// (s W_s^T + b, the same at every step) and the step's share (t_emb(k) W_t^T, one row per step) computed once per
// chain, so a step reads only the noisy action's few columns of the weight.
import { ACTIVATION_HELPERS, flatEntry } from './common.ts';

/**
 *   out[r, h] = mish(base[r, h] + stepShare[step, h] + sum_d x[r, d] W[h, xOffset + d])
 * with W the first layer's weight [hidden, inF] read in place. With `vec4` (hidden a multiple of 4) an invocation
 * computes four adjacent units of one row, so each x value is read once for four outputs and base, stepShare and
 * out move as vec4: on software adapters every storage read is a bounds-checked scalar loop, and the reads, not
 * the arithmetic, set the cost. Without it, one invocation per output.
 */
export function chainFirstLayerSource(vec4: boolean): string {
  const T = vec4 ? 'vec4<f32>' : 'f32';
  const units = vec4 ? 4 : 1;
  const weightAt = (j: number) => `weight[w0 + ${j}u * p.inF + d]`;
  return /* wgsl */ `
struct Params { rows: u32, hidden: u32, actDim: u32, inF: u32, xOffset: u32, step: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> base: array<${T}>;
@group(0) @binding(4) var<storage, read> stepShare: array<${T}>;
@group(0) @binding(5) var<storage, read_write> out: array<${T}>;
${ACTIVATION_HELPERS}
${flatEntry()}
  let groups = p.hidden / ${units}u;
  if (i >= p.rows * groups) { return; }
  let r = i / groups;
  let h = (i - r * groups) * ${units}u;
  var z = base[i] + stepShare[p.step * groups + h / ${units}u];
  let w0 = h * p.inF + p.xOffset;
  let x0 = r * p.actDim;
  for (var d = 0u; d < p.actDim; d++) {
    let xd = x[x0 + d];
    z += xd * ${vec4 ? `vec4<f32>(${[0, 1, 2, 3].map(weightAt).join(', ')})` : weightAt(0)};
  }
  out[i] = ${vec4 ? 'vec4<f32>(wd_mish(z.x), wd_mish(z.y), wd_mish(z.z), wd_mish(z.w))' : 'wd_mish(z)'};
}`;
}
