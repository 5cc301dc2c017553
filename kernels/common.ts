// Small pieces shared by kernel generators: flat 1-D launches that stay within the per-dimension workgroup
// limit by spilling into y, and the activation functions the fused kernels apply.

export const FLAT_WG = 256;

/** Workgroup counts for n invocations of a flat kernel with workgroup size wg. */
export function flatGrid(n: number, wg = FLAT_WG, maxPerDim = 65535): [number, number, number] {
  const groups = Math.ceil(n / wg);
  if (groups <= maxPerDim) return [groups, 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y, 1];
}

/** WGSL: entry-point parameters and the flat index `i` for a kernel launched with flatGrid. */
export function flatEntry(wg = FLAT_WG): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${wg}u;`;
}

export const ACTIVATIONS = ['identity', 'relu', 'mish', 'silu', 'tanh', 'sigmoid'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

/** WGSL expression for act(z), with z an f32 expression. */
export function actForward(act: Activation, z: string): string {
  switch (act) {
    case 'identity':
      return `(${z})`;
    case 'relu':
      return `max(${z}, 0.0)`;
    case 'sigmoid':
      return `wd_sigmoid(${z})`;
    case 'tanh':
      return `wd_tanh(${z})`;
    case 'silu':
      return `((${z}) * wd_sigmoid(${z}))`;
    case 'mish':
      return `wd_mish(${z})`;
  }
}

/** WGSL expression for act'(z). */
export function actDerivative(act: Activation, z: string): string {
  switch (act) {
    case 'identity':
      return `1.0`;
    case 'relu':
      return `select(0.0, 1.0, (${z}) > 0.0)`;
    case 'sigmoid':
      return `wd_dsigmoid(${z})`;
    case 'tanh':
      return `wd_dtanh(${z})`;
    case 'silu':
      return `wd_dsilu(${z})`;
    case 'mish':
      return `wd_dmish(${z})`;
  }
}

/**
 * WGSL helper functions the activation expressions call. Written to stay finite for large |z| (WGSL's tanh
 * and exp overflow to NaN/Inf on some drivers).
 */
export const ACTIVATION_HELPERS = /* wgsl */ `
fn wd_sigmoid(z: f32) -> f32 {
  if (z >= 0.0) { return 1.0 / (1.0 + exp(-z)); }
  let e = exp(z);
  return e / (1.0 + e);
}
fn wd_tanh(z: f32) -> f32 {
  let c = clamp(z, -15.0, 15.0);
  let e = exp(-2.0 * abs(c));
  return sign(c) * (1.0 - e) / (1.0 + e);
}
fn wd_softplus(z: f32) -> f32 {
  return max(z, 0.0) + log(1.0 + exp(-abs(z)));
}
fn wd_dsigmoid(z: f32) -> f32 {
  let s = wd_sigmoid(z);
  return s * (1.0 - s);
}
fn wd_dtanh(z: f32) -> f32 {
  let t = wd_tanh(z);
  return 1.0 - t * t;
}
fn wd_dsilu(z: f32) -> f32 {
  let s = wd_sigmoid(z);
  return s * (1.0 + z * (1.0 - s));
}
// tanh(softplus(z)) = n / (n + 2) with n = e^z (e^z + 2): one exp and one division instead of two exp, a log
// and a division. Past z = 20 the ratio is 1 in f32, so clamping there changes nothing and keeps n finite.
// q = 2 / (n + 2) = 1 - tanh(softplus(z)) gives both the ratio and 1 - ratio^2 = q (2 - q) without cancellation.
fn wd_mish(z: f32) -> f32 {
  let e = exp(min(z, 20.0));
  let n = e * (e + 2.0);
  return z * (0.5 * n * (2.0 / (n + 2.0)));
}
// (mish(z), mish'(z)); mish' = t + z sigmoid(z) (1 - t^2) with t = tanh(softplus(z))
fn wd_mish_pair(z: f32) -> vec2<f32> {
  let e = exp(min(z, 20.0));
  let n = e * (e + 2.0);
  let q = 2.0 / (n + 2.0);
  let t = 0.5 * n * q;
  return vec2<f32>(z * t, t + z * (e / (1.0 + e)) * q * (1.0 + t));
}
fn wd_dmish(z: f32) -> f32 {
  return wd_mish_pair(z).y;
}
`;

export function f32Lit(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`non-finite constant ${v} in a kernel`);
  const s = String(Math.fround(v));
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}
