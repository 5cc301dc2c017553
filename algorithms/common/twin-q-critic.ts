// A twin-Q critic regressed to r + discount notDone min Q'(s', a') with a' from a target policy (Diffusion-QL,
// EDP's TD3 and CRR backbones), its Polyak-averaged target, and the max-Q backup over several next actions.
import { backward, detach, noGrad } from '../../engine/autograd.ts';
import { HostRng } from '../../engine/host-rng.ts';
import type { Module } from '../../engine/nn.ts';
import { minimum } from '../../engine/ops/elementwise.ts';
import { max } from '../../engine/ops/reduce.ts';
import { reshape } from '../../engine/ops/shape.ts';
import { AdamW, clippedStep, polyakUpdate } from '../../engine/optim.ts';
import type { ParamGroup } from '../../engine/params.ts';
import type { Tensor } from '../../engine/tensor.ts';
import type { ReplayBatch } from '../../datasets/replay.ts';
import { repeatRows } from '../diffusion/select.ts';
import { TwinQ } from './critic-nets.ts';
import { twinTdLoss } from './iql.ts';

export interface TwinQCriticConfig {
  hidden: readonly number[];
  lr: number;
  discount: number;
  tau: number;
  gradClip: number;
  seed: number;
}

export class TwinQCritic {
  readonly q: TwinQ;
  readonly qTarget: TwinQ;
  readonly optimizer: AdamW;
  readonly config: Readonly<TwinQCriticConfig>;
  private readonly targetGroup: ParamGroup;

  constructor(obsDim: number, actDim: number, config: TwinQCriticConfig) {
    this.config = Object.freeze({ ...config, hidden: [...config.hidden] });
    this.q = new TwinQ(obsDim, actDim, { hidden: config.hidden, act: 'mish', rng: new HostRng(config.seed) });
    this.qTarget = new TwinQ(obsDim, actDim, { hidden: config.hidden, act: 'mish', rng: new HostRng(0) });
    this.qTarget.copyFrom(this.q);
    for (const p of this.qTarget.parameters()) p.requiresGrad = false;
    this.optimizer = new AdamW(this.q.paramGroup(), { lr: config.lr });
    this.targetGroup = this.qTarget.paramGroup();
  }

  /**
   * min over heads of Q'(s', a') [B, 1], no gradient. With samples n > 1 the next actions are [B*n, A]
   * state-major (n per next state): each head takes its max over the n first (the max-Q backup).
   */
  nextValue(nextObs: Tensor, nextActions: Tensor, samples = 1): Tensor {
    return noGrad(() => {
      const B = nextObs.shape[0]!;
      const [q1, q2] = this.qTarget.forward(repeatRows(nextObs, samples), nextActions);
      if (samples === 1) return minimum(q1, q2);
      const best = (q: Tensor) => max(reshape(q, [B, samples]), { axis: -1, keepDim: true });
      return minimum(best(q1), best(q2));
    });
  }

  /** One step on MSE(Q1, y) + MSE(Q2, y), y = r + discount notDone nextV, then the target's Polyak update. */
  update(batch: ReplayBatch, nextV: Tensor): Tensor {
    const c = this.config;
    const [q1, q2] = this.q.forward(batch.obs, batch.actions);
    const loss = twinTdLoss(q1, q2, batch.rewards, batch.notDone, nextV, c.discount, 'sum');
    this.optimizer.group.zeroGrad();
    backward(loss);
    clippedStep(this.optimizer, c.gradClip);
    polyakUpdate(this.targetGroup, this.optimizer.group, c.tau);
    return detach(loss);
  }

  modules(): Record<string, Module> {
    return { q: this.q, qTarget: this.qTarget };
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
