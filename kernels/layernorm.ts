// Layer normalisation over the last axis: a fused forward that also saves each row's mean and reciprocal
// standard deviation, a fused row backward for dx, and column sums for dgamma and dbeta. The row kernels use
// the row-program layout of reduce.ts (one invocation or one workgroup per row).
import { flatEntry } from './common.ts';
import { rowEntry, workgroupMerge } from './reduce.ts';

/** Which affine parameters a kernel reads; each changes the code, so each is part of the kernel key. */
export interface AffineFlags {
  gamma: boolean;
  beta: boolean;
}

function rowLoop(threads: number, body: string): string {
  return `
  for (var c = lid; c < p.cols; c += ${threads}u) {
    ${body}
  }`;
}

/**
 * y = (x - mean) * rstd * gamma + beta per row, with the variance from a second pass over the centred row
 * (no cancellation when |mean| >> std). Saves mean[row] and rstd[row] = 1 / sqrt(var + eps).
 */
export function layerNormForwardSource(threads: number, affine: AffineFlags): string {
  const scaled = affine.gamma ? '(x[base + c] - mu) * r * gamma[c]' : '(x[base + c] - mu) * r';
  const value = affine.beta ? `${scaled} + beta[c]` : scaled;
  return /* wgsl */ `
struct Params { rows: u32, cols: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
${affine.gamma ? '@group(0) @binding(2) var<storage, read> gamma: array<f32>;' : ''}
${affine.beta ? '@group(0) @binding(3) var<storage, read> beta: array<f32>;' : ''}
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;
fn add(a: f32, b: f32) -> f32 { return a + b; }
${workgroupMerge('merge', 'f32', 'add', threads)}
${rowEntry(threads)}
  let base = row * p.cols;
  let inv = 1.0 / f32(p.cols);
  // summing offsets from the row's first element keeps the mean exact to ~ulp(x) when |mean| >> std
  let shift = x[base];
  var s = 0.0;${rowLoop(threads, 's += x[base + c] - shift;')}
  let mu = shift + merge(s, lid) * inv;
  var q = 0.0;${rowLoop(threads, 'let d = x[base + c] - mu;\n    q += d * d;')}
  let r = inverseSqrt(merge(q, lid) * inv + p.eps);${rowLoop(threads, `y[base + c] = ${value};`)}
  if (lid == 0u) {
    mean[row] = mu;
    rstd[row] = r;
  }
}`;
}

/**
 * dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)) per row, with xhat = (x - mean) * rstd and
 * gh = g * gamma (g alone without gamma).
 */
export function layerNormBackwardSource(threads: number, hasGamma: boolean): string {
  const gh = hasGamma ? 'g[base + c] * gamma[c]' : 'g[base + c]';
  return /* wgsl */ `
struct Params { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
${hasGamma ? '@group(0) @binding(3) var<storage, read> gamma: array<f32>;' : ''}
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
fn add(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return a + b; }
${workgroupMerge('merge', 'vec2<f32>', 'add', threads)}
${rowEntry(threads)}
  let base = row * p.cols;
  let mu = mean[row];
  let r = rstd[row];
  var acc = vec2<f32>(0.0, 0.0);${rowLoop(threads, `let gh = ${gh};\n    acc += vec2<f32>(gh, gh * (x[base + c] - mu) * r);`)}
  let m = merge(acc, lid) / f32(p.cols);${rowLoop(threads, `let gh = ${gh};\n    dx[base + c] = r * (gh - m.x - (x[base + c] - mu) * r * m.y);`)}
}`;
}

/**
 * Partial parameter gradients over chunks of rows, one invocation per (chunk, column):
 * dgamma[chunk, d] = sum g * xhat and dbeta[chunk, d] = sum g over the chunk's rows. Reads stride across rows
 * but neighbouring invocations read neighbouring columns.
 */
export function layerNormParamGradSource(): string {
  return /* wgsl */ `
struct Params { rows: u32, cols: u32, rowsPerChunk: u32, chunks: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;
${flatEntry()}
  if (i >= p.chunks * p.cols) { return; }
  let chunk = i / p.cols;
  let d = i - chunk * p.cols;
  let r0 = chunk * p.rowsPerChunk;
  let r1 = min(r0 + p.rowsPerChunk, p.rows);
  var sg = 0.0;
  var sb = 0.0;
  for (var r = r0; r < r1; r++) {
    let gv = g[r * p.cols + d];
    sg += gv * (x[r * p.cols + d] - mean[r]) * rstd[r];
    sb += gv;
  }
  dgamma[i] = sg;
  dbeta[i] = sb;
}`;
}

/** Sums two [chunks, cols] partial matrices over their chunks: one invocation per column. */
export function columnSumPairSource(): string {
  return /* wgsl */ `
struct Params { chunks: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partA: array<f32>;
@group(0) @binding(2) var<storage, read> partB: array<f32>;
@group(0) @binding(3) var<storage, read_write> sumA: array<f32>;
@group(0) @binding(4) var<storage, read_write> sumB: array<f32>;
${flatEntry()}
  if (i >= p.cols) { return; }
  var a = 0.0;
  var b = 0.0;
  for (var k = 0u; k < p.chunks; k++) {
    a += partA[k * p.cols + i];
    b += partB[k * p.cols + i];
  }
  sumA[i] = a;
  sumB[i] = b;
}`;
}
