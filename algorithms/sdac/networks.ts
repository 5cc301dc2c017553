// SDAC's noise network (the DACERPolicyNet of the paper's code): a scaled sinusoidal embedding of the integer
// diffusion step through Linear(16 -> 32), Mish, Linear(32 -> 16), joined with the state and the noisy action,
// then `depth` Linear + Mish layers and a linear head of the action's size.
import { globalRng, type HostRng } from '../../engine/init.ts';
import { Linear, MLP, Module, SinusoidalPosEmb } from '../../engine/nn.ts';
import { scale } from '../../engine/ops/elementwise.ts';
import { concat } from '../../engine/ops/shape.ts';
import type { Tensor } from '../../engine/tensor.ts';
import type { NoiseNet } from '../diffusion/models.ts';

export interface SDACNoiseNetOptions {
  /** Width of the hidden layers (default 256). */
  hidden?: number;
  /** Hidden Linear + Mish layers (default 3). */
  depth?: number;
  /** Size of the time embedding (default 16; the time MLP's inner width is twice this). */
  timeDim?: number;
  rng?: HostRng;
}

/**
 * eps_theta(x, k, s): the embedding is [sin(k f), cos(k f)] / sqrt(timeDim) with f_i = 10^4^(-i / (timeDim/2)),
 * and the trunk sees concat[s, x, t_emb].
 */
export class SDACNoiseNet extends Module implements NoiseNet {
  readonly stateDim: number;
  readonly actionDim: number;
  readonly timeDim: number;
  readonly embedding: SinusoidalPosEmb;
  readonly timeFc1: Linear;
  readonly timeFc2: Linear;
  readonly trunk: MLP;

  constructor(stateDim: number, actionDim: number, opts: SDACNoiseNetOptions = {}) {
    super();
    for (const [name, v] of [['stateDim', stateDim], ['actionDim', actionDim]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`SDACNoiseNet: ${name} must be a positive integer, got ${v}`);
    }
    const hidden = opts.hidden ?? 256;
    const depth = opts.depth ?? 3;
    const timeDim = opts.timeDim ?? 16;
    if (!Number.isInteger(hidden) || hidden < 1) throw new Error(`SDACNoiseNet: hidden must be a positive integer, got ${hidden}`);
    if (!Number.isInteger(depth) || depth < 1) throw new Error(`SDACNoiseNet: depth must be a positive integer, got ${depth}`);
    const rng = opts.rng ?? globalRng();
    this.stateDim = stateDim;
    this.actionDim = actionDim;
    this.timeDim = timeDim;
    this.embedding = new SinusoidalPosEmb(timeDim, { order: 'sin-cos', shift: 0 });
    this.timeFc1 = this.registerModule('time_fc1', new Linear(timeDim, 2 * timeDim, { act: 'mish', rng }));
    this.timeFc2 = this.registerModule('time_fc2', new Linear(2 * timeDim, timeDim, { rng }));
    const widths = [stateDim + actionDim + timeDim, ...Array.from({ length: depth }, () => hidden), actionDim];
    this.trunk = this.registerModule('trunk', new MLP(widths, { act: 'mish', rng }));
  }

  forward(x: Tensor, time: Tensor, cond: Tensor | null): Tensor {
    if (x.rank !== 2 || x.shape[1] !== this.actionDim) throw new Error(`SDACNoiseNet: x must be [B, ${this.actionDim}], got [${x.shape}]`);
    const rows = x.shape[0]!;
    if (!cond || cond.rank !== 2 || cond.shape[0] !== rows || cond.shape[1] !== this.stateDim) {
      throw new Error(`SDACNoiseNet: cond must be [${rows}, ${this.stateDim}], got ${cond ? `[${cond.shape}]` : 'null'}`);
    }
    if (time.shape[0] !== rows || time.size !== rows) throw new Error(`SDACNoiseNet: time must be [${rows}], got [${time.shape}]`);
    const emb = scale(this.embedding.forward(time), 1 / Math.sqrt(this.timeDim));
    const tEmb = this.timeFc2.forward(this.timeFc1.forward(emb));
    return this.trunk.forward(concat([cond, x, tEmb]));
  }
}
