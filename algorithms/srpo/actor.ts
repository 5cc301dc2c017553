// SRPO's deterministic actor (the paper code's Dirac_Policy): an MLP [s, hidden x layers, act] with ReLU and a
// Tanh output, so actions live in [-1, 1]^D, the box every phase trains in. ActionBox maps that box onto an
// environment's action bounds and back.
import { HostRng } from '../../engine/init.ts';
import { MLP, Module } from '../../engine/nn.ts';
import { scale } from '../../engine/ops/elementwise.ts';
import type { Tensor } from '../../engine/tensor.ts';

export class SrpoActor extends Module {
  readonly obsDim: number;
  readonly actDim: number;
  readonly net: MLP;
  /** Actions are scale * tanh(.) (1: the unit box every phase trains in). */
  readonly scale: number;

  constructor(obsDim: number, actDim: number, opts: { hidden?: number; layers?: number; scale?: number; rng?: HostRng } = {}) {
    super();
    const hidden = opts.hidden ?? 256;
    const layers = opts.layers ?? 2;
    if (!Number.isInteger(layers) || layers < 1) throw new Error(`SrpoActor: layers must be a positive integer, got ${layers}`);
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.scale = opts.scale ?? 1;
    if (!(this.scale > 0 && Number.isFinite(this.scale))) throw new Error(`SrpoActor: scale must be a positive number, got ${this.scale}`);
    this.net = this.registerModule('net', new MLP([obsDim, ...Array<number>(layers).fill(hidden), actDim], { act: 'relu', outAct: 'tanh', rng: opts.rng }));
  }

  /** a = pi(s) in [-scale, scale]^D, [B, actDim]. */
  forward(obs: Tensor): Tensor {
    if (obs.rank !== 2 || obs.shape[1] !== this.obsDim) throw new Error(`SrpoActor: obs must be [B, ${this.obsDim}], got [${obs.shape}]`);
    const a = this.net.forward(obs);
    return this.scale === 1 ? a : scale(a, this.scale);
  }
}

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
