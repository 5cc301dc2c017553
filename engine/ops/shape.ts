// Shape ops with autograd: reshape (a view, no copy), concat and slice along an axis (the last by default),
// row gather by index (minibatches from a GPU-resident dataset) and the 2-D transpose.
import { kernel } from '../kernel.ts';
import { runtime } from '../runtime.ts';
import { empty, numel, reshapeStorage, type Tensor } from '../tensor.ts';
import { fill_ } from '../basic.ts';
import { needsGrad, record } from '../autograd.ts';
import { flatGrid } from '../../kernels/common.ts';
import {
  SCATTER_BLOCK,
  blockCopySource,
  gatherSource,
  padColumnsSource,
  scatterAddByIndexSource,
  scatterAddByRowSource,
  transposeSource,
} from '../../kernels/shape.ts';

function normAxis(op: string, shape: readonly number[], axis: number): number {
  const a = axis < 0 ? axis + shape.length : axis;
  if (!Number.isInteger(a) || a < 0 || a >= shape.length) throw new Error(`${op}: axis ${axis} is out of range for [${shape}]`);
  return a;
}

/** src [rows, srcStride] columns [srcOffset, +cols) -> out [rows, outStride] columns [outOffset, +cols). */
function blockCopy(src: Tensor, out: Tensor, rows: number, cols: number, srcStride: number, srcOffset: number, outStride: number, outOffset: number): void {
  if (rows === 0 || cols === 0) return;
  runtime().dispatch(
    kernel('blockCopy', blockCopySource),
    { src, out },
    { rows, cols, srcStride, srcOffset, outStride, outOffset },
    flatGrid(rows * cols),
  );
}

/**
 * The same data under another shape (one dimension may be -1). No copy: the result shares x's storage, so a
 * later in-place write to either is seen by both.
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((d) => d !== -1);
  const free = shape.length - known.length;
  const fits = known.every((d) => Number.isInteger(d) && d >= 0) &&
    (free === 0 ? numel(known) === x.size : free === 1 && (numel(known) === 0 ? x.size === 0 : x.size % numel(known) === 0));
  if (!fits) throw new Error(`reshape: [${x.shape}] (${x.size} elements) cannot be viewed as [${shape}]`);
  const y = reshapeStorage(x, shape);
  if (needsGrad(x)) record('reshape', [x], [y], ([g]) => [reshapeStorage(g!, x.shape)]);
  return y;
}

/**
 * Joins tensors along `axis` (default: the last). All inputs need the same rank, dtype and every other
 * dimension; any number of inputs is accepted (one copy dispatch each).
 */
export function concat(xs: readonly Tensor[], axis = -1): Tensor {
  const first = xs[0];
  if (!first) throw new Error('concat: no inputs');
  const a = normAxis('concat', first.shape, axis);
  const describe = () => xs.map((x) => `[${x.shape}]`).join(', ');
  for (const x of xs) {
    if (x.dtype !== first.dtype) throw new Error(`concat: dtypes differ (${first.dtype} and ${x.dtype})`);
    if (x.rank !== first.rank || x.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new Error(`concat: shapes ${describe()} differ outside axis ${a}`);
    }
  }
  const rows = numel(first.shape.slice(0, a));
  const inner = numel(first.shape.slice(a + 1));
  const widths = xs.map((x) => x.shape[a]! * inner);
  const width = widths.reduce((s, w) => s + w, 0);
  const shape = [...first.shape];
  shape[a] = xs.reduce((s, x) => s + x.shape[a]!, 0);
  const out = empty(shape, first.dtype);
  let offset = 0;
  xs.forEach((x, i) => {
    blockCopy(x, out, rows, widths[i]!, widths[i]!, 0, width, offset);
    offset += widths[i]!;
  });
  if (needsGrad(...xs)) {
    record('concat', [...xs], [out], ([g]) => {
      let off = 0;
      return xs.map((x, i) => {
        const w = widths[i]!;
        const start = off;
        off += w;
        if (!x.requiresGrad) return null;
        const dx = empty(x.shape);
        blockCopy(g!, dx, rows, w, width, start, w, 0);
        return dx;
      });
    });
  }
  return out;
}

/**
 * Elements [start, end) along `axis` (default: the last), copied into a new tensor. Negative start/end count
 * from the end of the axis, as in Python.
 */
export function slice(x: Tensor, start: number, end: number, axis = -1): Tensor {
  const a = normAxis('slice', x.shape, axis);
  const dim = x.shape[a]!;
  const s = start < 0 ? start + dim : start;
  const e = end < 0 ? end + dim : end;
  if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e > dim || s > e) {
    throw new Error(`slice: [${start}, ${end}) is not a range of axis ${a} (size ${dim}) of [${x.shape}]`);
  }
  const rows = numel(x.shape.slice(0, a));
  const inner = numel(x.shape.slice(a + 1));
  const shape = [...x.shape];
  shape[a] = e - s;
  const out = empty(shape, x.dtype);
  const cols = (e - s) * inner;
  blockCopy(x, out, rows, cols, dim * inner, s * inner, cols, 0);
  if (needsGrad(x)) {
    record('slice', [x], [out], ([g]) => {
      const dx = empty(x.shape);
      if (dx.size > 0) {
        runtime().dispatch(
          kernel('padColumns', padColumnsSource),
          { src: g!, out: dx },
          { rows, width: dim * inner, start: s * inner, cols },
          flatGrid(dx.size),
        );
      }
      return [dx];
    });
  }
  return out;
}

/** Largest binding gather uses for x; lowered by tests to exercise the windowed path on small tensors. */
export const gatherTuning: { maxWindowBytes: number | null } = { maxWindowBytes: null };

/**
 * Rows of x per binding: all of them when x fits one storage binding, else windows whose byte offsets keep the
 * device's storage offset alignment.
 */
function gatherWindowRows(cols: number): number {
  const limits = runtime().device.limits;
  const maxBytes = Math.min(gatherTuning.maxWindowBytes ?? Infinity, limits.maxStorageBufferBindingSize);
  const rowBytes = cols * 4;
  const align = limits.minStorageBufferOffsetAlignment;
  const step = align / gcd(align, rowBytes);
  const rows = Math.floor(Math.floor(maxBytes / rowBytes) / step) * step;
  if (rows === 0) throw new Error(`gather: one row of ${rowBytes} bytes does not fit a storage binding of ${maxBytes} bytes`);
  return rows;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Rows of x picked by an index tensor: x [N, ...rest] and indices [...B] (u32 or i32) give
 * [...B, ...rest]. An index outside [0, N) (including a negative i32) yields a row of zeros and is never read.
 * x may be larger than one storage binding (a whole dataset): it is then read in aligned windows, one dispatch
 * per window.
 *
 * The gradient for x is a deterministic scatter-add (WGSL has no f32 atomics): when B <= N one invocation per
 * (distinct index, 32 columns) sums its rows in batch order, costing O(B^2 * D/32) index compares, plus a zero
 * fill of [N, D]; otherwise one invocation per (row of x, 32 columns) scans the indices, costing O(N * B * D/32).
 * Both are cheap for minibatch sizes; neither suits gathering millions of rows with gradients.
 */
export function gather(x: Tensor, indices: Tensor): Tensor {
  if (x.rank < 1) throw new Error(`gather: x must have at least one axis, got [${x.shape}]`);
  if (indices.dtype !== 'u32' && indices.dtype !== 'i32') {
    throw new Error(`gather: indices must be u32 or i32, got ${indices.dtype} [${indices.shape}]`);
  }
  const nRows = x.shape[0]!;
  const cols = numel(x.shape.slice(1));
  const batch = indices.size;
  const out = empty([...indices.shape, ...x.shape.slice(1)], x.dtype);
  if (out.size > 0 && x.size === 0) {
    fill_(out, 0);
  } else if (out.size > 0) {
    const lanes = cols % 4 === 0 ? 4 : 1;
    const words = cols / lanes;
    const k = kernel(`gather_v${lanes}`, () => gatherSource(lanes));
    const rowsPerWindow = gatherWindowRows(cols);
    const base = x.binding();
    for (let lo = 0; lo < nRows; lo += rowsPerWindow) {
      const hi = Math.min(nRows, lo + rowsPerWindow);
      const rowsBinding = { buffer: base.buffer, offset: (base.offset ?? 0) + lo * cols * 4, size: (hi - lo) * cols * 4 };
      runtime().dispatch(k, { x: rowsBinding, indices, out }, { batch, cols: words, nRows, lo, hi }, flatGrid(batch * words));
    }
  }
  if (needsGrad(x)) {
    record('gather', [x], [out], ([g]) => {
      if (x.size * 4 > runtime().device.limits.maxStorageBufferBindingSize) {
        throw new Error(`gather: the gradient for x [${x.shape}] would exceed the largest storage binding`);
      }
      const dx = empty(x.shape);
      if (dx.size === 0) return [dx];
      const blocks = Math.ceil(cols / SCATTER_BLOCK);
      const byIndex = batch <= nRows;
      if (byIndex) fill_(dx, 0);
      const k = byIndex ? kernel('scatterAddByIndex', scatterAddByIndexSource) : kernel('scatterAddByRow', scatterAddByRowSource);
      runtime().dispatch(k, { g: g!, indices, dx }, { batch, cols, nRows, blocks }, flatGrid((byIndex ? batch : nRows) * blocks));
      return [dx];
    });
  }
  return out;
}

/** x [R, C] -> [C, R]. */
export function transpose2d(x: Tensor): Tensor {
  if (x.rank !== 2) throw new Error(`transpose2d: needs a rank-2 tensor, got [${x.shape}]`);
  const [rows, cols] = x.shape as [number, number];
  const out = empty([cols, rows], x.dtype);
  if (out.size > 0) runtime().dispatch(kernel('transpose2d', transposeSource), { x, out }, { rows, cols }, flatGrid(out.size));
  if (needsGrad(x)) record('transpose2d', [x], [out], ([g]) => [transpose2d(g!)]);
  return out;
}
