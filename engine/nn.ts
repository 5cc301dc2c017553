// Neural-network modules in the PyTorch mould: a module owns named parameters, named buffers (state that is
// saved but not trained) and named child modules, and names everything by dotted paths ("layers.0.weight")
// so checkpoints line up with the usual state-dict names. Parameters are drawn on the host from a seeded
// generator (engine/host-rng.ts), so a network is reproducible from manualSeed() or an explicit HostRng.
import { noGrad } from './autograd.ts';
import { copy_ } from './basic.ts';
import { globalRng, type HostRng } from './host-rng.ts';
import { normalArray, orthogonal, torchLinearInit } from './initializers.ts';
import { activation, add } from './ops/elementwise.ts';
import { dropout } from './ops/dropout.ts';
import { fourierFeatures, type FourierOrder } from './ops/fourier.ts';
import { layerNorm } from './ops/layernorm.ts';
import { linear } from './ops/matmul.ts';
import { reshape } from './ops/shape.ts';
import { ParamGroup, parameter, type NamedTensor } from './params.ts';
import { Generator } from './random.ts';
import { keep, tensor, type Tensor } from './tensor.ts';
import type { Activation } from '../kernels/common.ts';

export type { Activation, NamedTensor };

export class Module {
  /** Whether the module is in training mode (dropout active); set for the whole tree by train()/eval(). */
  training = true;
  private readonly ownParameters = new Map<string, Tensor>();
  private readonly ownBuffers = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();
  private group: ParamGroup | null = null;

  private checkName(name: string): void {
    if (!name || name.includes('.')) throw new Error(`${this.constructor.name}: invalid member name "${name}" (non-empty, no dots)`);
    if (this.ownParameters.has(name) || this.ownBuffers.has(name) || this.children.has(name)) {
      throw new Error(`${this.constructor.name}: "${name}" is already registered`);
    }
    if (this.group) throw new Error(`${this.constructor.name}: cannot register "${name}" after paramGroup() packed the parameters`);
  }

  /** Registers a trainable tensor (requiresGrad, outlives tidy scopes) under a local name. */
  registerParameter(name: string, t: Tensor): Tensor {
    this.checkName(name);
    keep(t);
    t.requiresGrad = true;
    this.ownParameters.set(name, t);
    return t;
  }

  /** Registers state that is saved and loaded with the module but not trained (e.g. fixed random features). */
  registerBuffer(name: string, t: Tensor): Tensor {
    this.checkName(name);
    keep(t);
    this.ownBuffers.set(name, t);
    return t;
  }

  registerModule<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    this.children.set(name, m);
    return m;
  }

  /** Direct children in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.children];
  }

  /** Parameters of this module and its descendants, own first, then each child's in registration order. */
  namedParameters(prefix = ''): NamedTensor[] {
    return this.collect(prefix, 'parameters');
  }

  namedBuffers(prefix = ''): NamedTensor[] {
    return this.collect(prefix, 'buffers');
  }

  /** Everything a checkpoint holds, in state-dict order: per module its parameters, its buffers, then children. */
  namedTensors(prefix = ''): NamedTensor[] {
    return this.collect(prefix, 'all');
  }

  private collect(prefix: string, what: 'parameters' | 'buffers' | 'all'): NamedTensor[] {
    const out: NamedTensor[] = [];
    const seen = new Set<Tensor>();
    const visit = (m: Module, path: string) => {
      const add = (map: Map<string, Tensor>) => {
        for (const [name, t] of map) {
          // a tensor shared between modules appears once, under its first name
          if (seen.has(t)) continue;
          seen.add(t);
          out.push({ name: path + name, tensor: t });
        }
      };
      if (what !== 'buffers') add(m.ownParameters);
      if (what !== 'parameters') add(m.ownBuffers);
      for (const [name, child] of m.children) visit(child, `${path}${name}.`);
    };
    visit(this, prefix ? `${prefix}.` : '');
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map((e) => e.tensor);
  }

  /** Total number of trainable scalars. */
  numParameters(): number {
    return this.parameters().reduce((s, t) => s + t.size, 0);
  }

  /** Sets training mode on this module and every descendant. */
  train(mode = true): this {
    this.training = mode;
    for (const child of this.children.values()) child.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * All parameters packed into one flat ParamGroup (built on the first call, then cached), for the optimiser,
   * gradient clipping and target-network updates. A parameter can live in one group only, so build the group
   * on the outermost module that one optimiser steps.
   */
  paramGroup(): ParamGroup {
    if (this.group) return this.group;
    const entries = this.namedParameters();
    for (const e of entries) {
      if (e.tensor.gradSlot) {
        throw new Error(`${this.constructor.name}.paramGroup(): parameter "${e.name}" is already packed in another group (built on a submodule?)`);
      }
    }
    this.group = new ParamGroup(entries);
    return this.group;
  }

  /** Copies every parameter and buffer from a module of the same structure (e.g. to initialise a target network). */
  copyFrom(source: Module): void {
    const mine = this.namedTensors();
    const theirs = new Map(source.namedTensors().map((e) => [e.name, e.tensor]));
    const problems: string[] = [];
    for (const { name, tensor: t } of mine) {
      const s = theirs.get(name);
      if (!s) problems.push(`source lacks "${name}"`);
      else if (s.shape.join() !== t.shape.join()) problems.push(`"${name}": source [${s.shape}] vs [${t.shape}]`);
    }
    if (mine.length !== theirs.size) problems.push(`source has ${theirs.size} tensors, this module ${mine.length}`);
    if (problems.length) throw new Error(`copyFrom: modules differ:\n  ${problems.join('\n  ')}`);
    noGrad(() => {
      for (const { name, tensor: t } of mine) copy_(t, theirs.get(name)!);
    });
  }
}

/** A module mapping one tensor to one tensor (what Sequential chains). */
export interface Layer extends Module {
  forward(x: Tensor): Tensor;
}

/** Children named "0", "1", ... applied in order. */
export class Sequential extends Module {
  readonly layers: Layer[];

  constructor(layers: Layer[] = []) {
    super();
    this.layers = [];
    for (const l of layers) this.append(l);
  }

  append(layer: Layer): this {
    this.registerModule(String(this.layers.length), layer);
    this.layers.push(layer);
    return this;
  }

  get length(): number {
    return this.layers.length;
  }

  forward(x: Tensor): Tensor {
    let h = x;
    for (const l of this.layers) h = l.forward(h);
    return h;
  }
}

/** Applies a 2-D op to the last axis of a tensor of any rank >= 1 by flattening the leading axes. */
function overLastAxis(x: Tensor, op: (x2: Tensor) => Tensor): Tensor {
  if (x.rank === 2) return op(x);
  if (x.rank === 0) throw new Error(`expected a tensor of rank >= 1, got a scalar`);
  const last = x.shape[x.rank - 1]!;
  const y = op(reshape(x, [-1, last]));
  return reshape(y, [...x.shape.slice(0, -1), y.shape[1]!]);
}

export type LinearInit = 'torch' | 'orthogonal';

export interface LinearOptions {
  bias?: boolean;
  /** Activation fused into the layer's kernel. */
  act?: Activation;
  /** 'torch': PyTorch's default U(+-1/sqrt(inF)) for weight and bias; 'orthogonal': orthogonal weight times gain, zero bias. */
  init?: LinearInit;
  gain?: number;
  rng?: HostRng;
}

/** y = act(x W^T + b), W of shape [outF, inF] as in PyTorch. */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly act: Activation;
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(inFeatures: number, outFeatures: number, opts: LinearOptions = {}) {
    super();
    if (!Number.isInteger(inFeatures) || inFeatures < 1 || !Number.isInteger(outFeatures) || outFeatures < 1) {
      throw new Error(`Linear: feature counts must be positive integers, got ${inFeatures} -> ${outFeatures}`);
    }
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.act = opts.act ?? 'identity';
    const rng = opts.rng ?? globalRng();
    const init = opts.init ?? 'torch';
    let w: Float32Array;
    let b: Float32Array;
    if (init === 'torch') {
      ({ weight: w, bias: b } = torchLinearInit(inFeatures, outFeatures, rng));
    } else if (init === 'orthogonal') {
      w = orthogonal(outFeatures, inFeatures, opts.gain ?? 1, rng);
      b = new Float32Array(outFeatures);
    } else {
      throw new Error(`Linear: unknown init "${String(init)}"`);
    }
    this.weight = this.registerParameter('weight', parameter(w, [outFeatures, inFeatures]));
    this.bias = (opts.bias ?? true) ? this.registerParameter('bias', parameter(b, [outFeatures])) : null;
  }

  forward(x: Tensor): Tensor {
    if (x.shape[x.rank - 1] !== this.inFeatures) {
      throw new Error(`Linear(${this.inFeatures} -> ${this.outFeatures}): input [${x.shape}] does not end in ${this.inFeatures}`);
    }
    return overLastAxis(x, (x2) => linear(x2, this.weight, this.bias, this.act));
  }
}

export interface MLPOptions {
  /** Activation after every hidden layer. */
  act?: Activation;
  /** Activation after the last layer. */
  outAct?: Activation;
  bias?: boolean;
  init?: LinearInit;
  gain?: number;
  /** LayerNorm between each hidden Linear and its activation (as in DTQL's critic); unfuses the activation. */
  layerNorm?: boolean;
  rng?: HostRng;
}

/**
 * widths[0] -> widths[1] -> ... -> widths[n]: Linear layers with `act` between them and `outAct` at the end.
 * Names: layers.<i>.weight / .bias (and norms.<i>.weight / .bias with layerNorm).
 */
export class MLP extends Module {
  readonly widths: readonly number[];
  readonly act: Activation;
  readonly layers: Sequential;
  readonly norms: LayerNorm[];

  constructor(widths: readonly number[], opts: MLPOptions = {}) {
    super();
    if (widths.length < 2) throw new Error(`MLP: needs at least an input and an output width, got [${widths}]`);
    this.widths = [...widths];
    this.act = opts.act ?? 'relu';
    const rng = opts.rng ?? globalRng();
    const outAct = opts.outAct ?? 'identity';
    const n = widths.length - 1;
    this.layers = this.registerModule('layers', new Sequential());
    this.norms = [];
    const normList = opts.layerNorm ? this.registerModule('norms', new Sequential()) : null;
    for (let i = 0; i < n; i++) {
      const last = i === n - 1;
      const act = last ? outAct : normList ? 'identity' : this.act;
      const lin = new Linear(widths[i]!, widths[i + 1]!, { act, bias: opts.bias, init: opts.init, gain: opts.gain, rng });
      this.layers.append(lin);
      if (normList && !last) {
        const norm = new LayerNorm(widths[i + 1]!);
        normList.append(norm);
        this.norms.push(norm);
      }
    }
  }

  forward(x: Tensor): Tensor {
    let h = x;
    const layers = this.layers.layers;
    for (let i = 0; i < layers.length; i++) {
      h = layers[i]!.forward(h);
      const norm = this.norms[i];
      if (norm && i < layers.length - 1) h = activation(norm.forward(h), this.act);
    }
    return h;
  }
}

export interface LayerNormOptions {
  eps?: number;
  /** Learnable per-feature scale (weight, ones) and shift (bias, zeros). */
  affine?: boolean;
}

/** Normalises the last axis to zero mean and unit variance (biased variance, eps inside the sqrt), as PyTorch. */
export class LayerNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;

  constructor(dim: number, opts: LayerNormOptions = {}) {
    super();
    this.dim = dim;
    this.eps = opts.eps ?? 1e-5;
    if (opts.affine ?? true) {
      this.weight = this.registerParameter('weight', parameter(new Float32Array(dim).fill(1), [dim]));
      this.bias = this.registerParameter('bias', parameter(new Float32Array(dim), [dim]));
    } else {
      this.weight = null;
      this.bias = null;
    }
  }

  forward(x: Tensor): Tensor {
    if (x.shape[x.rank - 1] !== this.dim) throw new Error(`LayerNorm(${this.dim}): input [${x.shape}] does not end in ${this.dim}`);
    return overLastAxis(x, (x2) => layerNorm(x2, this.weight, this.bias, this.eps));
  }
}

/**
 * Inverted dropout: in training zeroes each element with probability p and scales the rest by 1/(1-p); in
 * eval returns its input unchanged. The mask comes from the generator, so a seeded run reproduces it.
 */
export class Dropout extends Module {
  readonly p: number;
  readonly generator: Generator;

  constructor(p: number, generator: Generator) {
    super();
    if (!(p >= 0 && p <= 1)) throw new Error(`Dropout: p must be in [0, 1], got ${p}`);
    this.p = p;
    this.generator = generator;
  }

  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    return dropout(x, this.p, this.generator);
  }
}

export interface ResidualBlockOptions {
  act?: Activation;
  /** Dropout rate on the block's input branch; 0 disables it. */
  dropout?: number;
  layerNorm?: boolean;
  /** Width of the inner layer as a multiple of the features. */
  expansion?: number;
  /** Source of dropout masks; by default one seeded from the init generator. */
  generator?: Generator;
  rng?: HostRng;
}

/**
 * The MLP ResNet block of IDQL and SRPO (ScoreNet_IDQL):
 *   x + fc2(act(fc1(LayerNorm(Dropout(x))))), fc1: F -> 4F, fc2: 4F -> F.
 * Names follow SRPO's module: layer_norm, fc1, fc2. (SRPO also creates an unused `residual` Linear; load its
 * checkpoints with strict: false.)
 */
export class ResidualBlock extends Module {
  readonly features: number;
  readonly dropout: Dropout | null;
  readonly norm: LayerNorm | null;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(features: number, opts: ResidualBlockOptions = {}) {
    super();
    this.features = features;
    const rng = opts.rng ?? globalRng();
    const rate = opts.dropout ?? 0.1;
    const hidden = features * (opts.expansion ?? 4);
    this.dropout = rate > 0 ? this.registerModule('dropout', new Dropout(rate, opts.generator ?? new Generator(rng.nextU32()))) : null;
    this.norm = (opts.layerNorm ?? true) ? this.registerModule('layer_norm', new LayerNorm(features)) : null;
    this.fc1 = this.registerModule('fc1', new Linear(features, hidden, { act: opts.act ?? 'mish', rng }));
    this.fc2 = this.registerModule('fc2', new Linear(hidden, features, { rng }));
  }

  forward(x: Tensor): Tensor {
    let h = x;
    if (this.dropout) h = this.dropout.forward(h);
    if (this.norm) h = this.norm.forward(h);
    return add(x, this.fc2.forward(this.fc1.forward(h)));
  }
}

export interface MLPResNetOptions {
  hidden?: number;
  blocks?: number;
  act?: Activation;
  dropout?: number;
  layerNorm?: boolean;
  generator?: Generator;
  rng?: HostRng;
}

/**
 * The IDQL / SRPO noise network trunk: fc (in -> hidden), `blocks` residual blocks, act, out_fc (hidden -> out).
 * Defaults as SRPO's ScoreNet_IDQL: hidden 256, 3 blocks, Mish, dropout 0.1, LayerNorm.
 */
export class MLPResNet extends Module {
  readonly fc: Linear;
  readonly blocks: Sequential;
  readonly outFc: Linear;
  readonly act: Activation;

  constructor(inDim: number, outDim: number, opts: MLPResNetOptions = {}) {
    super();
    const rng = opts.rng ?? globalRng();
    const hidden = opts.hidden ?? 256;
    this.act = opts.act ?? 'mish';
    const generator = opts.generator ?? new Generator(rng.nextU32());
    this.fc = this.registerModule('fc', new Linear(inDim, hidden, { rng }));
    this.blocks = this.registerModule('blocks', new Sequential());
    for (let i = 0; i < (opts.blocks ?? 3); i++) {
      this.blocks.append(new ResidualBlock(hidden, { act: this.act, dropout: opts.dropout, layerNorm: opts.layerNorm, generator, rng }));
    }
    this.outFc = this.registerModule('out_fc', new Linear(hidden, outDim, { rng }));
  }

  forward(x: Tensor): Tensor {
    const h = this.blocks.forward(this.fc.forward(x));
    return this.outFc.forward(activation(h, this.act));
  }
}

export interface SinusoidalPosEmbOptions {
  /** 'sin-cos' as Diffusion-QL (default), 'cos-sin' as EDP / guided-diffusion. */
  order?: FourierOrder;
  /** Frequencies exp(-i ln(maxPeriod) / (half - shift)): shift 1 as Diffusion-QL (default), 0 as EDP. */
  shift?: 0 | 1;
  maxPeriod?: number;
}

/**
 * Sinusoidal timestep embedding, t: [B] or [B, 1] -> [B, dim]. Default as Diffusion-QL's SinusoidalPosEmb:
 * half = dim/2, f_i = exp(-i ln(10^4) / (half - 1)), output [sin(t f), cos(t f)].
 */
export class SinusoidalPosEmb extends Module {
  readonly dim: number;
  readonly order: FourierOrder;
  readonly freqs: Tensor;

  constructor(dim: number, opts: SinusoidalPosEmbOptions = {}) {
    super();
    if (!Number.isInteger(dim) || dim < 2 || dim % 2 !== 0) throw new Error(`SinusoidalPosEmb: dim must be an even integer >= 2, got ${dim}`);
    const half = dim / 2;
    const shift = opts.shift ?? 1;
    if (half - shift < 1) throw new Error(`SinusoidalPosEmb: dim ${dim} is too small for shift ${shift}`);
    const step = Math.log(opts.maxPeriod ?? 10000) / (half - shift);
    this.dim = dim;
    this.order = opts.order ?? 'sin-cos';
    // a buffer, not a registered one: the frequencies are a pure function of the options, so not checkpointed
    this.freqs = keep(tensor(Float32Array.from({ length: half }, (_, i) => Math.exp(-i * step)), [half]));
  }

  forward(t: Tensor): Tensor {
    return fourierFeatures(t, this.freqs, { order: this.order });
  }
}

/**
 * SRPO's Gaussian Fourier projection, t: [B] or [B, 1] -> [B, embedDim]: [sin(2 pi t W), cos(2 pi t W)] with
 * W ~ N(0, scale^2) of length embedDim/2, fixed at construction (a buffer named W: saved, never trained).
 */
export class GaussianFourierProjection extends Module {
  readonly embedDim: number;
  readonly W: Tensor;

  constructor(embedDim: number, scale = 30, opts: { rng?: HostRng } = {}) {
    super();
    if (!Number.isInteger(embedDim) || embedDim < 2 || embedDim % 2 !== 0) {
      throw new Error(`GaussianFourierProjection: embedDim must be an even integer >= 2, got ${embedDim}`);
    }
    this.embedDim = embedDim;
    const half = embedDim / 2;
    this.W = this.registerBuffer('W', tensor(normalArray(half, 0, scale, opts.rng ?? globalRng()), [half]));
  }

  forward(t: Tensor): Tensor {
    return fourierFeatures(t, this.W, { order: 'sin-cos', freqScale: 2 * Math.PI });
  }
}

/**
 * Runs fn with the modules' parameters off the tape: gradients flow through the modules to their inputs, not
 * into their parameters (a critic's action gradient for an actor, a behaviour model's loss at a policy's actions).
 */
export function frozen<T>(modules: Module[], fn: () => T): T {
  const params = modules.flatMap((mod) => mod.parameters()).filter((p) => p.requiresGrad);
  for (const p of params) p.requiresGrad = false;
  try {
    return fn();
  } finally {
    for (const p of params) p.requiresGrad = true;
  }
}
