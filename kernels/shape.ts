// Data movement: strided block copies (concat and slice), zero padding (slice's gradient), row gathers and
// their deterministic scatter-add gradients, and the 2-D transpose. Everything except the scatter-adds moves
// 32-bit words unchanged, so one kernel serves f32, u32 and i32 tensors.
import { flatEntry } from './common.ts';

/**
 * Copies a rows x cols block: out[r*outStride + outOffset + c] = src[r*srcStride + srcOffset + c].
 * Concat writes each input into its columns of the output; slice reads its columns of the input.
 */
export function blockCopySource(): string {
  return /* wgsl */ `
struct Params { rows: u32, cols: u32, srcStride: u32, srcOffset: u32, outStride: u32, outOffset: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
${flatEntry()}
  if (i >= p.rows * p.cols) { return; }
  let r = i / p.cols;
  let c = i - r * p.cols;
  out[r * p.outStride + p.outOffset + c] = src[r * p.srcStride + p.srcOffset + c];
}`;
}

/** out [rows, width] = zeros, except columns [start, start + cols) which take src [rows, cols]. */
export function padColumnsSource(): string {
  return /* wgsl */ `
struct Params { rows: u32, width: u32, start: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
${flatEntry()}
  if (i >= p.rows * p.width) { return; }
  let r = i / p.width;
  let c = i - r * p.width;
  if (c >= p.start && c - p.start < p.cols) {
    out[i] = src[r * p.cols + c - p.start];
  } else {
    out[i] = 0u;
  }
}`;
}

/**
 * out[b, :] = x[indices[b], :] for the indices in the window [lo, hi) of x's rows (x is bound from row lo), and
 * zeros for indices outside [0, nRows) when lo is 0. One window (lo 0, hi nRows) covers a tensor that fits one
 * binding; bigger tensors take one dispatch per window. Indices are read as u32: a negative i32 index becomes a
 * value of at least 2^31, so the checks cover both index dtypes. With `lanes` 4 each invocation moves a vec4
 * (rows must be a multiple of 4 words long).
 */
export function gatherSource(lanes: 1 | 4): string {
  const word = lanes === 4 ? 'vec4<u32>' : 'u32';
  return /* wgsl */ `
struct Params { batch: u32, cols: u32, nRows: u32, lo: u32, hi: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<${word}>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<${word}>;
${flatEntry()}
  if (i >= p.batch * p.cols) { return; }
  let b = i / p.cols;
  let c = i - b * p.cols;
  let j = indices[b];
  if (j >= p.lo && j < p.hi) {
    out[i] = x[(j - p.lo) * p.cols + c];
  } else if (j >= p.nRows && p.lo == 0u) {
    out[i] = ${word}(0u);
  }
}`;
}

/** Columns each scatter-add invocation owns. */
export const SCATTER_BLOCK = 32;

/** What both gather gradients bind, and their entry point. */
function scatterHeader(): string {
  return `struct Params { batch: u32, cols: u32, nRows: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
${flatEntry()}`;
}

/**
 * Gradient of gather, owner per index: the invocation for (b, column block) returns unless b is the first
 * occurrence of its index; the owner writes the sum, in batch order, of every gradient row with that index.
 * dx must be zeroed beforehand (rows no index picks keep 0). Cost: O(B^2) index compares per column block.
 */
export function scatterAddByIndexSource(): string {
  return /* wgsl */ `
${scatterHeader()}
  if (i >= p.batch * p.blocks) { return; }
  let b = i / p.blocks;
  let c0 = (i - b * p.blocks) * ${SCATTER_BLOCK}u;
  let c1 = min(c0 + ${SCATTER_BLOCK}u, p.cols);
  let j = indices[b];
  if (j >= p.nRows) { return; }
  for (var k = 0u; k < b; k++) {
    if (indices[k] == j) { return; }
  }
  for (var c = c0; c < c1; c++) { dx[j * p.cols + c] = g[b * p.cols + c]; }
  for (var k = b + 1u; k < p.batch; k++) {
    if (indices[k] == j) {
      for (var c = c0; c < c1; c++) { dx[j * p.cols + c] += g[k * p.cols + c]; }
    }
  }
}`;
}

/**
 * Gradient of gather, owner per row of x: the invocation for (row n, column block) sums, in batch order, every
 * gradient row whose index is n (zeros if none). Cost: O(N * B) index compares per column block.
 */
export function scatterAddByRowSource(): string {
  return /* wgsl */ `
${scatterHeader()}
  if (i >= p.nRows * p.blocks) { return; }
  let n = i / p.blocks;
  let c0 = (i - n * p.blocks) * ${SCATTER_BLOCK}u;
  let c1 = min(c0 + ${SCATTER_BLOCK}u, p.cols);
  for (var c = c0; c < c1; c++) { dx[n * p.cols + c] = 0.0; }
  for (var k = 0u; k < p.batch; k++) {
    if (indices[k] == n) {
      for (var c = c0; c < c1; c++) { dx[n * p.cols + c] += g[k * p.cols + c]; }
    }
  }
}`;
}

/** out [cols, rows] = transpose of x [rows, cols], one invocation per output element (writes contiguous). */
export function transposeSource(): string {
  return /* wgsl */ `
struct Params { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
${flatEntry()}
  if (i >= p.rows * p.cols) { return; }
  let c = i / p.rows;
  let r = i - c * p.rows;
  out[i] = x[r * p.cols + c];
}`;
}
