// SDAC's noise network (the DACERPolicyNet of the paper's code): a scaled sinusoidal embedding of the integer
// diffusion step through Linear(16 -> 32), Mish, Linear(32 -> 16), joined with the state and the noisy action,
// then `depth` Linear + Mish layers and a linear head of the action's size.
import { needsGrad, noGrad } from '../../engine/autograd.ts';
import { globalRng, type HostRng } from '../../engine/host-rng.ts';
import { launch } from '../../engine/fused.ts';
import { Linear, MLP, Module, SinusoidalPosEmb } from '../../engine/nn.ts';
import { scale } from '../../engine/ops/elementwise.ts';
import { linear } from '../../engine/ops/matmul.ts';
import { concat, slice } from '../../engine/ops/shape.ts';
import { empty, type Tensor } from '../../engine/tensor.ts';
import { flatGrid } from '../../kernels/common.ts';
import { chainFirstLayerSource } from '../../kernels/sdac.ts';
import type { NoiseNet } from '../diffusion/models.ts';
import type { DiscreteEpsModel } from '../diffusion/samplers.ts';
import type { DiscreteSchedule } from '../diffusion/schedules.ts';

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
    return this.trunk.forward(concat([cond, x, this.timeEmbedding(time)]));
  }

  /** The time MLP's output for steps `time` [n]: [n, timeDim]. */
  timeEmbedding(time: Tensor): Tensor {
    const emb = scale(this.embedding.forward(time), 1 / Math.sqrt(this.timeDim));
    return this.timeFc2.forward(this.timeFc1.forward(emb));
  }
}

/**
 * mish(base + stepShare[step] + x W[:, xOffset : xOffset + A]^T): the first trunk layer at one step of a chain,
 * x [R, A], weight [H, inF], base [R, H], stepShare [T, H]. No gradient (sampling only).
 */
export function chainFirstLayer(x: Tensor, weight: Tensor, base: Tensor, stepShare: Tensor, step: number, xOffset: number): Tensor {
  const [rows, A] = x.shape as [number, number];
  const [hidden, inF] = weight.shape as [number, number];
  if (x.rank !== 2 || weight.rank !== 2 || xOffset + A > inF) throw new Error(`chainFirstLayer: x [${x.shape}] does not fit weight [${weight.shape}] at column ${xOffset}`);
  if (base.size !== rows * hidden) throw new Error(`chainFirstLayer: base [${base.shape}] should be [${rows}, ${hidden}]`);
  if (stepShare.rank !== 2 || stepShare.shape[1] !== hidden || !(step >= 0 && step < stepShare.shape[0]!)) {
    throw new Error(`chainFirstLayer: step ${step} of stepShare [${stepShare.shape}] (hidden ${hidden})`);
  }
  if (needsGrad(x, weight, base, stepShare)) throw new Error('chainFirstLayer: sampling only; no gradient');
  const out = empty([rows, hidden]);
  const n = rows * hidden;
  if (n > 0) {
    const vec4 = hidden % 4 === 0;
    launch(
      `sdac_chainFirstLayer_${vec4 ? 'v4' : 's'}`,
      () => chainFirstLayerSource(vec4),
      { x, weight, base, stepShare, out },
      { rows, hidden, actDim: A, inF, xOffset, step },
      flatGrid(vec4 ? n / 4 : n),
    );
  }
  return out;
}

/**
 * eps_theta of one reverse chain at fixed states `cond` [R, S]: the state's share of the first layer and every
 * step's time-embedding share are computed once, so a step costs one fused first layer plus the rest of the
 * trunk. The same function as net.forward (up to the order of f32 sums). `stepTimes` is [T] holding 0..T-1.
 */
export class SDACChainModel implements DiscreteEpsModel {
  readonly schedule: DiscreteSchedule;
  readonly maxAction: number;
  private readonly net: SDACNoiseNet;
  private readonly cond: Tensor;
  private readonly base: Tensor;
  private readonly stepShare: Tensor;

  constructor(net: SDACNoiseNet, schedule: DiscreteSchedule, maxAction: number, cond: Tensor, stepTimes: Tensor) {
    if (stepTimes.size !== schedule.steps) throw new Error(`SDACChainModel: stepTimes has ${stepTimes.size} entries for ${schedule.steps} steps`);
    this.net = net;
    this.schedule = schedule;
    this.maxAction = maxAction;
    this.cond = cond;
    const first = net.trunk.layers.layers[0] as Linear;
    const S = net.stateDim;
    const A = net.actionDim;
    [this.base, this.stepShare] = noGrad(() => [
      linear(cond, slice(first.weight, 0, S, 1), first.bias),
      linear(net.timeEmbedding(stepTimes), slice(first.weight, S + A, S + A + net.timeDim, 1), null),
    ]);
  }

  epsAtStep(x: Tensor, k: number, cond: Tensor | null): Tensor {
    if (cond !== this.cond) throw new Error('SDACChainModel: built for other states');
    return noGrad(() => {
      const layers = this.net.trunk.layers.layers;
      let h = chainFirstLayer(x, (layers[0] as Linear).weight, this.base, this.stepShare, k, this.net.stateDim);
      for (let i = 1; i < layers.length; i++) h = layers[i]!.forward(h);
      return h;
    });
  }
}
