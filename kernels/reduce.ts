// Row programs: every kernel here gives each row of a [rows, cols] matrix to either one invocation (which loops
// over the row: no workgroup memory, no barriers, best on software adapters and for many short rows) or one
// workgroup of `threads` invocations (strided loop, then a tree in workgroup memory: best for long rows on a
// GPU). The same WGSL body serves both; only the entry header and the cross-invocation merge change.
// Also the elementwise kernels that spread a per-row gradient back over the row.
import { flatEntry, flatGrid } from './common.ts';

/** Invocations per workgroup when one invocation owns a whole row. */
export const ROW_WG = 64;

/** Workgroup counts for a row program over `rows` rows. */
export function rowGrid(rows: number, threads: number): [number, number, number] {
  return threads === 1 ? flatGrid(rows, ROW_WG) : flatGrid(rows, 1);
}

/**
 * WGSL entry header for a row program: defines `row` and `lid` (this invocation's lane within its row, 0 when
 * one invocation owns the row) and returns past `p.rows`. The return depends only on the workgroup id, so the
 * barriers that may follow stay in uniform control flow.
 */
export function rowEntry(threads: number): string {
  if (threads === 1) {
    return `@compute @workgroup_size(${ROW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = gid.x + gid.y * nwg.x * ${ROW_WG}u;
  let lid = 0u;
  if (row >= p.rows) { return; }`;
  }
  return `@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }`;
}

/**
 * WGSL function `name(a, lid) -> type` that merges every lane's value with `combine` and hands the result to
 * all lanes. With one invocation per row it is the identity. `threads` must be a power of two.
 */
export function workgroupMerge(name: string, type: string, combine: string, threads: number): string {
  if (threads === 1) return `fn ${name}(a: ${type}, lid: u32) -> ${type} { return a; }`;
  if ((threads & (threads - 1)) !== 0) throw new Error(`workgroupMerge: ${threads} lanes is not a power of two`);
  return `
var<workgroup> ${name}_lanes: array<${type}, ${threads}>;
fn ${name}(a: ${type}, lid: u32) -> ${type} {
  ${name}_lanes[lid] = a;
  workgroupBarrier();
  for (var s = ${threads / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { ${name}_lanes[lid] = ${combine}(${name}_lanes[lid], ${name}_lanes[lid + s]); }
    workgroupBarrier();
  }
  let r = ${name}_lanes[0];
  workgroupBarrier();
  return r;
}`;
}

/**
 * The rest of a chunked loss pass after its declarations: row c sums the loss terms of elements
 * c * p.chunk .. min(p.n, (c + 1) * p.chunk) (`term` adds element e's term to acc) and writes p.scale times the
 * sum to out[c]. With one chunk that is the whole loss; several leave partial sums for a sum pass.
 */
export function chunkedLossPass(term: string, threads: number): string {
  return `fn add(a: f32, b: f32) -> f32 { return a + b; }
${workgroupMerge('merge', 'f32', 'add', threads)}
${rowEntry(threads)}
  let start = row * p.chunk;
  let end = min(start + p.chunk, p.n);
  var acc = 0.0;
  for (var e = start + lid; e < end; e += ${threads}u) {
    ${term}
  }
  acc = merge(acc, lid);
  if (lid == 0u) { out[row] = acc * p.scale; }
}`;
}

// Largest finite f32: WGSL has no infinity literal, and a true -inf input must still beat the start value.
const LOWEST = '-3.4028234663852886e38';

/** Per-row reductions writing one value per row. */
export type RowReduceOp = 'sum' | 'max' | 'maxPairs' | 'logsumexp';

/**
 * Reduces chunks of segments to one value each: the input is segments of segLen elements, each cut into
 * chunksPerRow chunks of `chunk` elements (the last one ragged), and output r reduces chunk r % chunksPerRow of
 * segment r / chunksPerRow. One chunk per segment is a plain per-row reduction; several make a pass of a
 * multi-pass reduction over long rows or over a whole tensor.
 * - sum: out[r] = scale * sum
 * - max / maxPairs: out[r] = max and outIndex[r] = flat index of the first maximum (maxPairs reads the
 *   (value, index) pairs of an earlier pass instead of raw values)
 * - logsumexp: out[r] = log(sum(exp(x))) computed online (running max and rescaled sum)
 */
export function rowReduceSource(op: RowReduceOp, threads: number): string {
  const header = `
struct Params { rows: u32, chunksPerRow: u32, segLen: u32, chunk: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;`;
  const loop = (body: string) => `
  let segment = row / p.chunksPerRow;
  let start = (row - segment * p.chunksPerRow) * p.chunk;
  let base = segment * p.segLen + start;
  let len = min(p.chunk, p.segLen - start);
  for (var c = lid; c < len; c += ${threads}u) {
    ${body}
  }`;
  switch (op) {
    case 'sum':
      return `${header}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
fn add(a: f32, b: f32) -> f32 { return a + b; }
${workgroupMerge('merge', 'f32', 'add', threads)}
${rowEntry(threads)}
  var acc = 0.0;${loop('acc += x[base + c];')}
  acc = merge(acc, lid);
  if (lid == 0u) { out[row] = acc * p.scale; }
}`;
    case 'max':
    case 'maxPairs': {
      const inputs =
        op === 'max'
          ? `@group(0) @binding(1) var<storage, read> x: array<f32>;`
          : `@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> xIndex: array<u32>;`;
      const candidate = op === 'max' ? 'Best(x[base + c], base + c)' : 'Best(x[base + c], xIndex[base + c])';
      return `${header}
${inputs}
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> outIndex: array<u32>;
struct Best { v: f32, i: u32 }
const NONE = 0xffffffffu;
// ties go to the lower flat index whatever order lanes merge in
fn better(a: Best, b: Best) -> Best {
  if (b.i == NONE) { return a; }
  if (a.i == NONE) { return b; }
  if (b.v > a.v || (b.v == a.v && b.i < a.i)) { return b; }
  return a;
}
${workgroupMerge('merge', 'Best', 'better', threads)}
${rowEntry(threads)}
  var acc = Best(${LOWEST}, NONE);${loop(`acc = better(acc, ${candidate});`)}
  acc = merge(acc, lid);
  if (lid == 0u) {
    out[row] = acc.v;
    outIndex[row] = acc.i;
  }
}`;
    }
    case 'logsumexp':
      return `${header}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${ONLINE_EXP_SUM}
${workgroupMerge('merge', 'vec2<f32>', 'mergeExpSum', threads)}
${rowEntry(threads)}
  var acc = vec2<f32>(${LOWEST}, 0.0);${loop('acc = pushExpSum(acc, x[base + c]);')}
  acc = merge(acc, lid);
  if (lid == 0u) { out[row] = acc.x + log(acc.y); }
}`;
  }
}

// (running max m, sum of exp(v - m)): one exp per element, and only values at or below m are exponentiated,
// so nothing overflows whatever the offset of the row.
const ONLINE_EXP_SUM = /* wgsl */ `
fn pushExpSum(a: vec2<f32>, v: f32) -> vec2<f32> {
  if (v > a.x) { return vec2<f32>(v, a.y * exp(a.x - v) + 1.0); }
  return vec2<f32>(a.x, a.y + exp(v - a.x));
}
fn mergeExpSum(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let m = max(a.x, b.x);
  return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}`;

/** Row programs that write a whole row after one reduction over it. */
export type RowMapOp = 'softmax' | 'logSoftmax' | 'softmaxBackward' | 'logSoftmaxBackward';

/**
 * - softmax: out = exp(x - m) / s, logSoftmax: out = x - m - log(s), with (m, s) the online max and exp-sum
 * - softmaxBackward (y = softmax output, g = its gradient): out = y * (g - sum(g * y))
 * - logSoftmaxBackward (y = logSoftmax output): out = g - exp(y) * sum(g)
 */
export function rowMapSource(op: RowMapOp, threads: number): string {
  const header = `
struct Params { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: Params;`;
  const loop = (body: string) => `
  for (var c = lid; c < p.cols; c += ${threads}u) {
    ${body}
  }`;
  if (op === 'softmax' || op === 'logSoftmax') {
    const write = op === 'softmax' ? 'out[base + c] = exp(x[base + c] - acc.x) * inv;' : 'out[base + c] = x[base + c] - shift;';
    const prep = op === 'softmax' ? 'let inv = 1.0 / acc.y;' : 'let shift = acc.x + log(acc.y);';
    return `${header}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${ONLINE_EXP_SUM}
${workgroupMerge('merge', 'vec2<f32>', 'mergeExpSum', threads)}
${rowEntry(threads)}
  let base = row * p.cols;
  var acc = vec2<f32>(${LOWEST}, 0.0);${loop('acc = pushExpSum(acc, x[base + c]);')}
  acc = merge(acc, lid);
  ${prep}${loop(write)}
}`;
  }
  const push = op === 'softmaxBackward' ? 'acc += g[base + c] * y[base + c];' : 'acc += g[base + c];';
  const write =
    op === 'softmaxBackward'
      ? 'out[base + c] = y[base + c] * (g[base + c] - acc);'
      : 'out[base + c] = g[base + c] - exp(y[base + c]) * acc;';
  return `${header}
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
fn add(a: f32, b: f32) -> f32 { return a + b; }
${workgroupMerge('merge', 'f32', 'add', threads)}
${rowEntry(threads)}
  let base = row * p.cols;
  var acc = 0.0;${loop(push)}
  acc = merge(acc, lid);${loop(write)}
}`;
}

/** Elementwise kernels that spread a per-row gradient g[row] over the row's elements. */
export type RowSpreadOp = 'sumBackward' | 'maxBackward' | 'logsumexpBackward';

/**
 * Flat over all n elements, row = i / cols:
 * - sumBackward: out[i] = g[row] * scale
 * - maxBackward: out[i] = g[row] where i is the row's saved argmax (a flat index), else 0
 * - logsumexpBackward: out[i] = g[row] * exp(x[i] - lse[row])
 */
export function rowSpreadSource(op: RowSpreadOp): string {
  const header = `
struct Params { n: u32, cols: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;`;
  const body =
    op === 'sumBackward'
      ? 'out[i] = g[row] * p.scale;'
      : op === 'maxBackward'
        ? 'out[i] = select(0.0, g[row], argmax[row] == i);'
        : 'out[i] = g[row] * exp(x[i] - lse[row]);';
  const extra =
    op === 'maxBackward'
      ? '@group(0) @binding(3) var<storage, read> argmax: array<u32>;'
      : op === 'logsumexpBackward'
        ? `@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;`
        : '';
  return `${header}
${extra}
${flatEntry()}
  if (i >= p.n) { return; }
  let row = i / p.cols;
  ${body}
}`;
}
