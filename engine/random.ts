// Counter-based random numbers on the GPU. A Generator is a seed (the Philox key) plus a host-side block
// counter: a draw of n elements uses Philox blocks counter .. counter + ceil(n/4) - 1 and then advances the
// counter past them. Every element is a pure function of (seed, counter, element index), so runs reproduce
// exactly, and drawing a step's noise costs one dispatch whose only host work is its uniform values.
// The block and word layout is documented in kernels/rng.ts.
import { kernel } from './kernel.ts';
import { isStarted, runtime } from './runtime.ts';
import { empty, numel, type Tensor } from './tensor.ts';
import { rngFillSource, type RngDistribution } from '../kernels/rng.ts';
import { flatGrid } from '../kernels/common.ts';

const TWO_POW_32 = 4294967296;

/** Where a draw sits in the stream, as the uniform fields the Philox kernels read. */
export type PhiloxPosition = {
  key_lo: number;
  key_hi: number;
  base_lo: number;
  base_hi: number;
};

function checkFinite(op: string, values: Record<string, number>): void {
  for (const [name, v] of Object.entries(values)) {
    if (!Number.isFinite(v)) throw new Error(`Generator.${op}: ${name} must be finite, got ${v}`);
  }
}

export class Generator {
  /** A non-negative integer below 2^53; its low and high 32-bit words are the Philox key. */
  readonly seed: number;
  /** The next unused Philox block. May be set to replay or skip ahead. */
  counter = 0;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`Generator: seed must be an integer in [0, 2^53), got ${seed}`);
    this.seed = seed;
  }

  /** Raw Philox output words (u32), one per element. */
  bits(shape: readonly number[]): Tensor {
    return this.fill('bits', empty(shape, 'u32'), {});
  }

  /** Uniform in [lo, hi) (f32; hi itself only through rounding of lo + (hi - lo) * u). */
  uniform(shape: readonly number[], lo = 0, hi = 1): Tensor {
    return this.fillUniform_(empty(shape), lo, hi);
  }

  /** Normal with the given mean and standard deviation (f32). */
  normal(shape: readonly number[], mean = 0, std = 1): Tensor {
    return this.fillNormal_(empty(shape), mean, std);
  }

  /** Integers in [0, high) as u32, by multiply-shift (bias at most high / 2^32). */
  randint(shape: readonly number[], high: number): Tensor {
    if (!Number.isInteger(high) || high < 1 || high >= TWO_POW_32) {
      throw new Error(`Generator.randint: high must be an integer in [1, 2^32), got ${high}`);
    }
    return this.fill('randint', empty(shape, 'u32'), { high });
  }

  /** Overwrites t (f32, possibly a view) with normal values. */
  fillNormal_(t: Tensor, mean = 0, std = 1): Tensor {
    checkFinite('fillNormal_', { mean, std });
    return this.fill('normal', t, { mean, stddev: std });
  }

  /** Overwrites t (f32, possibly a view) with uniform values in [lo, hi). */
  fillUniform_(t: Tensor, lo = 0, hi = 1): Tensor {
    checkFinite('fillUniform_', { lo, hi });
    if (!(hi >= lo)) throw new Error(`Generator.fillUniform_: need lo <= hi, got [${lo}, ${hi})`);
    return this.fill('uniform', t, { lo, scale: hi - lo });
  }

  /** Philox blocks a draw of this shape consumes. */
  static blocksFor(shape: readonly number[]): number {
    return Math.ceil(numel(shape) / 4);
  }

  /**
   * Reserves the Philox blocks of a draw of n elements for a kernel that draws inline with PHILOX_WGSL, and
   * returns the uniform values naming that stretch of the stream (pass them to philox_block). Pass the object
   * itself to dispatch, in a uniform list, not copied: a recorded step re-reserves into it on every replay.
   */
  reserve(n: number): PhiloxPosition {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`Generator.reserve: n must be a non-negative integer, got ${n}`);
    const blocks = Math.ceil(n / 4);
    const position: PhiloxPosition = { key_lo: this.seed % TWO_POW_32, key_hi: Math.floor(this.seed / TWO_POW_32), base_lo: 0, base_hi: 0 };
    this.advanceInto(position, blocks);
    if (isStarted()) runtime().perStep(position, () => this.advanceInto(position, blocks));
    return position;
  }

  private advanceInto(position: PhiloxPosition, blocks: number): void {
    const base = this.counter;
    if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(base + blocks)) {
      throw new Error(`Generator: counter ${base} is not an integer in [0, 2^53) or would overflow`);
    }
    this.counter = base + blocks;
    position.base_lo = base % TWO_POW_32;
    position.base_hi = Math.floor(base / TWO_POW_32);
  }

  private fill(dist: RngDistribution, t: Tensor, extra: Record<string, number>): Tensor {
    const wantType = dist === 'bits' || dist === 'randint' ? 'u32' : 'f32';
    if (t.dtype !== wantType) throw new Error(`Generator: a ${dist} draw fills a ${wantType} tensor, got ${t.dtype} [${t.shape}]`);
    const k = kernel(`rng_${dist}`, () => rngFillSource(dist));
    const position = this.reserve(t.size);
    runtime().dispatch(k, { out: t }, [{ n: t.size, ...extra }, position], flatGrid(Math.ceil(t.size / 4)));
    return t;
  }
}
