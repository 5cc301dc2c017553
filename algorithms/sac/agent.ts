// Soft Actor-Critic (Haarnoja et al. 2018, with the automatic temperature of "SAC: Algorithms and
// Applications"): a tanh-Gaussian actor, twin Q critics with Polyak-averaged targets, and the temperature alpha
// adapted so the policy's entropy tracks a target (-act_dim by default). One update, on one minibatch:
//   critic  y = r + gamma (1 - done) (min_i Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s');
//           L_Q = mean (Q_1(s, a) - y)^2 + mean (Q_2(s, a) - y)^2
//   actor   L_pi = mean (alpha log pi(a~|s) - min_i Q_i(s, a~)), a~ ~ pi(.|s) reparameterised, critic frozen
//   alpha   L_alpha = -mean log_alpha (log pi(a~|s) + target_entropy), log_alpha its own GPU parameter
//   targets theta' <- (1 - tau) theta' + tau theta
// The update is recordable: alpha stays on the GPU, random numbers come from a Generator, learning rates are
// fixed in the optimisers.
import { backward, detach, noGrad } from '../../engine/autograd.ts';
import { HostRng } from '../../engine/host-rng.ts';
import { Module, frozen } from '../../engine/nn.ts';
import { add, exp, mul, neg, scale, square, sub } from '../../engine/ops/elementwise.ts';
import { mean } from '../../engine/ops/reduce.ts';
import { AdamW, polyakUpdate } from '../../engine/optim.ts';
import { parameter } from '../../engine/params.ts';
import { Generator } from '../../engine/random.ts';
import type { Tensor } from '../../engine/tensor.ts';
import type { ReplayStore } from '../../datasets/replay.ts';
import type { CheckpointParts } from '../common/run-files.ts';
import { TwinQ } from '../common/critic-nets.ts';
import { GaussianTanhActor } from '../common/gaussian-actor.ts';
import type { OnlineAgent } from '../common/online-loop.ts';

/** The agent's own settings (the loop's are in OnlineConfig). */
export interface SacAgentConfig {
  seed: number;
  /** Hidden width and number of hidden ReLU layers of the actor and of each Q network. */
  hidden: number;
  layers: number;
  actorLr: number;
  criticLr: number;
  alphaLr: number;
  batch: number;
  gamma: number;
  tau: number;
  /** Starting temperature. */
  initAlpha: number;
  /** Adapt alpha (false: fixed at initAlpha). */
  autoAlpha: boolean;
  /** Entropy the temperature steers to; null: -act_dim. */
  targetEntropy: number | null;
}

/** Stream offsets, so networks and random streams draw independently from one seed. */
const SEED = { actor: 1, critic: 2, update: 3, act: 4 } as const;

/** The temperature as a module: one parameter, log alpha. */
export class Temperature extends Module {
  readonly logAlpha: Tensor;

  constructor(initAlpha: number) {
    super();
    if (!(initAlpha > 0 && Number.isFinite(initAlpha))) throw new Error(`Temperature: initAlpha must be a positive number, got ${initAlpha}`);
    this.logAlpha = this.registerParameter('logAlpha', parameter([Math.log(initAlpha)], [1], 'logAlpha'));
  }

  /** alpha = exp(log alpha) as a [1] constant (no gradient). */
  alpha(): Tensor {
    return noGrad(() => exp(detach(this.logAlpha)));
  }
}

/**
 * The temperature loss -mean(log_alpha (logProb + targetEntropy)) with logProb treated as a constant; its
 * gradient in log alpha is -mean(logProb + targetEntropy), which raises alpha while the entropy is below target.
 */
export function temperatureLoss(logAlpha: Tensor, logProb: Tensor, targetEntropy: number): Tensor {
  return neg(mean(mul(logAlpha, detach(add(logProb, targetEntropy)))));
}

export class SacAgent implements OnlineAgent {
  readonly obsDim: number;
  readonly actDim: number;
  readonly cfg: SacAgentConfig;
  readonly actor: GaussianTanhActor;
  readonly critic: TwinQ;
  readonly criticTarget: TwinQ;
  readonly temperature: Temperature;
  readonly actorOpt: AdamW;
  readonly criticOpt: AdamW;
  readonly alphaOpt: AdamW;
  /** Minibatches and the update's action samples. */
  readonly updateGen: Generator;
  /** The behaviour policy's samples. */
  readonly actGen: Generator;
  readonly targetEntropy: number;
  readonly parts: CheckpointParts;

  constructor(obsDim: number, actDim: number, cfg: SacAgentConfig) {
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.cfg = cfg;
    const s = cfg.seed * 16;
    this.actor = new GaussianTanhActor(obsDim, actDim, { hidden: cfg.hidden, layers: cfg.layers, rng: new HostRng(s + SEED.actor) });
    const criticOpts = { hidden: Array<number>(cfg.layers).fill(cfg.hidden), act: 'relu' as const, rng: new HostRng(s + SEED.critic) };
    this.critic = new TwinQ(obsDim, actDim, criticOpts);
    this.criticTarget = new TwinQ(obsDim, actDim, criticOpts);
    this.criticTarget.copyFrom(this.critic);
    this.temperature = new Temperature(cfg.initAlpha);
    this.actorOpt = new AdamW(this.actor.paramGroup(), { lr: cfg.actorLr });
    this.criticOpt = new AdamW(this.critic.paramGroup(), { lr: cfg.criticLr });
    this.alphaOpt = new AdamW(this.temperature.paramGroup(), { lr: cfg.alphaLr });
    this.criticTarget.paramGroup();
    this.updateGen = new Generator(s + SEED.update);
    this.actGen = new Generator(s + SEED.act);
    this.targetEntropy = cfg.targetEntropy ?? -actDim;
    this.parts = {
      modules: { actor: this.actor, critic: this.critic, criticTarget: this.criticTarget, temperature: this.temperature },
      optimizers: { actor: this.actorOpt, critic: this.criticOpt, alpha: this.alphaOpt },
      generators: { update: this.updateGen, act: this.actGen },
    };
  }

  act(obs: Tensor, explore: boolean): Tensor {
    return noGrad(() => (explore ? this.actor.sample(obs, this.actGen) : this.actor.meanAction(obs)));
  }

  update(store: ReplayStore, _variant: number): Record<string, Tensor> {
    const { cfg, actor, critic, criticTarget, updateGen: gen } = this;
    const b = store.sample(cfg.batch, gen);
    const alpha = this.temperature.alpha();
    const y = noGrad(() => {
      const next = actor.sampleWithLogProb(b.nextObs, gen);
      const softValue = sub(criticTarget.min(b.nextObs, next.action), mul(alpha, next.logProb));
      return add(b.rewards, mul(scale(b.notDone, cfg.gamma), softValue));
    });
    const [q1, q2] = critic.forward(b.obs, b.actions);
    const qLoss = add(mean(square(sub(q1, y))), mean(square(sub(q2, y))));
    this.criticOpt.group.zeroGrad();
    backward(qLoss);
    this.criticOpt.step();

    const { actorLoss, logProb } = frozen([critic], () => {
      const pi = actor.sampleWithLogProb(b.obs, gen);
      const loss = mean(sub(mul(alpha, pi.logProb), critic.min(b.obs, pi.action)));
      this.actorOpt.group.zeroGrad();
      backward(loss);
      this.actorOpt.step();
      return { actorLoss: loss, logProb: detach(pi.logProb) };
    });

    const losses: Record<string, Tensor> = { qLoss: detach(qLoss), actorLoss: detach(actorLoss), alpha, entropy: neg(mean(logProb)), q: mean(detach(q1)) };
    if (cfg.autoAlpha) {
      const alphaLoss = temperatureLoss(this.temperature.logAlpha, logProb, this.targetEntropy);
      this.alphaOpt.group.zeroGrad();
      backward(alphaLoss);
      this.alphaOpt.step();
      losses['alphaLoss'] = detach(alphaLoss);
    }
    polyakUpdate(criticTarget.paramGroup(), critic.paramGroup(), cfg.tau);
    return losses;
  }

  dispose(): void {
    this.actorOpt.dispose();
    this.criticOpt.dispose();
    this.alphaOpt.dispose();
  }
}
