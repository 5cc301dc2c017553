// Sinusoidal features of a scalar per row: out[b] = [sin(t_b * w_j * s) for j, cos(t_b * w_j * s) for j] (or
// cos first), the time embeddings of diffusion networks. Arguments are reduced to [-pi, pi] with a two-part
// 2*pi (the high part has few enough bits that k * high is exact), because WGSL only bounds the error of sin
// and cos inside that interval while timesteps times frequencies reach the thousands.
import { flatEntry } from './common.ts';

export type FourierOrder = 'sin-cos' | 'cos-sin';

const REDUCE_WGSL = /* wgsl */ `
fn fourier_reduce(a: f32) -> f32 {
  let k = round(a * 0.15915494309189535);
  return (a - k * 6.28125) - k * 0.0019353071795864769;
}`;

/** One invocation per output element; the output is [rows, 2 * half]. */
export function fourierForwardSource(order: FourierOrder): string {
  const [first, second] = order === 'sin-cos' ? ['sin', 'cos'] : ['cos', 'sin'];
  return /* wgsl */ `
struct Params { rows: u32, half: u32, freq_scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read> freqs: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${REDUCE_WGSL}
${flatEntry()}
  let width = 2u * p.half;
  if (i >= p.rows * width) { return; }
  let row = i / width;
  let col = i % width;
  let j = select(col - p.half, col, col < p.half);
  let r = fourier_reduce((t[row] * freqs[j]) * p.freq_scale);
  out[i] = select(${second}(r), ${first}(r), col < p.half);
}`;
}

/** d t_b = sum_j w_j s (g_sin cos(arg) - g_cos sin(arg)); one invocation per row. */
export function fourierBackwardSource(order: FourierOrder): string {
  const [sinOff, cosOff] = order === 'sin-cos' ? ['0u', 'p.half'] : ['p.half', '0u'];
  return /* wgsl */ `
struct Params { rows: u32, half: u32, freq_scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read> freqs: array<f32>;
@group(0) @binding(3) var<storage, read> gout: array<f32>;
@group(0) @binding(4) var<storage, read_write> gt: array<f32>;
${REDUCE_WGSL}
${flatEntry()}
  if (i >= p.rows) { return; }
  let base = i * 2u * p.half;
  var acc = 0.0;
  for (var j = 0u; j < p.half; j++) {
    let w = freqs[j] * p.freq_scale;
    let r = fourier_reduce((t[i] * freqs[j]) * p.freq_scale);
    acc += w * (gout[base + ${sinOff} + j] * cos(r) - gout[base + ${cosOff} + j] * sin(r));
  }
  gt[i] = acc;
}`;
}
