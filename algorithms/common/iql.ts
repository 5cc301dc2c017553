// Implicit Q-Learning (Kostrikov et al. 2021) as SRPO, CORL, DTQL and EDP train it: a twin Q, a state value
// V fitted by expectile regression to the pessimistic Q, and the Q heads regressed to r + gamma (1 - d) V(s').
// Also the advantage-weighted regression (AWR) actor that CORL's IQL trains as its policy and SRPO trains
// only to monitor the critic.
//
// Per step (SRPO's IQL_Critic.update_q0, CORL's ImplicitQLearning.train):
//   q' = min(Q1', Q2')(s, a)      target heads, no gradient
//   v' = V(s')                    before V's step, no gradient
//   V  <- Adam step on mean |tau - 1(u < 0)| u^2, u = q' - V(s)
//   Q  <- Adam step on (MSE(Q1(s, a), y) + MSE(Q2(s, a), y)) / 2, y = r + gamma notDone v'
//   Q' <- (1 - tau) Q' + tau Q    Polyak rate config.tau (the expectile is config.expectile)
import { backward, detach, isGradEnabled, noGrad } from '../../engine/autograd.ts';
import { HostRng, globalRng } from '../../engine/host-rng.ts';
import { chunkedLoss, expectMatrix, expectRows, launch, recordIfNeeded } from '../../engine/fused.ts';
import { MLP, Module } from '../../engine/nn.ts';
import { add, minimum, sub } from '../../engine/ops/elementwise.ts';
import { AdamW, clipScale, cosineLR, polyakUpdate, type LRSchedule } from '../../engine/optim.ts';
import { parameter, type ParamGroup } from '../../engine/params.ts';
import { empty, tidy, type Tensor } from '../../engine/tensor.ts';
import { flatGrid } from '../../kernels/common.ts';
import {
  awrBackwardSource,
  awrLogStdBackwardSource,
  expectileBackwardSource,
  iqlLossSource,
  twinTdBackwardSource,
} from '../../kernels/iql.ts';
import { twinQActionGrad } from './critic-grad.ts';
import { TwinQ, ValueNet, type CriticActivation } from './critic-nets.ts';

// ---------------------------------------------------------------------------------------------------------
// Losses: each one fused dispatch forward (scalar [1] output, left on the GPU) and one backward.

/** Elements one invocation (or workgroup) of a loss pass sums; larger inputs leave partial sums. */
export const IQL_LOSS_CHUNK = 8192;

function checkFinite(op: string, name: string, v: number, ok: boolean, range: string): void {
  if (!Number.isFinite(v) || !ok) throw new Error(`${op}: ${name} must be ${range}, got ${v}`);
}

/**
 * Expectile regression loss, scalar [1]: mean over elements of |tau - 1(u < 0)| u^2 with u = target - pred
 * (IQL's asymmetric L2: tau > 0.5 pulls pred towards an upper expectile of target). Differentiable in both.
 */
export function expectileLoss(pred: Tensor, target: Tensor, tau: number): Tensor {
  const op = 'expectileLoss';
  if (pred.dtype !== 'f32' || target.dtype !== 'f32' || pred.size === 0 || pred.shape.join() !== target.shape.join()) {
    throw new Error(`${op}: pred and target must be non-empty f32 tensors of one shape, got ${pred.dtype} [${pred.shape}] and ${target.dtype} [${target.shape}]`);
  }
  checkFinite(op, 'tau', tau, tau > 0 && tau < 1, 'in (0, 1)');
  const n = pred.size;
  const scale = 1 / n;
  const out = chunkedLoss('iql_loss_expectile', (t) => iqlLossSource('expectile', t), { pred, truth: target }, n, IQL_LOSS_CHUNK, { scale, tau });
  recordIfNeeded(op, [pred, target], [out], ([g]) => {
    const wantPred = pred.requiresGrad;
    const wantTarget = target.requiresGrad;
    const buffers: Record<string, Tensor> = { pred, truth: target, g: g! };
    const dpred = wantPred ? empty(pred.shape) : null;
    const dtarget = wantTarget ? empty(target.shape) : null;
    if (dpred) buffers.dpred = dpred;
    if (dtarget) buffers.dtruth = dtarget;
    launch(`iql_expectileBackward_${wantPred ? 'p' : ''}${wantTarget ? 't' : ''}`, () => expectileBackwardSource(wantPred, wantTarget), buffers, { n, scale, tau }, flatGrid(n));
    return [dpred, dtarget];
  });
  return out;
}

/**
 * Twin-head TD loss, scalar [1]: (MSE(q1, y) + MSE(q2, y)) / 2 with y = reward + discount notDone nextV
 * per row (SRPO's and CORL's Q loss), or the plain sum of the two MSEs with heads 'sum' (DTQL's).
 * Differentiable in q1 and q2; reward, notDone and nextV are constants. All five are [B] or [B, 1].
 */
export function twinTdLoss(q1: Tensor, q2: Tensor, reward: Tensor, notDone: Tensor, nextV: Tensor, discount: number, heads: 'mean' | 'sum' = 'mean'): Tensor {
  const op = 'twinTdLoss';
  const rows = q1.size;
  if (rows === 0) throw new Error(`${op}: empty batch`);
  const named: [string, Tensor][] = [['q1', q1], ['q2', q2], ['reward', reward], ['notDone', notDone], ['nextV', nextV]];
  for (const [name, t] of named) expectRows(op, name, t, rows);
  checkFinite(op, 'discount', discount, discount >= 0, '>= 0');
  if (heads !== 'mean' && heads !== 'sum') throw new Error(`${op}: heads must be 'mean' or 'sum', got ${String(heads)}`);
  const scale = (heads === 'mean' ? 0.5 : 1) / rows;
  const buffers = { q1, q2, reward, notDone, nextV };
  const out = chunkedLoss('iql_loss_twinTd', (t) => iqlLossSource('twinTd', t), buffers, rows, IQL_LOSS_CHUNK, { scale, discount });
  recordIfNeeded(op, [q1, q2], [out], ([g]) => {
    const dq1 = empty(q1.shape);
    const dq2 = empty(q2.shape);
    launch('iql_twinTdBackward', twinTdBackwardSource, { ...buffers, g: g!, dq1, dq2 }, { n: rows, scale, discount }, flatGrid(rows));
    return [dq1, dq2];
  });
  return out;
}

export interface AWRLossOptions {
  /** Inverse temperature of the weights exp(beta adv); IQL uses 3 (locomotion) or 10 (antmaze). */
  beta: number;
  /** Upper clip of the weights; 100 in IQL. */
  maxWeight: number;
  /** Per-dimension log standard deviation [D] of a diagonal Gaussian around pred; absent: squared error. */
  logStd?: Tensor | null;
  /** Clamp of logStd before use (CORL: [-20, 2]); the gradient stops where the clamp is active. */
  logStdMin?: number;
  logStdMax?: number;
}

/**
 * Advantage-weighted regression loss, scalar [1], with w_b = min(exp(beta adv_b), maxWeight) held constant:
 * without logStd mean_b w_b sum_d (pred - a)^2 (SRPO's and CORL's deterministic actor); with logStd
 * mean_b w_b (-log N(a_b; pred_b, diag(exp(logStd))^2)) (CORL's Gaussian actor). Differentiable in pred and
 * logStd; actions and advantage ([B] or [B, 1]) are constants.
 */
export function awrLoss(pred: Tensor, actions: Tensor, advantage: Tensor, opts: AWRLossOptions): Tensor {
  const op = 'awrLoss';
  expectMatrix(op, 'pred', pred);
  const rows = pred.shape[0]!;
  const dim = pred.shape[1]!;
  expectMatrix(op, 'actions', actions, rows, dim);
  expectRows(op, 'advantage', advantage, rows);
  checkFinite(op, 'beta', opts.beta, opts.beta >= 0, '>= 0');
  checkFinite(op, 'maxWeight', opts.maxWeight, opts.maxWeight > 0, '> 0');
  const logStd = opts.logStd ?? null;
  const n = rows * dim;
  const scale = 1 / rows;
  const buffers: Record<string, Tensor> = { pred, actions, adv: advantage };
  const uniforms: Record<string, number> = { dim, beta: opts.beta, maxWeight: opts.maxWeight };
  if (logStd) {
    if (logStd.dtype !== 'f32' || logStd.size !== dim || logStd.rank !== 1) throw new Error(`${op}: logStd must be an f32 [${dim}] tensor, got ${logStd.dtype} [${logStd.shape}]`);
    const lo = opts.logStdMin ?? -20;
    const hi = opts.logStdMax ?? 2;
    checkFinite(op, 'logStdMin', lo, true, 'finite');
    checkFinite(op, 'logStdMax', hi, hi >= lo, '>= logStdMin');
    buffers.logStd = logStd;
    uniforms.logStdMin = lo;
    uniforms.logStdMax = hi;
  }
  const gaussian = logStd !== null;
  const loss = gaussian ? 'awrGaussian' : 'awrDeterministic';
  const out = chunkedLoss(`iql_loss_${loss}`, (t) => iqlLossSource(loss, t), buffers, n, IQL_LOSS_CHUNK, { scale, ...uniforms });
  recordIfNeeded(op, logStd ? [pred, logStd] : [pred], [out], ([g]) => {
    const bwd = { ...buffers, g: g! };
    const u = { n, scale, ...uniforms };
    let dpred: Tensor | null = null;
    let dlogStd: Tensor | null = null;
    if (pred.requiresGrad) {
      dpred = empty(pred.shape);
      launch(`iql_awrBackward_${gaussian ? 'gaussian' : 'deterministic'}`, () => awrBackwardSource(gaussian), { ...bwd, dpred }, u, flatGrid(n));
    }
    if (logStd?.requiresGrad) {
      dlogStd = empty([dim]);
      launch('iql_awrLogStdBackward', awrLogStdBackwardSource, { ...bwd, dlogStd }, u, flatGrid(dim, 64));
    }
    return logStd ? [dpred, dlogStd] : [dpred];
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The critic

export interface IQLConfig {
  /** tau of the expectile regression: 0.7 on locomotion, 0.9 on antmaze. */
  expectile: number;
  discount: number;
  /** Polyak rate of the target Q, applied after every step. */
  tau: number;
  /** Adam learning rate of Q and of V (separate optimisers, as SRPO and CORL). */
  lr: number;
  /** Hidden widths of every Q head and of V. */
  hidden: number[];
  act: CriticActivation;
  /** LayerNorm in the Q heads (DTQL); V has none. */
  layerNorm?: boolean;
  /** Global gradient-norm clip applied to Q's and to V's gradients separately; null or absent: none. */
  gradClip?: number | null;
  /**
   * Which Q the value regresses to: 'target' (default; SRPO, CORL, EDP: min of the target heads, V stepped
   * before Q) or 'online' (DTQL: min of the online heads, detached, with V and Q stepped together from one
   * backward of vLoss + qLoss).
   */
  valueTarget?: 'target' | 'online';
  /** The Q loss over the two heads: 'mean' of the two MSEs (default; SRPO, CORL) or their 'sum' (DTQL). */
  qLossHeads?: 'mean' | 'sum';
  /** Join order of the Q input: 'sa' (default) or 'as' (SRPO's checkpoints). */
  inputOrder?: 'sa' | 'as';
}

/** SRPO's critic: [256, 256] ReLU, Adam 3e-4, expectile 0.7, discount 0.99, Polyak 0.005. */
export const IQL_DEFAULTS: IQLConfig = Object.freeze({
  expectile: 0.7,
  discount: 0.99,
  tau: 0.005,
  lr: 3e-4,
  hidden: [256, 256],
  act: 'relu',
  layerNorm: false,
  gradClip: null,
  valueTarget: 'target',
  qLossHeads: 'mean',
  inputOrder: 'sa',
}) as IQLConfig;

/** Overrides for AntMaze (IQL, SRPO, IDQL): expectile 0.9. */
export const IQL_ANTMAZE: Partial<IQLConfig> = Object.freeze({ expectile: 0.9 });

/**
 * DTQL's critic: Q heads 3 x (Linear 256, LayerNorm, Mish), V 3 x (256, Mish), V regressed to the online Q,
 * one joint step on vLoss + MSE(Q1) + MSE(Q2).
 */
export const IQL_DTQL: Partial<IQLConfig> = Object.freeze({ hidden: [256, 256, 256], act: 'mish', layerNorm: true, valueTarget: 'online', qLossHeads: 'sum' });

export interface IQLStep {
  /** Scalar [1] losses of this step, left on the GPU; the caller disposes them (or runs update in tidy). */
  vLoss: Tensor;
  qLoss: Tensor;
  /** [B, 1] min Q'(s, a) - V(s) with V before its step (CORL's AWR advantage), when asked for. */
  advantage?: Tensor;
}

function resolveConfig(partial: Partial<IQLConfig>): Required<IQLConfig> {
  const c = { ...IQL_DEFAULTS, ...partial } as Required<IQLConfig>;
  c.hidden = [...c.hidden];
  checkFinite('IQLCritic', 'expectile', c.expectile, c.expectile > 0 && c.expectile < 1, 'in (0, 1)');
  checkFinite('IQLCritic', 'discount', c.discount, c.discount >= 0 && c.discount <= 1, 'in [0, 1]');
  checkFinite('IQLCritic', 'tau', c.tau, c.tau >= 0 && c.tau <= 1, 'in [0, 1]');
  checkFinite('IQLCritic', 'lr', c.lr, c.lr >= 0, '>= 0');
  if (c.gradClip !== null) checkFinite('IQLCritic', 'gradClip', c.gradClip, c.gradClip > 0, '> 0 or null');
  if (c.act !== 'relu' && c.act !== 'mish') throw new Error(`IQLCritic: act must be 'relu' or 'mish', got ${String(c.act)}`);
  if (c.valueTarget !== 'target' && c.valueTarget !== 'online') throw new Error(`IQLCritic: valueTarget must be 'target' or 'online', got ${String(c.valueTarget)}`);
  if (c.qLossHeads !== 'mean' && c.qLossHeads !== 'sum') throw new Error(`IQLCritic: qLossHeads must be 'mean' or 'sum', got ${String(c.qLossHeads)}`);
  return c;
}

function stepOptimizer(group: ParamGroup, optimizer: AdamW, gradClip: number | null): void {
  if (gradClip === null) {
    optimizer.step();
    return;
  }
  const { norm, scale } = clipScale(group, gradClip);
  optimizer.step(undefined, scale);
  norm.dispose();
  scale.dispose();
}

export class IQLCritic {
  readonly obsDim: number;
  readonly actDim: number;
  readonly config: Readonly<Required<IQLConfig>>;
  readonly q: TwinQ;
  readonly qTarget: TwinQ;
  readonly v: ValueNet;
  readonly qOptimizer: AdamW;
  readonly vOptimizer: AdamW;
  private readonly qGroup: ParamGroup;
  private readonly vGroup: ParamGroup;
  private readonly targetGroup: ParamGroup;

  constructor(obsDim: number, actDim: number, config: Partial<IQLConfig> = {}, opts: { seed?: number } = {}) {
    const c = resolveConfig(config);
    this.config = Object.freeze(c);
    this.obsDim = obsDim;
    this.actDim = actDim;
    const rng = opts.seed !== undefined ? new HostRng(opts.seed) : globalRng();
    const qOptions = { hidden: c.hidden, act: c.act, layerNorm: c.layerNorm, inputOrder: c.inputOrder };
    this.q = new TwinQ(obsDim, actDim, { ...qOptions, rng });
    this.v = new ValueNet(obsDim, { hidden: c.hidden, act: c.act, rng });
    // the target starts as a copy; drawing its throwaway init from its own generator leaves `rng` untouched
    this.qTarget = new TwinQ(obsDim, actDim, { ...qOptions, rng: new HostRng(0) });
    this.qTarget.copyFrom(this.q);
    this.qGroup = this.q.paramGroup();
    this.vGroup = this.v.paramGroup();
    this.targetGroup = this.qTarget.paramGroup();
    // the target is never trained: its parameters stay off the tape, so targetQGrad computes no weight gradients
    for (const p of this.qTarget.parameters()) p.requiresGrad = false;
    this.qOptimizer = new AdamW(this.qGroup, { lr: c.lr });
    this.vOptimizer = new AdamW(this.vGroup, { lr: c.lr });
  }

  /**
   * One gradient step of V (expectile regression to the pessimistic Q) then of Q (regression to
   * r + discount notDone V(s')), then the Polyak update of the target Q. Nothing is read back. Clears the
   * autograd tape (it runs backward), so call it outside other recordings.
   */
  update(batch: { obs: Tensor; actions: Tensor; rewards: Tensor; nextObs: Tensor; notDone: Tensor }, opts: { advantage?: boolean } = {}): IQLStep {
    const c = this.config;
    const { obs, actions, rewards, nextObs, notDone } = batch;
    return tidy(() => {
      const sa = this.q.join(obs, actions);
      const nextV = noGrad(() => this.v.forward(nextObs));
      let vLoss: Tensor;
      let qLoss: Tensor;
      let qMin: Tensor;
      let v: Tensor;
      if (c.valueTarget === 'target') {
        // V <- argmin E |tau - 1(u < 0)| u^2, u = min(Q1', Q2')(s, a) - V(s)
        qMin = noGrad(() => minimum(...this.qTarget.forwardJoined(sa)));
        v = this.v.forward(obs);
        vLoss = expectileLoss(v, qMin, c.expectile);
        this.vGroup.zeroGrad();
        backward(vLoss);
        stepOptimizer(this.vGroup, this.vOptimizer, c.gradClip);
        // Q <- argmin E (Q_i(s, a) - (r + gamma notDone V(s')))^2, averaged over the heads
        const [q1, q2] = this.q.forwardJoined(sa);
        qLoss = twinTdLoss(q1, q2, rewards, notDone, nextV, c.discount, c.qLossHeads);
        this.qGroup.zeroGrad();
        backward(qLoss);
        stepOptimizer(this.qGroup, this.qOptimizer, c.gradClip);
      } else {
        // DTQL: V regresses to the online heads' min (no gradient into Q); one backward for both losses
        const [q1, q2] = this.q.forwardJoined(sa);
        qMin = noGrad(() => minimum(q1, q2));
        v = this.v.forward(obs);
        vLoss = expectileLoss(v, qMin, c.expectile);
        qLoss = twinTdLoss(q1, q2, rewards, notDone, nextV, c.discount, c.qLossHeads);
        this.vGroup.zeroGrad();
        this.qGroup.zeroGrad();
        backward(add(vLoss, qLoss));
        stepOptimizer(this.vGroup, this.vOptimizer, c.gradClip);
        stepOptimizer(this.qGroup, this.qOptimizer, c.gradClip);
      }
      // Q' <- (1 - tau) Q' + tau Q
      polyakUpdate(this.targetGroup, this.qGroup, c.tau);
      const step: IQLStep = { vLoss: detach(vLoss), qLoss: detach(qLoss) };
      if (opts.advantage) step.advantage = noGrad(() => sub(qMin, v));
      return step;
    });
  }

  /** Sets the learning rate of both optimisers (for a schedule the caller steps, e.g. DTQL's cosine decay). */
  setLR(lr: number): void {
    checkFinite('IQLCritic.setLR', 'lr', lr, lr >= 0, '>= 0');
    this.qOptimizer.lr = lr;
    this.vOptimizer.lr = lr;
  }

  /**
   * Gives both optimisers a learning rate by step count (e.g. DTQL's cosine decay); unlike setLR called
   * inside a step, it also holds in replays of a recorded step.
   */
  setSchedule(schedule: LRSchedule): void {
    this.qOptimizer.schedule = schedule;
    this.vOptimizer.schedule = schedule;
  }

  /** Optimiser steps taken so far. */
  get steps(): number {
    return this.vOptimizer.stepCount;
  }

  /** min(Q1', Q2')(s, a) - V(s) [B, 1] with the current networks, no gradient. */
  advantage(obs: Tensor, actions: Tensor): Tensor {
    return noGrad(() => tidy(() => sub(this.qTarget.min(obs, actions), this.v.forward(obs))));
  }

  /**
   * d/da of (Q1'(s, a) + Q2'(s, a)) / 2 per row, [B, actDim], detached (SRPO's guidance g). `actions` is
   * read, never differentiated through. One fused dispatch (common/critic-grad.ts) that records nothing on
   * the tape; LayerNorm heads take the autograd path, whose few tape entries are cleared when the tape was
   * empty and otherwise stay behind it at no cost to the caller's next backward. Refused inside noGrad, as
   * the autograd path needs recording.
   */
  targetQGrad(obs: Tensor, actions: Tensor): Tensor {
    if (!isGradEnabled()) throw new Error('IQLCritic.targetQGrad: needs autograd recording; do not call it inside noGrad');
    return twinQActionGrad(this.qTarget, obs, actions);
  }

  /** The networks by checkpoint name (engine/safetensors saveModule / loadModule). */
  modules(): Record<string, Module> {
    return { q: this.q, qTarget: this.qTarget, v: this.v };
  }

  /** The optimisers a checkpoint holds, by name. */
  optimizers(): Record<string, AdamW> {
    return { q: this.qOptimizer, v: this.vOptimizer };
  }

  /** Frees the optimiser state. */
  dispose(): void {
    this.qOptimizer.dispose();
    this.vOptimizer.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The AWR actor

export interface AWRConfig {
  /** 'deterministic': tanh MLP, weighted squared error (SRPO's monitor, CORL's deterministic tasks); 'gaussian': tanh-MLP mean, state-independent log-std, weighted NLL (CORL). */
  policy: 'deterministic' | 'gaussian';
  hidden: number[];
  act: CriticActivation;
  /** Inverse temperature: 3 on locomotion, 10 on antmaze. */
  beta: number;
  maxWeight: number;
  lr: number;
  /** Length of the cosine learning-rate decay to 0 (CORL: the run's steps; SRPO: 1.5M); null: constant. */
  totalSteps: number | null;
  logStdMin: number;
  logStdMax: number;
}

export const AWR_DEFAULTS: AWRConfig = Object.freeze({
  policy: 'deterministic',
  hidden: [256, 256],
  act: 'relu',
  beta: 3,
  maxWeight: 100,
  lr: 3e-4,
  totalSteps: null,
  logStdMin: -20,
  logStdMax: 2,
}) as AWRConfig;

/** s -> hidden -> tanh(actDim): the deterministic action or the Gaussian's mean; log_std for the Gaussian. */
export class AWRPolicy extends Module {
  readonly obsDim: number;
  readonly actDim: number;
  readonly net: MLP;
  readonly logStd: Tensor | null;

  constructor(obsDim: number, actDim: number, opts: { hidden: readonly number[]; act: CriticActivation; gaussian: boolean; rng?: HostRng }) {
    super();
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.net = this.registerModule('net', new MLP([obsDim, ...opts.hidden, actDim], { act: opts.act, outAct: 'tanh', rng: opts.rng ?? globalRng() }));
    this.logStd = opts.gaussian ? this.registerParameter('log_std', parameter(new Float32Array(actDim), [actDim])) : null;
  }

  /** The action (deterministic) or the mean action (Gaussian), [B, actDim] in [-1, 1]. */
  forward(obs: Tensor): Tensor {
    expectMatrix('AWRPolicy', 'obs', obs, undefined, this.obsDim);
    return this.net.forward(obs);
  }
}

export class AWRActor {
  readonly config: Readonly<AWRConfig>;
  readonly policy: AWRPolicy;
  readonly optimizer: AdamW;
  private readonly group: ParamGroup;

  constructor(obsDim: number, actDim: number, config: Partial<AWRConfig> = {}, opts: { seed?: number } = {}) {
    const c = { ...AWR_DEFAULTS, ...config };
    c.hidden = [...c.hidden];
    if (c.policy !== 'deterministic' && c.policy !== 'gaussian') throw new Error(`AWRActor: policy must be 'deterministic' or 'gaussian', got ${String(c.policy)}`);
    checkFinite('AWRActor', 'lr', c.lr, c.lr >= 0, '>= 0');
    this.config = Object.freeze(c);
    const rng = opts.seed !== undefined ? new HostRng(opts.seed) : globalRng();
    this.policy = new AWRPolicy(obsDim, actDim, { hidden: c.hidden, act: c.act, gaussian: c.policy === 'gaussian', rng });
    this.group = this.policy.paramGroup();
    this.optimizer = new AdamW(this.group, { lr: c.lr, schedule: c.totalSteps === null ? undefined : cosineLR(c.lr, c.totalSteps) });
  }

  /**
   * One step on the advantage-weighted regression to the data's actions; `advantage` [B] or [B, 1] is
   * read as a constant (IQLStep.advantage or IQLCritic.advantage). Returns the scalar [1] loss, on the GPU.
   */
  update(obs: Tensor, actions: Tensor, advantage: Tensor): Tensor {
    const c = this.config;
    return tidy(() => {
      const loss = awrLoss(this.policy.forward(obs), actions, advantage, {
        beta: c.beta,
        maxWeight: c.maxWeight,
        logStd: this.policy.logStd,
        logStdMin: c.logStdMin,
        logStdMax: c.logStdMax,
      });
      this.group.zeroGrad();
      backward(loss);
      this.optimizer.step();
      return detach(loss);
    });
  }

  /** The deterministic action (or the Gaussian's mean), no gradient. */
  act(obs: Tensor): Tensor {
    return noGrad(() => this.policy.forward(obs));
  }

  modules(): Record<string, Module> {
    return { actor: this.policy };
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
