// Fused ops outside the engine's own table: the algorithm-specific kernels (losses, noising, action
// approximations) check their inputs, dispatch a keyed kernel and put one backward on the tape, and these are
// the pieces they do it with, so that every such op reads the same way and reports bad input the same way.
import { needsGrad, record, type GradFn } from './autograd.ts';
import { kernel } from './kernel.ts';
import { rowThreads, sum } from './ops/reduce.ts';
import { runtime, type UniformArg } from './runtime.ts';
import { empty, type Tensor } from './tensor.ts';
import { rowGrid } from '../kernels/reduce.ts';

/** Throws unless t is a non-empty f32 matrix, with `rows` rows and `cols` columns where given. */
export function expectMatrix(op: string, name: string, t: Tensor, rows?: number, cols?: number): void {
  const ok = t.dtype === 'f32' && t.rank === 2 && t.size > 0 && (rows === undefined || t.shape[0] === rows) && (cols === undefined || t.shape[1] === cols);
  if (!ok) throw new Error(`${op}: ${name} must be a non-empty f32 [${rows ?? 'B'}, ${cols ?? 'D'}] tensor, got ${t.dtype} [${t.shape}]`);
}

/** Throws unless t holds one f32 value per row: [rows] or [rows, 1]. */
export function expectRows(op: string, name: string, t: Tensor, rows: number): void {
  if (t.dtype !== 'f32' || t.size !== rows || t.rank < 1 || t.rank > 2 || (t.rank === 2 && t.shape[1] !== 1)) {
    throw new Error(`${op}: ${name} must be an f32 [${rows}] or [${rows}, 1] tensor (one value per row), got ${t.dtype} [${t.shape}]`);
  }
}

/** Throws unless the first tensor is a non-empty f32 matrix and every other one is f32 of its shape. */
export function expectAlike(op: string, names: readonly string[], ts: readonly Tensor[]): void {
  const ref = ts[0]!;
  expectMatrix(op, names[0]!, ref);
  ts.forEach((t, i) => {
    if (t.dtype !== 'f32' || t.rank !== ref.rank || t.shape.some((n, d) => n !== ref.shape[d])) {
      throw new Error(`${op}: ${names[i]} is ${t.dtype} [${t.shape}], expected f32 [${ref.shape}] like ${names[0]}`);
    }
  });
}

/** Dispatches the kernel cached under `key` (its WGSL built once from `source`). */
export function launch(key: string, source: () => string, buffers: Record<string, Tensor>, uniforms: UniformArg, grid: [number, number?, number?]): void {
  runtime().dispatch(kernel(key, source), buffers, uniforms, grid);
}

/**
 * A loss over n elements as [1]: a row program (`source(threads)`, keyed `${key}_t${threads}`) sums chunks of
 * `chunk` elements into out[c] (scaled by uniforms.scale), then one sum adds the chunks when there are several.
 */
export function chunkedLoss(
  key: string,
  source: (threads: number) => string,
  buffers: Record<string, Tensor>,
  n: number,
  chunk: number,
  uniforms: Record<string, number>,
): Tensor {
  const chunks = Math.max(1, Math.ceil(n / chunk));
  const threads = rowThreads(chunk);
  const out = empty([chunks]);
  launch(`${key}_t${threads}`, () => source(threads), { ...buffers, out }, { rows: chunks, n, chunk, ...uniforms }, rowGrid(chunks, threads));
  if (chunks === 1) return out;
  const total = sum(out);
  out.dispose();
  return total;
}

/** Puts the op's backward on the tape when any input needs a gradient; returns whether it did. */
export function recordIfNeeded(op: string, inputs: Tensor[], outputs: Tensor[], backward: GradFn): boolean {
  if (!needsGrad(...inputs)) return false;
  record(op, inputs, outputs, backward);
  return true;
}
