// Critic networks of the offline RL methods here: a twin Q (two independent MLPs on the joined state and
// action, as IQL, SRPO, DTQL and EDP use) and a state-value MLP.
import { globalRng, type HostRng } from '../../engine/host-rng.ts';
import { MLP, Module } from '../../engine/nn.ts';
import { add, minimum, scale } from '../../engine/ops/elementwise.ts';
import { concat } from '../../engine/ops/shape.ts';
import type { Tensor } from '../../engine/tensor.ts';

export type CriticActivation = 'relu' | 'mish';

export interface CriticNetOptions {
  /** Hidden widths; default [256, 256]. */
  hidden?: readonly number[];
  /** Default 'relu'. */
  act?: CriticActivation;
  /** LayerNorm after every hidden Linear, before the activation (DTQL's Q). Default false. */
  layerNorm?: boolean;
  rng?: HostRng;
}

export interface TwinQOptions extends CriticNetOptions {
  /**
   * The order in which state and action are joined: 'sa' (default; CORL, DTQL, EDP) or 'as' (SRPO's TwinQ
   * takes concat(a, s), which matters only when loading its checkpoints).
   */
  inputOrder?: 'sa' | 'as';
}

function checkDims(what: string, dims: Record<string, number>): void {
  for (const [name, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${what}: ${name} must be a positive integer, got ${v}`);
  }
}

function checkHidden(what: string, hidden: readonly number[]): void {
  if (hidden.length === 0 || hidden.some((w) => !Number.isInteger(w) || w < 1)) {
    throw new Error(`${what}: hidden widths must be one or more positive integers, got [${hidden}]`);
  }
}

function checkInput(what: string, name: string, t: Tensor, dim: number, rows?: number): void {
  if (t.rank !== 2 || t.shape[1] !== dim || (rows !== undefined && t.shape[0] !== rows)) {
    const want = rows === undefined ? `[B, ${dim}]` : `[${rows}, ${dim}]`;
    throw new Error(`${what}: ${name} must be ${want}, got [${t.shape}]`);
  }
}

/** Two independent Q heads, each concat(s, a) -> hidden -> 1; children q1 and q2. */
export class TwinQ extends Module {
  readonly obsDim: number;
  readonly actDim: number;
  readonly inputOrder: 'sa' | 'as';
  readonly q1: MLP;
  readonly q2: MLP;

  constructor(obsDim: number, actDim: number, opts: TwinQOptions = {}) {
    super();
    checkDims('TwinQ', { obsDim, actDim });
    const hidden = opts.hidden ?? [256, 256];
    checkHidden('TwinQ', hidden);
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.inputOrder = opts.inputOrder ?? 'sa';
    const rng = opts.rng ?? globalRng();
    const widths = [obsDim + actDim, ...hidden, 1];
    const mlp = () => new MLP(widths, { act: opts.act ?? 'relu', layerNorm: opts.layerNorm ?? false, rng });
    this.q1 = this.registerModule('q1', mlp());
    this.q2 = this.registerModule('q2', mlp());
  }

  /** The heads' input [B, obsDim + actDim], so callers evaluating several TwinQs on one batch join once. */
  join(obs: Tensor, actions: Tensor): Tensor {
    checkInput('TwinQ', 'obs', obs, this.obsDim);
    checkInput('TwinQ', 'actions', actions, this.actDim, obs.shape[0]);
    return concat(this.inputOrder === 'sa' ? [obs, actions] : [actions, obs], 1);
  }

  /** Both heads on an already joined input; each [B, 1]. */
  forwardJoined(joined: Tensor): [Tensor, Tensor] {
    checkInput('TwinQ', 'joined input', joined, this.obsDim + this.actDim);
    return [this.q1.forward(joined), this.q2.forward(joined)];
  }

  /** [Q1(s, a), Q2(s, a)], each [B, 1]. */
  forward(obs: Tensor, actions: Tensor): [Tensor, Tensor] {
    return this.forwardJoined(this.join(obs, actions));
  }

  /** min(Q1, Q2) [B, 1] (the pessimistic value IQL regresses V to). */
  min(obs: Tensor, actions: Tensor): Tensor {
    const [q1, q2] = this.forward(obs, actions);
    return minimum(q1, q2);
  }

  /** (Q1 + Q2) / 2 [B, 1] (the value SRPO differentiates). */
  mean(obs: Tensor, actions: Tensor): Tensor {
    const [q1, q2] = this.forward(obs, actions);
    return scale(add(q1, q2), 0.5);
  }
}

/** State value s -> hidden -> 1; child net. */
export class ValueNet extends Module {
  readonly obsDim: number;
  readonly net: MLP;

  constructor(obsDim: number, opts: CriticNetOptions = {}) {
    super();
    checkDims('ValueNet', { obsDim });
    const hidden = opts.hidden ?? [256, 256];
    checkHidden('ValueNet', hidden);
    this.obsDim = obsDim;
    this.net = this.registerModule('net', new MLP([obsDim, ...hidden, 1], { act: opts.act ?? 'relu', layerNorm: opts.layerNorm ?? false, rng: opts.rng ?? globalRng() }));
  }

  /** V(s) [B, 1]. */
  forward(obs: Tensor): Tensor {
    checkInput('ValueNet', 'obs', obs, this.obsDim);
    return this.net.forward(obs);
  }
}
