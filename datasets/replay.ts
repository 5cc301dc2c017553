// A replay store that lives on the GPU: the whole dataset (or an online ring buffer) in packed rows, sampled
// with one dispatch per minibatch and no host copy per step.
//
// Row layout (kernels/replay.ts): [obs | action | reward | next obs | not-done], float32. Stores larger than
// one storage binding are split into chunks of whole rows, each its own buffer; sampling then costs one
// dispatch per chunk (every dispatch redraws the same indices and writes only the rows it holds).
import { kernel } from '../engine/kernel.ts';
import { runtime } from '../engine/runtime.ts';
import { empty, viewOf, type Tensor } from '../engine/tensor.ts';
import type { Generator } from '../engine/random.ts';
import { flatGrid } from '../kernels/common.ts';
import { replaySampleSource } from '../kernels/replay.ts';
import type { Transitions } from './d4rl.ts';

const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST

/** Largest chunk in bytes; lowered by tests to exercise the chunked path on small stores. */
export const replayTuning: { maxChunkBytes: number | null } = { maxChunkBytes: null };

export interface ReplayBatch {
  obs: Tensor;
  actions: Tensor;
  /** [B, 1] */
  rewards: Tensor;
  nextObs: Tensor;
  /** [B, 1]: 0 where the transition terminated, else 1. */
  notDone: Tensor;
}

/** A host batch of n transitions for ReplayStore.add; dones is 1 where terminal (timeouts are not dones). */
export interface TransitionBatch {
  observations: ArrayLike<number>;
  actions: ArrayLike<number>;
  rewards: ArrayLike<number>;
  nextObservations: ArrayLike<number>;
  dones: ArrayLike<number>;
}

interface Chunk {
  buffer: GPUBuffer;
  /** First row held. */
  lo: number;
  /** One past the last row held. */
  hi: number;
}

export class ReplayStore {
  readonly capacity: number;
  readonly obsDim: number;
  readonly actDim: number;
  /** Floats per packed row. */
  readonly width: number;
  private chunks: Chunk[];
  private filled = 0;
  /** Where the next added row goes (ring order). */
  private cursor = 0;
  /** The stored row count as sampling kernels see it: refreshed on every replay of a recorded step. */
  private readonly sampleRange = { high: 0 };
  private disposed = false;

  private constructor(capacity: number, obsDim: number, actDim: number) {
    for (const [name, v] of [['capacity', capacity], ['obsDim', obsDim], ['actDim', actDim]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`ReplayStore: ${name} must be a positive integer, got ${v}`);
    }
    this.capacity = capacity;
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.width = 2 * obsDim + actDim + 2;
    const rt = runtime();
    const limits = rt.device.limits;
    const rowBytes = this.width * 4;
    const maxBytes = Math.min(replayTuning.maxChunkBytes ?? Infinity, limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const rowsPerChunk = Math.floor(maxBytes / rowBytes);
    if (rowsPerChunk < 1) throw new Error(`ReplayStore: one row of ${rowBytes} bytes exceeds the largest storage binding (${maxBytes} bytes)`);
    if (capacity >= 2 ** 32) throw new Error(`ReplayStore: capacity ${capacity} exceeds 2^32 - 1 rows`);
    this.chunks = [];
    for (let lo = 0; lo < capacity; lo += rowsPerChunk) {
      const hi = Math.min(capacity, lo + rowsPerChunk);
      const buffer = rt.device.createBuffer({ size: (hi - lo) * rowBytes, usage: STORAGE_USAGE, label: `replay[${lo},${hi})` });
      this.chunks.push({ buffer, lo, hi });
    }
  }

  /** An empty ring buffer for online training; rows are added with add(). */
  static empty(capacity: number, obsDim: number, actDim: number): ReplayStore {
    return new ReplayStore(capacity, obsDim, actDim);
  }

  /**
   * A store holding every transition (uploaded once). `capacity` (default t.size) may be larger, to keep
   * adding online rows after the offline data; once full, new rows overwrite the oldest.
   */
  static fromTransitions(t: Transitions, opts: { capacity?: number } = {}): ReplayStore {
    const capacity = opts.capacity ?? t.size;
    if (capacity < t.size) throw new Error(`ReplayStore.fromTransitions: capacity ${capacity} is below the ${t.size} transitions given`);
    if (t.size === 0) throw new Error('ReplayStore.fromTransitions: no transitions');
    const store = new ReplayStore(capacity, t.obsDim, t.actDim);
    store.add({ observations: t.observations, actions: t.actions, rewards: t.rewards, nextObservations: t.nextObservations, dones: t.dones });
    return store;
  }

  /** Rows stored (at most capacity). */
  get size(): number {
    return this.filled;
  }

  /**
   * Appends n host transitions in ring order, writing only those rows to the GPU. With more than capacity
   * rows only the last capacity are kept.
   */
  add(batch: TransitionBatch): void {
    this.checkLive('add');
    const { obsDim, actDim, width } = this;
    const n = batch.rewards.length;
    const lengths: Array<[string, number, number]> = [
      ['observations', batch.observations.length, n * obsDim],
      ['actions', batch.actions.length, n * actDim],
      ['nextObservations', batch.nextObservations.length, n * obsDim],
      ['dones', batch.dones.length, n],
    ];
    for (const [name, got, want] of lengths) {
      if (got !== want) throw new Error(`ReplayStore.add: ${name} has ${got} values, expected ${want} for ${n} transitions (obsDim ${obsDim}, actDim ${actDim})`);
    }
    if (n === 0) return;
    const skip = Math.max(0, n - this.capacity);
    const count = n - skip;
    const packed = new Float32Array(count * width);
    for (let k = 0; k < count; k++) {
      const i = k + skip;
      const row = k * width;
      for (let c = 0; c < obsDim; c++) packed[row + c] = batch.observations[i * obsDim + c]!;
      for (let c = 0; c < actDim; c++) packed[row + obsDim + c] = batch.actions[i * actDim + c]!;
      packed[row + obsDim + actDim] = batch.rewards[i]!;
      for (let c = 0; c < obsDim; c++) packed[row + obsDim + actDim + 1 + c] = batch.nextObservations[i * obsDim + c]!;
      const done = batch.dones[i]!;
      if (done !== 0 && done !== 1) throw new Error(`ReplayStore.add: dones must be 0 or 1, got ${done} at transition ${i}`);
      packed[row + width - 1] = 1 - done;
    }
    for (let i = 0; i < packed.length; i++) {
      if (!Number.isFinite(packed[i]!)) {
        throw new Error(`ReplayStore.add: transition ${skip + Math.floor(i / width)} holds ${packed[i]} (${this.fieldOf(i % width)})`);
      }
    }
    // Rows [cursor, cursor + count) modulo capacity, cut at the ring's end and at chunk boundaries.
    let written = 0;
    while (written < count) {
      const row = (this.cursor + written) % this.capacity;
      const chunk = this.chunks.find((c) => row >= c.lo && row < c.hi)!;
      const rows = Math.min(count - written, chunk.hi - row);
      const part = packed.subarray(written * width, (written + rows) * width);
      runtime().write(chunk.buffer, (row - chunk.lo) * width * 4, part);
      written += rows;
    }
    this.cursor = (this.cursor + count) % this.capacity;
    this.filled = Math.min(this.capacity, this.filled + count);
  }

  private fieldOf(column: number): string {
    const { obsDim, actDim } = this;
    if (column < obsDim) return `observation ${column}`;
    if (column < obsDim + actDim) return `action ${column - obsDim}`;
    if (column === obsDim + actDim) return 'reward';
    if (column < 2 * obsDim + actDim + 1) return `next observation ${column - obsDim - actDim - 1}`;
    return 'done';
  }

  /**
   * A minibatch of `batch` rows drawn uniformly (with replacement) from the stored rows, gathered on the GPU.
   * The indices are those gen.randint([batch], size) would return at the same stream position, and the
   * generator advances by the same amount. A recorded step that samples keeps drawing from all stored rows as
   * the store grows (online training): the row count is a per-step value, and every chunk is dispatched.
   */
  sample(batch: number, gen: Generator): ReplayBatch {
    this.checkLive('sample');
    if (!Number.isInteger(batch) || batch < 1) throw new Error(`ReplayStore.sample: batch must be a positive integer, got ${batch}`);
    if (this.filled === 0) throw new Error('ReplayStore.sample: the store is empty');
    const { obsDim, actDim, width } = this;
    const out: ReplayBatch = {
      obs: empty([batch, obsDim]),
      actions: empty([batch, actDim]),
      rewards: empty([batch, 1]),
      nextObs: empty([batch, obsDim]),
      notDone: empty([batch, 1]),
    };
    const position = gen.reserve(batch);
    const k = kernel('replay_sample', replaySampleSource);
    const rt = runtime();
    const range = this.sampleRange;
    range.high = this.filled;
    rt.perStep(range, () => {
      if (this.filled === 0) throw new Error('ReplayStore.sample: the store is empty');
      range.high = this.filled;
    });
    for (const chunk of this.chunks) {
      // a chunk beyond the stored rows writes nothing, but a recorded step may replay once rows reach it
      if (chunk.lo >= this.filled && !rt.isRecording) break;
      rt.dispatch(
        k,
        { rows: { buffer: chunk.buffer, offset: 0, size: chunk.buffer.size }, ...out },
        [{ batch, obsDim, actDim, width, lo: chunk.lo, hi: chunk.hi }, range, position],
        flatGrid(batch * width),
      );
    }
    return out;
  }

  /** Where the next added row goes (ring order): equals size until the ring is full, then wraps. */
  get position(): number {
    return this.cursor;
  }

  /**
   * The stored rows [0, size) as views over the store's buffers, one [rows, width] tensor per chunk holding any,
   * packed as the row layout above. Reading them copies the store out (a checkpoint); setting them writes rows
   * back after restoreState. The views do not own the buffers and stay valid until the store is disposed.
   */
  storedRows(): Tensor[] {
    this.checkLive('storedRows');
    const out: Tensor[] = [];
    for (const c of this.chunks) {
      const rows = Math.min(c.hi, this.filled) - c.lo;
      if (rows > 0) out.push(viewOf(c.buffer, 0, [rows, this.width]));
    }
    return out;
  }

  /**
   * Declares `size` rows stored and the ring at `position`, for restoring a checkpoint: the rows themselves are
   * written through storedRows() afterwards.
   */
  restoreState(size: number, position: number): void {
    this.checkLive('restoreState');
    if (!Number.isInteger(size) || size < 0 || size > this.capacity) throw new Error(`ReplayStore.restoreState: size must be an integer in [0, ${this.capacity}], got ${size}`);
    const valid = size < this.capacity ? position === size : Number.isInteger(position) && position >= 0 && position < this.capacity;
    if (!valid) throw new Error(`ReplayStore.restoreState: position ${position} is impossible with ${size} of ${this.capacity} rows stored`);
    this.filled = size;
    this.cursor = position;
  }

  /** Frees the GPU buffers. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // Work already encoded may still read the rows: submit it before the buffers go.
    runtime().flush();
    for (const c of this.chunks) c.buffer.destroy();
    this.chunks = [];
  }

  private checkLive(op: string): void {
    if (this.disposed) throw new Error(`ReplayStore.${op}: the store has been disposed`);
  }
}
