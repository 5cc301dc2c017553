// Reductions with autograd: sum, mean and max over the last axis or over every element, and the stable
// log-sum-exp family (logsumexp, softmax, logSoftmax) over the last axis.
//
// Strategy: each row (the last axis, or every element as one row) goes to one invocation (software adapters,
// short rows) or to one workgroup with a tree merge (GPUs, long rows). Sum, mean and max cut long rows into
// chunks reduced in successive passes; logsumexp and the softmax family take one pass per row (their rows are
// categories or action dimensions, rarely more than a few thousand long).
import { kernel } from '../kernel.ts';
import { runtime } from '../runtime.ts';
import { empty, numel, reshapeStorage, type Tensor } from '../tensor.ts';
import { needsGrad, record } from '../autograd.ts';
import { flatGrid } from '../../kernels/common.ts';
import {
  rowGrid,
  rowMapSource,
  rowReduceSource,
  rowSpreadSource,
  type RowMapOp,
  type RowReduceOp,
  type RowSpreadOp,
} from '../../kernels/reduce.ts';

export interface ReduceOptions {
  /** -1: the last axis; 'all': every element (the default). */
  axis?: -1 | 'all';
  /** Keep the reduced axis (or, with 'all', every axis) as size 1. */
  keepDim?: boolean;
}

/**
 * How many invocations share one row. 'auto' picks per adapter and shape; tests and benchmarks may force one
 * strategy (1, or a power of two up to 256) to exercise it on any adapter.
 */
export const reduceTuning: { rowThreads: 'auto' | number } = { rowThreads: 'auto' };

/** Invocations per row for a row program over rows of `cols` elements. */
export function rowThreads(cols: number): number {
  if (reduceTuning.rowThreads !== 'auto') return reduceTuning.rowThreads;
  // Software adapters run a workgroup's lanes on one CPU thread, so splitting a row only adds barriers.
  if (runtime().info.adapterClass === 'software') return 1;
  return cols >= 64 ? 64 : 1;
}

function lastDim(x: Tensor): number {
  return x.rank === 0 ? 1 : x.shape[x.rank - 1]!;
}

function reducedShape(x: Tensor, axis: -1 | 'all', keepDim: boolean): number[] {
  if (axis === 'all') return keepDim && x.rank > 0 ? x.shape.map(() => 1) : [1];
  if (x.rank <= 1) return [1];
  return keepDim ? [...x.shape.slice(0, -1), 1] : x.shape.slice(0, -1);
}

function checkAxis(op: string, x: Tensor, axis: unknown): -1 | 'all' {
  if (axis === undefined || axis === 'all') return 'all';
  if (axis === -1 || (typeof axis === 'number' && x.rank > 0 && axis === x.rank - 1)) return -1;
  throw new Error(`${op}: axis ${String(axis)} is not supported for [${x.shape}]; use -1 (last axis) or 'all'`);
}

function checkF32(op: string, x: Tensor): void {
  if (x.dtype !== 'f32') throw new Error(`${op}: needs an f32 tensor, got ${x.dtype} [${x.shape}]`);
}

// ---- dispatch helpers (no gradient recording) ----

/** One pass: out[r] reduces chunk r % chunksPerRow of segment r / chunksPerRow (see rowReduceSource). */
function reducePass(op: RowReduceOp, x: Tensor, segments: number, segLen: number, chunk: number, out: Tensor, scale: number, outIndex?: Tensor, xIndex?: Tensor): void {
  const chunksPerRow = Math.max(1, Math.ceil(segLen / Math.max(chunk, 1)));
  const rows = segments * chunksPerRow;
  const threads = rowThreads(chunk);
  const k = kernel(`rowReduce_${op}_t${threads}`, () => rowReduceSource(op, threads));
  const buffers: Record<string, Tensor> = { x, out };
  if (outIndex) buffers.outIndex = outIndex;
  if (xIndex) buffers.xIndex = xIndex;
  runtime().dispatch(k, buffers, { rows, chunksPerRow, segLen, chunk, scale }, rowGrid(rows, threads));
}

// Rows longer than `final` are cut into chunks reduced by a first pass, and so on until one pass handles the
// whole row: no invocation loops over more than a few thousand elements, the work spreads over the device
// even for one long row, and summation error grows like a tree's rather than a running sum's.
function passPlan(): { chunk: number; final: number } {
  const threads = rowThreads(Number.MAX_SAFE_INTEGER);
  return threads === 1 ? { chunk: 256, final: 4096 } : { chunk: 16 * threads, final: 16 * threads };
}

/** Sum (times scale) of each of `segments` rows of segLen elements, into a [segments] tensor. */
function sumRows(x: Tensor, segments: number, segLen: number, scale: number): Tensor {
  const { chunk, final } = passPlan();
  let cur = x;
  let len = segLen;
  for (;;) {
    const single = len <= final;
    const out = empty([segments * (single ? 1 : Math.ceil(len / chunk))]);
    reducePass('sum', cur, segments, len, single ? len : chunk, out, single ? scale : 1);
    if (cur !== x) cur.dispose();
    if (single) return out;
    cur = out;
    len = Math.ceil(len / chunk);
  }
}

/** Largest element of each row and the flat index of its first occurrence, as [segments] tensors. */
function maxRows(x: Tensor, segments: number, segLen: number): { value: Tensor; index: Tensor } {
  const { chunk, final } = passPlan();
  let value = x;
  let index: Tensor | null = null;
  let len = segLen;
  for (;;) {
    const single = len <= final;
    const rows = segments * (single ? 1 : Math.ceil(len / chunk));
    const outValue = empty([rows]);
    const outIndex = empty([rows], 'u32');
    if (index) reducePass('maxPairs', value, segments, len, single ? len : chunk, outValue, 1, outIndex, index);
    else reducePass('max', value, segments, len, single ? len : chunk, outValue, 1, outIndex);
    if (value !== x) value.dispose();
    index?.dispose();
    value = outValue;
    index = outIndex;
    if (single) return { value, index };
    len = Math.ceil(len / chunk);
  }
}

function rowMap(op: RowMapOp, buffers: Record<string, Tensor>, rows: number, cols: number, out: Tensor): void {
  const threads = rowThreads(cols);
  const k = kernel(`rowMap_${op}_t${threads}`, () => rowMapSource(op, threads));
  runtime().dispatch(k, { ...buffers, out }, { rows, cols }, rowGrid(rows, threads));
}

function rowSpread(op: RowSpreadOp, shape: readonly number[], cols: number, buffers: Record<string, Tensor>, scale = 1): Tensor {
  const out = empty(shape);
  const k = kernel(`rowSpread_${op}`, () => rowSpreadSource(op));
  runtime().dispatch(k, { ...buffers, out }, { n: out.size, cols, scale }, flatGrid(out.size));
  return out;
}

// ---- ops ----

function sumLike(op: 'sum' | 'mean', x: Tensor, opts: ReduceOptions): Tensor {
  checkF32(op, x);
  const axis = checkAxis(op, x, opts.axis);
  const shape = reducedShape(x, axis, opts.keepDim ?? false);
  const cols = axis === 'all' ? x.size : lastDim(x);
  const rows = axis === 'all' ? 1 : numel(x.shape.slice(0, -1));
  const scale = op === 'mean' ? 1 / cols : 1;
  const flat = sumRows(x, rows, cols, scale);
  const out = reshapeStorage(flat, shape);
  flat.dispose();
  if (needsGrad(x)) {
    record(op, [x], [out], ([g]) => [rowSpread('sumBackward', x.shape, Math.max(cols, 1), { g: g! }, scale)]);
  }
  return out;
}

/**
 * Sum over every element (default; shape [1], or all-ones of x's rank with keepDim) or over the last axis
 * (shape [...x.shape without the last axis], or [..., 1] with keepDim; a rank-1 input gives [1] either way).
 */
export function sum(x: Tensor, opts: ReduceOptions = {}): Tensor {
  return sumLike('sum', x, opts);
}

/** Mean over every element (default) or over the last axis; shapes as for sum. The mean of nothing is NaN. */
export function mean(x: Tensor, opts: ReduceOptions = {}): Tensor {
  return sumLike('mean', x, opts);
}

/**
 * Maximum over every element (default) or over the last axis; shapes as for sum. The gradient goes to the
 * first maximal element only. NaN inputs are not propagated (comparisons with NaN are false).
 */
export function max(x: Tensor, opts: ReduceOptions = {}): Tensor {
  checkF32('max', x);
  const axis = checkAxis('max', x, opts.axis);
  if (x.size === 0) throw new Error(`max: [${x.shape}] has no elements`);
  const shape = reducedShape(x, axis, opts.keepDim ?? false);
  const cols = axis === 'all' ? x.size : lastDim(x);
  const rows = axis === 'all' ? 1 : numel(x.shape.slice(0, -1));
  const { value, index: argmax } = maxRows(x, rows, cols);
  const out = reshapeStorage(value, shape);
  value.dispose();
  if (needsGrad(x)) {
    record('max', [x], [out], ([g]) => [rowSpread('maxBackward', x.shape, cols, { g: g!, argmax })]);
  } else {
    argmax.dispose();
  }
  return out;
}

function rowsOf(op: string, x: Tensor): { rows: number; cols: number } {
  checkF32(op, x);
  const cols = lastDim(x);
  if (cols === 0) throw new Error(`${op}: the last axis of [${x.shape}] is empty`);
  return { rows: x.size / cols, cols };
}

/**
 * log(sum(exp(x))) over the last axis, computed with a running maximum so that no exp overflows; shape
 * [...x.shape without the last axis] ([1] for a rank-1 input).
 */
export function logsumexp(x: Tensor): Tensor {
  const { rows, cols } = rowsOf('logsumexp', x);
  const out = empty(reducedShape(x, -1, false));
  reducePass('logsumexp', x, rows, cols, cols, out, 1);
  if (needsGrad(x)) {
    record('logsumexp', [x], [out], ([g]) => [rowSpread('logsumexpBackward', x.shape, cols, { g: g!, x, lse: out })]);
  }
  return out;
}

/** Softmax over the last axis (stable for any offset of the row). */
export function softmax(x: Tensor): Tensor {
  const { rows, cols } = rowsOf('softmax', x);
  const out = empty(x.shape);
  rowMap('softmax', { x }, rows, cols, out);
  if (needsGrad(x)) {
    record('softmax', [x], [out], ([g]) => {
      const dx = empty(x.shape);
      rowMap('softmaxBackward', { g: g!, y: out }, rows, cols, dx);
      return [dx];
    });
  }
  return out;
}

/** log(softmax(x)) over the last axis, as x - logsumexp(x) (no log of a rounded-to-zero probability). */
export function logSoftmax(x: Tensor): Tensor {
  const { rows, cols } = rowsOf('logSoftmax', x);
  const out = empty(x.shape);
  rowMap('logSoftmax', { x }, rows, cols, out);
  if (needsGrad(x)) {
    record('logSoftmax', [x], [out], ([g]) => {
      const dx = empty(x.shape);
      rowMap('logSoftmaxBackward', { g: g!, y: out }, rows, cols, dx);
      return [dx];
    });
  }
  return out;
}
