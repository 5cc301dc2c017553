// SRPO's policy-extraction loss in one pass: per row of a [B, D] batch of actor actions a, with the behaviour
// model's noise prediction eps at the perturbed action, the critic's action gradient g and the row's (alpha,
// sigma) from its diffusion time,
//   loss_b = w(t_b) (e_b . a_b) - beta (gq_b . a_b),   e = eps (- z with the baseline),
//   gq = g / sqrt(mean_d g^2) when the gradient is normalised (antmaze), else g,
// summed over the rows of a chunk (lanes stride over the chunk's rows, then merge in workgroup memory). The same
// pass writes each element's gradient direction dir = (w e - beta gq) * scale, so the backward is one multiply by
// the output gradient.
import { flatEntry } from './common.ts';
import { rowEntry, workgroupMerge } from './reduce.ts';

/** w(t) of SRPO's `WT` option: 'VDS' sigma^2 (default), 'stable' 1, 'score' alpha / sigma. */
export type SrpoWeighting = 'VDS' | 'stable' | 'score';

export interface SrpoLossVariant {
  weighting: SrpoWeighting;
  /** Subtract the drawn noise z from eps (SRPO's "noise" weighting modes). */
  baseline: boolean;
  /** Divide g by its root-mean-square over the action dims (SRPO's regq, used on antmaze). */
  normalizeQGrad: boolean;
}

export function srpoLossKey(v: SrpoLossVariant, threads: number): string {
  return `srpo_loss_${v.weighting}_${v.baseline ? 'b' : 'nb'}_${v.normalizeQGrad ? 'n' : 'nn'}_t${threads}`;
}

function weightExpr(w: SrpoWeighting): string {
  switch (w) {
    case 'VDS':
      return 'sigma[b] * sigma[b]';
    case 'stable':
      return '1.0';
    case 'score':
      return 'alpha[b] / sigma[b]';
  }
}

/**
 * Forward pass. Uniforms: rows (chunks), batch (B), dim (D), chunk (rows per chunk), beta, scale (1/B).
 * out[c] = scale * sum of loss_b over chunk c; terms[2c], terms[2c+1] = scale * the sums of w (e . a) and
 * gq . a; dir = scale * (w e - beta gq) for every element.
 */
export function srpoLossSource(v: SrpoLossVariant, threads: number): string {
  const noiseBinding = v.baseline ? '@group(0) @binding(3) var<storage, read> noise: array<f32>;' : '';
  const eTerm = v.baseline ? 'eps[e] - noise[e]' : 'eps[e]';
  const norm = v.normalizeQGrad
    ? `var sq = 0.0;
    for (var d = 0u; d < p.dim; d++) { let gv = g[base + d]; sq += gv * gv; }
    let gInv = 1.0 / max(sqrt(sq / f32(p.dim)), 1e-30);`
    : 'let gInv = 1.0;';
  return /* wgsl */ `
struct Params { rows: u32, batch: u32, dim: u32, chunk: u32, beta: f32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> eps: array<f32>;
${noiseBinding}
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read> alpha: array<f32>;
@group(0) @binding(6) var<storage, read> sigma: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<storage, read_write> terms: array<f32>;
@group(0) @binding(9) var<storage, read_write> dir: array<f32>;
fn add3(x: vec3<f32>, y: vec3<f32>) -> vec3<f32> { return x + y; }
${workgroupMerge('merge', 'vec3<f32>', 'add3', threads)}
${rowEntry(threads)}
  let first = row * p.chunk;
  let last = min(first + p.chunk, p.batch);
  var acc = vec3<f32>(0.0);
  for (var b = first + lid; b < last; b += ${threads}u) {
    let w = ${weightExpr(v.weighting)};
    let base = b * p.dim;
    ${norm}
    var score = 0.0;
    var guide = 0.0;
    for (var d = 0u; d < p.dim; d++) {
      let e = base + d;
      let ev = ${eTerm};
      let gq = g[e] * gInv;
      score += ev * a[e];
      guide += gq * a[e];
      dir[e] = p.scale * (w * ev - p.beta * gq);
    }
    acc += vec3<f32>(w * score - p.beta * guide, w * score, guide);
  }
  acc = merge(acc, lid);
  if (lid == 0u) {
    out[row] = acc.x * p.scale;
    terms[2u * row] = acc.y * p.scale;
    terms[2u * row + 1u] = acc.z * p.scale;
  }
}`;
}

/** Sums the [chunks, 2] partial terms into [2] (only used past one chunk). */
export function srpoTermsSumSource(): string {
  return /* wgsl */ `
struct Params { chunks: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> total: array<f32>;
${flatEntry(64)}
  if (i >= 2u) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) { s += partial[2u * c + i]; }
  total[i] = s;
}`;
}
