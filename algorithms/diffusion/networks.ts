// The noise-conditioned networks of the diffusion-policy papers, as NoiseNets (x [B, D], time [B], state
// [B, S] or null -> [B, D]). Parameter names follow the original PyTorch modules' state-dict names, so a
// converted checkpoint maps over name for name:
//   DQLNoiseNet      Diffusion-QL agents/model.py MLP        time_mlp.{1,3}, mid_layer.{0,2,4}, final_layer
//   IDQLScoreNet     SRPO model.py ScoreNet_IDQL              embed.0.W, main.(fc|blocks.i.*|out_fc), cond_model.{0,2}
//   DTQLDenoiserNet  DTQL diffusion/mlps.py ScoreNetwork      embed.{1,3}, layers.layers.{0,1,3,5,7}
// Indices skip the parameterless entries (embeddings, Mish) of the originals' nn.Sequential containers.
import { globalRng, type HostRng } from '../../engine/host-rng.ts';
import { GaussianFourierProjection, Linear, MLPResNet, Module, SinusoidalPosEmb } from '../../engine/nn.ts';
import { concat } from '../../engine/ops/shape.ts';
import type { Generator } from '../../engine/random.ts';
import type { Tensor } from '../../engine/tensor.ts';
import type { NoiseNet } from './models.ts';

/** Linear layers registered under the given child indices (as inside a PyTorch Sequential), applied in order. */
class IndexedLinears extends Module {
  readonly layers: Linear[] = [];

  constructor(entries: [index: number, layer: Linear][]) {
    super();
    for (const [index, layer] of entries) {
      this.registerModule(String(index), layer);
      this.layers.push(layer);
    }
  }

  forward(x: Tensor): Tensor {
    let h = x;
    for (const l of this.layers) h = l.forward(h);
    return h;
  }
}

/**
 * Sinusoidal time embedding followed by Linear(dim, 2 dim), Mish, Linear(2 dim, dim): Diffusion-QL's time_mlp
 * and DTQL's embed (children 0: embedding, 1 and 3: the linears).
 */
class SinusoidalTimeMLP extends Module {
  readonly embedding: SinusoidalPosEmb;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(dim: number, order: 'sin-cos' | 'cos-sin', shift: 0 | 1, rng: HostRng) {
    super();
    this.embedding = this.registerModule('0', new SinusoidalPosEmb(dim, { order, shift }));
    this.fc1 = this.registerModule('1', new Linear(dim, 2 * dim, { act: 'mish', rng }));
    this.fc2 = this.registerModule('3', new Linear(2 * dim, dim, { rng }));
  }

  forward(t: Tensor): Tensor {
    return this.fc2.forward(this.fc1.forward(this.embedding.forward(t)));
  }
}

/** Checks the NoiseNet inputs against the network's dimensions; returns the batch size. */
function checkInputs(net: string, stateDim: number, actionDim: number, x: Tensor, time: Tensor, cond: Tensor | null): number {
  if (x.rank !== 2 || x.shape[1] !== actionDim) throw new Error(`${net}: x must be [B, ${actionDim}], got [${x.shape}]`);
  const rows = x.shape[0]!;
  if (!(time.rank === 1 || (time.rank === 2 && time.shape[1] === 1)) || time.shape[0] !== rows) {
    throw new Error(`${net}: time must be [${rows}] (or [${rows}, 1]) to match x [${x.shape}], got [${time.shape}]`);
  }
  if (stateDim > 0) {
    if (!cond) throw new Error(`${net}: this network is conditioned on a state of ${stateDim} values; cond is null`);
    if (cond.rank !== 2 || cond.shape[0] !== rows || cond.shape[1] !== stateDim) {
      throw new Error(`${net}: cond must be [${rows}, ${stateDim}], got [${cond.shape}]`);
    }
  } else if (cond && cond.size !== 0) {
    throw new Error(`${net}: built with stateDim 0 but given cond [${cond.shape}]`);
  }
  return rows;
}

function checkDims(net: string, stateDim: number, actionDim: number): void {
  if (!Number.isInteger(stateDim) || stateDim < 0) throw new Error(`${net}: stateDim must be a non-negative integer, got ${stateDim}`);
  if (!Number.isInteger(actionDim) || actionDim < 1) throw new Error(`${net}: actionDim must be a positive integer, got ${actionDim}`);
}

export interface DQLNoiseNetOptions {
  /** 'dql' (default): embedding [sin, cos] with frequencies exp(-i ln 1e4 / (h - 1)), input [x, t_emb, s].
   *  'edp': EDP's [cos, sin] with exp(-i ln 1e4 / h), input [s, x, t_emb]. */
  variant?: 'dql' | 'edp';
  /** Width of the hidden layers (default 256). */
  hidden?: number;
  /** Number of hidden Linear + Mish layers (default 3). */
  depth?: number;
  /** Size of the time embedding (default 16; the time MLP's inner width is twice this). */
  timeDim?: number;
  rng?: HostRng;
}

/**
 * Diffusion-QL's noise network (and EDP's, with variant 'edp'):
 *   t_emb = Linear(Mish(Linear(SinusoidalPosEmb(time))))      16 -> 32 -> 16
 *   out   = Linear(Mish(Linear(... Mish(Linear(concat)))))     depth x 256, then actionDim
 */
export class DQLNoiseNet extends Module implements NoiseNet {
  readonly stateDim: number;
  readonly actionDim: number;
  readonly variant: 'dql' | 'edp';
  readonly timeMlp: SinusoidalTimeMLP;
  readonly midLayer: IndexedLinears;
  readonly finalLayer: Linear;

  constructor(stateDim: number, actionDim: number, opts: DQLNoiseNetOptions = {}) {
    super();
    checkDims('DQLNoiseNet', stateDim, actionDim);
    const variant = opts.variant ?? 'dql';
    if (variant !== 'dql' && variant !== 'edp') throw new Error(`DQLNoiseNet: unknown variant "${String(variant)}" (dql or edp)`);
    const hidden = opts.hidden ?? 256;
    const depth = opts.depth ?? 3;
    const timeDim = opts.timeDim ?? 16;
    if (!Number.isInteger(depth) || depth < 1) throw new Error(`DQLNoiseNet: depth must be a positive integer, got ${depth}`);
    const rng = opts.rng ?? globalRng();
    this.stateDim = stateDim;
    this.actionDim = actionDim;
    this.variant = variant;
    this.timeMlp = this.registerModule(
      'time_mlp',
      variant === 'dql' ? new SinusoidalTimeMLP(timeDim, 'sin-cos', 1, rng) : new SinusoidalTimeMLP(timeDim, 'cos-sin', 0, rng),
    );
    const mid: [number, Linear][] = [];
    for (let i = 0; i < depth; i++) mid.push([2 * i, new Linear(i === 0 ? stateDim + actionDim + timeDim : hidden, hidden, { act: 'mish', rng })]);
    this.midLayer = this.registerModule('mid_layer', new IndexedLinears(mid));
    this.finalLayer = this.registerModule('final_layer', new Linear(hidden, actionDim, { rng }));
  }

  forward(x: Tensor, time: Tensor, cond: Tensor | null): Tensor {
    checkInputs('DQLNoiseNet', this.stateDim, this.actionDim, x, time, cond);
    const tEmb = this.timeMlp.forward(time);
    const s = this.stateDim > 0 ? [cond!] : [];
    const input = this.variant === 'dql' ? concat([x, tEmb, ...s]) : concat([...s, x, tEmb]);
    return this.finalLayer.forward(this.midLayer.forward(input));
  }
}

export interface IDQLScoreNetOptions {
  /** Width of the residual trunk (default 256; the blocks' inner layers are 4x). */
  hidden?: number;
  /** Residual blocks (default 3, SRPO's actor_blocks). */
  blocks?: number;
  /** Dropout rate at each block's input in training mode (default 0.1). */
  dropout?: number;
  /** Size of the Gaussian Fourier features (default 64) and the std of their fixed frequencies (default 30). */
  embedDim?: number;
  fourierScale?: number;
  /** Width of the time-conditioning MLP's layers (default 128). */
  condDim?: number;
  /** Source of dropout masks (default: seeded from rng). */
  generator?: Generator;
  rng?: HostRng;
}

/**
 * SRPO's behaviour score network ScoreNet_IDQL:
 *   t_emb = Linear(Mish(Linear(GaussianFourierProjection(time))))   64 -> 128 -> 128
 *   out   = MLPResNet(concat[x, s, t_emb])                         fc -> 3 residual blocks -> Mish -> out_fc
 * SRPO's blocks also hold an unused `residual` Linear, left out here (load its checkpoints with strict: false).
 */
export class IDQLScoreNet extends Module implements NoiseNet {
  readonly stateDim: number;
  readonly actionDim: number;
  readonly fourier: GaussianFourierProjection;
  readonly main: MLPResNet;
  readonly condModel: IndexedLinears;

  constructor(stateDim: number, actionDim: number, opts: IDQLScoreNetOptions = {}) {
    super();
    checkDims('IDQLScoreNet', stateDim, actionDim);
    const rng = opts.rng ?? globalRng();
    const embedDim = opts.embedDim ?? 64;
    const condDim = opts.condDim ?? 128;
    this.stateDim = stateDim;
    this.actionDim = actionDim;
    // registration (and initialisation) in the original's order: embed, main, cond_model
    const embed = this.registerModule('embed', new Module());
    this.fourier = embed.registerModule('0', new GaussianFourierProjection(embedDim, opts.fourierScale ?? 30, { rng }));
    this.main = this.registerModule(
      'main',
      new MLPResNet(actionDim + stateDim + condDim, actionDim, {
        hidden: opts.hidden ?? 256,
        blocks: opts.blocks ?? 3,
        dropout: opts.dropout ?? 0.1,
        layerNorm: true,
        act: 'mish',
        generator: opts.generator,
        rng,
      }),
    );
    this.condModel = this.registerModule(
      'cond_model',
      new IndexedLinears([
        [0, new Linear(embedDim, condDim, { act: 'mish', rng })],
        [2, new Linear(condDim, condDim, { rng })],
      ]),
    );
  }

  forward(x: Tensor, time: Tensor, cond: Tensor | null): Tensor {
    checkInputs('IDQLScoreNet', this.stateDim, this.actionDim, x, time, cond);
    const tEmb = this.condModel.forward(this.fourier.forward(time));
    return this.main.forward(concat(this.stateDim > 0 ? [x, cond!, tEmb] : [x, tEmb]));
  }
}

export interface DTQLDenoiserNetOptions {
  /** Width of the hidden layers (default 256; DTQL's toy tasks use 128). */
  hidden?: number;
  /** Linear + Mish layers after the first, activation-free one (default 3: DTQL's num_hidden_layers 4). */
  depth?: number;
  /** Size of the sinusoidal time embedding (default 16; DTQL's toy tasks use 4). */
  timeDim?: number;
  rng?: HostRng;
}

/**
 * DTQL's EDM network F (the `ScoreNetwork` of diffusion/mlps.py), fed c_noise = ln(sigma)/4 as its time:
 *   t_emb = Linear(Mish(Linear(SinusoidalPosEmb(time))))       Diffusion-QL's embedding
 *   out   = Linear(Mish(Linear(... Mish(Linear(Linear(concat[x, s, t_emb]))))))
 * The first Linear has no activation after it, as in the original.
 */
export class DTQLDenoiserNet extends Module implements NoiseNet {
  readonly stateDim: number;
  readonly actionDim: number;
  readonly embed: SinusoidalTimeMLP;
  readonly stack: IndexedLinears;

  constructor(stateDim: number, actionDim: number, opts: DTQLDenoiserNetOptions = {}) {
    super();
    checkDims('DTQLDenoiserNet', stateDim, actionDim);
    const hidden = opts.hidden ?? 256;
    const depth = opts.depth ?? 3;
    const timeDim = opts.timeDim ?? 16;
    if (!Number.isInteger(depth) || depth < 0) throw new Error(`DTQLDenoiserNet: depth must be a non-negative integer, got ${depth}`);
    const rng = opts.rng ?? globalRng();
    this.stateDim = stateDim;
    this.actionDim = actionDim;
    this.embed = this.registerModule('embed', new SinusoidalTimeMLP(timeDim, 'sin-cos', 1, rng));
    const entries: [number, Linear][] = [[0, new Linear(actionDim + stateDim + timeDim, hidden, { rng })]];
    for (let i = 1; i <= depth; i++) entries.push([2 * i - 1, new Linear(hidden, hidden, { act: 'mish', rng })]);
    entries.push([2 * depth + 1, new Linear(hidden, actionDim, { rng })]);
    const outer = this.registerModule('layers', new Module());
    this.stack = outer.registerModule('layers', new IndexedLinears(entries));
  }

  forward(x: Tensor, time: Tensor, cond: Tensor | null): Tensor {
    checkInputs('DTQLDenoiserNet', this.stateDim, this.actionDim, x, time, cond);
    const tEmb = this.embed.forward(time);
    return this.stack.forward(concat(this.stateDim > 0 ? [x, cond!, tEmb] : [x, tEmb]));
  }
}
