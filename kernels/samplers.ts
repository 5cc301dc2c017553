// Fused sampler updates and critic-based candidate selection.
//
// Every reverse step of DDPM, DDIM, DPM-Solver++ and the EDM Euler/Heun samplers is one affine update around a
// (clipped) data prediction, so one parameterised kernel serves them all:
//   d   = clip(pe * xe + qe * m, dLo, dHi)        the data prediction from a model output m evaluated at xe
//   out = cx * x + cxe * xe + cd * d + c1 * h1 + c2 * h2 + sz * z   (then optionally clipped to [outLo, outHi])
// with x the state being advanced, h1/h2 earlier data predictions (multistep and singlestep solvers), z standard
// normal noise (drawn inline from Philox or read from a tensor). The coefficients are the step's host scalars in
// the uniform struct; only the presence of the optional operands changes the code.
import { flatEntry } from './common.ts';
import { PHILOX_WGSL } from './rng.ts';

export type StepNoise = 'none' | 'philox' | 'tensor';

export interface StepVariant {
  /** The model was evaluated at a point other than x (bound as xe); otherwise xe is x itself. */
  separateEval: boolean;
  /** Number of earlier data predictions combined (0, 1 or 2). */
  history: 0 | 1 | 2;
  /** Also write the data prediction d to dOut. */
  writeData: boolean;
  noise: StepNoise;
  /** Clip d to [dLo, dHi]. */
  clipData: boolean;
  /** Clip the result to [outLo, outHi]. */
  clipOut: boolean;
}

export function stepVariantKey(v: StepVariant): string {
  return `samplerStep_e${+v.separateEval}_h${v.history}_w${+v.writeData}_${v.noise}_c${+v.clipData}${+v.clipOut}`;
}

/**
 * One invocation per Philox block, i.e. four consecutive elements, so inline noise follows Generator.normal's
 * layout exactly: element j gets the normal value `generator.normal([n])` would put at j for the same counter.
 */
export function samplerStepSource(v: StepVariant): string {
  let binding = 1;
  const decl = (name: string, write = false) =>
    `@group(0) @binding(${binding++}) var<storage, ${write ? 'read_write' : 'read'}> ${name}: array<f32>;`;
  const decls = [decl('x'), decl('m')];
  if (v.separateEval) decls.push(decl('xe'));
  if (v.history >= 1) decls.push(decl('h1'));
  if (v.history >= 2) decls.push(decl('h2'));
  if (v.noise === 'tensor') decls.push(decl('noise'));
  decls.push(decl('out', true));
  if (v.writeData) decls.push(decl('dOut', true));
  const evalPoint = v.separateEval ? 'xe[j]' : 'xv';
  const terms = ['p.cx * xv', 'p.cd * d'];
  if (v.separateEval) terms.push('p.cxe * xe[j]');
  if (v.history >= 1) terms.push('p.c1 * h1[j]');
  if (v.history >= 2) terms.push('p.c2 * h2[j]');
  if (v.noise !== 'none') terms.push('p.sz * z');
  const noiseSetup =
    v.noise === 'philox'
      ? `let r = philox_block(vec2<u32>(p.key_lo, p.key_hi), p.base_lo, p.base_hi, i);
  let zs = vec4<f32>(philox_box_muller(r.x, r.y), philox_box_muller(r.z, r.w));`
      : 'let zs = vec4<f32>(0.0);';
  const noiseRead = v.noise === 'tensor' ? 'noise[j]' : 'zs[k]';
  return /* wgsl */ `
struct Params {
  n: u32, key_lo: u32, key_hi: u32, base_lo: u32, base_hi: u32,
  pe: f32, qe: f32, dLo: f32, dHi: f32,
  cx: f32, cxe: f32, cd: f32, c1: f32, c2: f32, sz: f32, outLo: f32, outHi: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
${decls.join('\n')}
${v.noise === 'philox' ? PHILOX_WGSL : ''}
fn update(j: u32, z: f32) {
  let xv = x[j];
  let pre = p.pe * ${evalPoint} + p.qe * m[j];
  let d = ${v.clipData ? 'clamp(pre, p.dLo, p.dHi)' : 'pre'};
  ${v.writeData ? 'dOut[j] = d;' : ''}
  let o = ${terms.join(' + ')};
  out[j] = ${v.clipOut ? 'clamp(o, p.outLo, p.outHi)' : 'o'};
}
${flatEntry()}
  let first = i * 4u;
  if (first >= p.n) { return; }
  ${noiseSetup}
  for (var k = 0u; k < 4u; k++) {
    let j = first + k;
    if (j < p.n) { update(j, ${noiseRead}); }
  }
}`;
}

/**
 * Gradient of the fused update with respect to the model output m and the evaluation point xe (for the data
 * prediction path). With gd = cd * g + gD (gD: gradient reaching dOut) passed where the clip is inactive
 * (dLo <= pre <= dHi, the engine's clamp convention):
 *   gm = qe * gd,   gxe = pe * gd + cg * g
 * where cg is cxe, or cx when xe is x itself (the caller then uses gxe as x's whole gradient).
 */
export function samplerStepBackwardSource(clipData: boolean, hasDataGrad: boolean): string {
  let binding = 1;
  const decl = (name: string, write = false) =>
    `@group(0) @binding(${binding++}) var<storage, ${write ? 'read_write' : 'read'}> ${name}: array<f32>;`;
  const decls = [decl('g')];
  if (hasDataGrad) decls.push(decl('gD'));
  decls.push(decl('xe'), decl('m'), decl('gm', true), decl('gxe', true));
  return /* wgsl */ `
struct Params { n: u32, pe: f32, qe: f32, dLo: f32, dHi: f32, cd: f32, cg: f32 }
@group(0) @binding(0) var<uniform> p: Params;
${decls.join('\n')}
${flatEntry()}
  if (i >= p.n) { return; }
  let gi = g[i];
  let pre = p.pe * xe[i] + p.qe * m[i];
  var gd = p.cd * gi${hasDataGrad ? ' + gD[i]' : ''};
  ${clipData ? 'if (!(pre >= p.dLo && pre <= p.dHi)) { gd = 0.0; }' : ''}
  gm[i] = p.qe * gd;
  gxe[i] = p.pe * gd + p.cg * gi;
}`;
}

export type SelectMode = 'sample' | 'argmax';

export const SELECT_WG = 64;

/**
 * Energy-based selection among N candidates per state, one invocation per state (candidates s*N .. s*N+N-1):
 * 'sample' draws index c with probability softmax(temperature * q)[c] by inverse CDF on the uniform number of
 * state s (word s % 4 of Philox block base + s / 4, the layout of Generator.uniform([S])); 'argmax' takes the
 * first maximum of q. NaN values of q are never chosen (if every value is NaN or -inf, index 0 is). Writes the
 * chosen row of cand to out[s] and its index (0..N-1) to idx[s].
 */
export function selectByCriticSource(mode: SelectMode): string {
  return /* wgsl */ `
struct Params { S: u32, N: u32, D: u32, temperature: f32, key_lo: u32, key_hi: u32, base_lo: u32, base_hi: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cand: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> idx: array<u32>;
${mode === 'sample' ? PHILOX_WGSL : ''}
${flatEntry(SELECT_WG)}
  if (i >= p.S) { return; }
  let base = i * p.N;
  ${mode === 'sample' ? sampleBody() : argmaxBody()}
  idx[i] = chosen;
  let src = (base + chosen) * p.D;
  let dst = i * p.D;
  for (var c = 0u; c < p.D; c++) { out[dst + c] = cand[src + c]; }
}`;
}

function argmaxBody(): string {
  return /* wgsl */ `
  var chosen = 0u;
  var best = -3.4028234663852886e38;
  var found = false;
  for (var c = 0u; c < p.N; c++) {
    let v = q[base + c];
    if (v > best || (!found && v == best)) { best = v; chosen = c; found = true; }
  }`;
}

// Logits are temperature * q, shifted by their maximum so exp never overflows; the walk stops at the first
// candidate whose running sum exceeds u * total, and falls back to the last candidate of positive weight when
// rounding leaves the target unreached.
function sampleBody(): string {
  return /* wgsl */ `
  var top = -3.4028234663852886e38;
  for (var c = 0u; c < p.N; c++) {
    let v = p.temperature * q[base + c];
    if (v > top) { top = v; }
  }
  var total = 0.0;
  for (var c = 0u; c < p.N; c++) {
    let v = p.temperature * q[base + c];
    if (v >= top - 104.0) { total += exp(v - top); }
  }
  let r = philox_block(vec2<u32>(p.key_lo, p.key_hi), p.base_lo, p.base_hi, i / 4u);
  let goal = philox_unit(r[i & 3u]) * total;
  var chosen = 0u;
  var acc = 0.0;
  for (var c = 0u; c < p.N; c++) {
    let v = p.temperature * q[base + c];
    if (v >= top - 104.0) {
      let w = exp(v - top);
      if (w > 0.0) {
        acc += w;
        chosen = c;
        if (acc > goal) { break; }
      }
    }
  }`;
}
