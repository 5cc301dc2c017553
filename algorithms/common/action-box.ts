/**
 * The affine map between [-1, 1]^D (where the models work) and an environment's box [low, high]^D. Dataset
 * actions are mapped in (and clipped to the box, as recorded policy outputs may overshoot it); actor actions
 * are mapped out.
 */
export class ActionBox {
  readonly low: Float64Array;
  readonly high: Float64Array;

  constructor(low: ArrayLike<number>, high: ArrayLike<number>) {
    if (low.length !== high.length || low.length === 0) throw new Error(`ActionBox: low and high must have the same non-zero length, got ${low.length} and ${high.length}`);
    this.low = Float64Array.from(low);
    this.high = Float64Array.from(high);
    for (let i = 0; i < this.low.length; i++) {
      if (!(this.high[i]! > this.low[i]!) || !Number.isFinite(this.low[i]!) || !Number.isFinite(this.high[i]!)) {
        throw new Error(`ActionBox: dimension ${i} has bounds [${this.low[i]}, ${this.high[i]}]; need finite low < high`);
      }
    }
  }

  get dim(): number {
    return this.low.length;
  }

  /** Row-major actions in the box to [-1, 1], clipped; returns the mapped copy and how many values were clipped. */
  toUnit(actions: Float32Array): { actions: Float32Array; clipped: number } {
    const D = this.dim;
    if (actions.length % D !== 0) throw new Error(`ActionBox.toUnit: ${actions.length} values are not rows of ${D}`);
    const out = new Float32Array(actions.length);
    let clipped = 0;
    for (let i = 0; i < actions.length; i++) {
      const d = i % D;
      const u = (2 * (actions[i]! - this.low[d]!)) / (this.high[d]! - this.low[d]!) - 1;
      // float rounding of a value exactly on the bound is not clipping
      if (u > 1 + 1e-6 || u < -1 - 1e-6) clipped++;
      out[i] = Math.min(1, Math.max(-1, u));
    }
    return { actions: out, clipped };
  }

  /** Row-major actions in [-1, 1] to the box. */
  fromUnit(actions: Float32Array): Float32Array {
    const D = this.dim;
    const out = new Float32Array(actions.length);
    for (let i = 0; i < actions.length; i++) {
      const d = i % D;
      out[i] = this.low[d]! + ((actions[i]! + 1) * (this.high[d]! - this.low[d]!)) / 2;
    }
    return out;
  }
}
