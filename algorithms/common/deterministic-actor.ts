// A deterministic actor: an MLP [s, hidden x layers, act] with ReLU and a Tanh output, so actions live in
// [-1, 1]^D (SRPO's Dirac policy, and the MSE-fitted behaviour-cloning baseline every offline command reports).
import { HostRng } from '../../engine/host-rng.ts';
import { MLP, Module } from '../../engine/nn.ts';
import { scale } from '../../engine/ops/elementwise.ts';
import type { Tensor } from '../../engine/tensor.ts';

export class DeterministicActor extends Module {
  readonly obsDim: number;
  readonly actDim: number;
  readonly net: MLP;
  /** Actions are scale * tanh(.) (1: the unit box every phase trains in). */
  readonly scale: number;

  constructor(obsDim: number, actDim: number, opts: { hidden?: number; layers?: number; scale?: number; rng?: HostRng } = {}) {
    super();
    const hidden = opts.hidden ?? 256;
    const layers = opts.layers ?? 2;
    if (!Number.isInteger(layers) || layers < 1) throw new Error(`DeterministicActor: layers must be a positive integer, got ${layers}`);
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.scale = opts.scale ?? 1;
    if (!(this.scale > 0 && Number.isFinite(this.scale))) throw new Error(`DeterministicActor: scale must be a positive number, got ${this.scale}`);
    this.net = this.registerModule('net', new MLP([obsDim, ...Array<number>(layers).fill(hidden), actDim], { act: 'relu', outAct: 'tanh', rng: opts.rng }));
  }

  /** a = pi(s) in [-scale, scale]^D, [B, actDim]. */
  forward(obs: Tensor): Tensor {
    if (obs.rank !== 2 || obs.shape[1] !== this.obsDim) throw new Error(`DeterministicActor: obs must be [B, ${this.obsDim}], got [${obs.shape}]`);
    const a = this.net.forward(obs);
    return this.scale === 1 ? a : scale(a, this.scale);
  }
}
