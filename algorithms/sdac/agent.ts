// Soft Diffusion Actor-Critic (SDAC, Ma et al. 2025), online, as in the paper's code
// (mahaitongdae/diffusion_policy_online_rl: relax/algorithm/sdac.py, relax/network/diffv2.py,
// relax/utils/diffusion.py):
//
// - policy: a T-step DDPM (scaled linear betas) over actions in [-1, 1]; a sample is the best of `particles`
//   reverse chains by min(Q1, Q2), plus Gaussian noise of std noiseScale * alpha when exploring;
// - critic: twin Q regressed to rewardScale r + notDone gamma min Q'(s', a'), a' a sample of the online policy
//   (with its exploration noise), no entropy term;
// - policy loss (reweighted score matching): the sampled action a is noised to a~ at a random step k, M clean
//   actions a0_j = a~/sqrt(abar_k) - sqrt(1/abar_k - 1) n_j are drawn from it (clipped to [-1, 1]), and
//   eps_theta(a~, k, s) is regressed to each n_j with weight softmax_j(min Q(s, a0_j) energyScale / alpha);
// - delays: policy, target critic and target policy every `delay` updates, temperature every `alphaEvery`;
//   the temperature follows the Gaussian entropy of the exploration noise towards -0.9 act_dim.
//
// The behaviour and evaluation policies use the Polyak-averaged target policy with the online critic choosing
// among particles (the code's get_policy_params_to_save); the updates sample the online policy.
//
// Every update variant is recordable (engine/record.ts): random numbers come from Generators, the learning
// rates from AdamW schedules, and the temperature is a GPU parameter read only by kernels.
import { backward, detach, noGrad } from '../../engine/autograd.ts';
import { HostRng } from '../../engine/host-rng.ts';
import { Module } from '../../engine/nn.ts';
import { add, clamp, exp, minimum, mul, neg, scale, square, sub } from '../../engine/ops/elementwise.ts';
import { mean, softmax } from '../../engine/ops/reduce.ts';
import { concat, reshape, slice } from '../../engine/ops/shape.ts';
import { AdamW, polyakUpdate, type LRSchedule } from '../../engine/optim.ts';
import { parameter } from '../../engine/params.ts';
import { Generator } from '../../engine/random.ts';
import { keep, tensor, type Tensor } from '../../engine/tensor.ts';
import type { ReplayStore } from '../../datasets/replay.ts';
import { TwinQ } from '../common/critic-nets.ts';
import type { CheckpointParts } from '../common/run-files.ts';
import type { OnlineAgent } from '../common/online-loop.ts';
import { noiseDiscrete, predictX0 } from '../diffusion/losses.ts';
import { ddpmSample, type DiscreteEpsModel } from '../diffusion/samplers.ts';
import { DiscreteSchedule } from '../diffusion/schedules.ts';
import { repeatRows, selectByCriticWithIndices } from '../diffusion/select.ts';
import { twinTdLoss } from '../common/iql.ts';
import { SDACChainModel, SDACNoiseNet } from './networks.ts';

export interface SDACAgentConfig {
  seed: number;
  /** Minibatch per update. */
  batch: number;

  // diffusion policy
  /** Diffusion steps. */
  T: number;
  /** beta = betaScale * linspace(1e-4, 0.999, T). */
  betaScale: number;
  /** Width and depth of the noise network's Mish trunk. */
  actorHidden: number;
  actorDepth: number;
  /** Policy Adam: lr until lrDecayBegin policy updates, then linear to lrEnd over lrDecaySteps policy updates. */
  actorLr: number;
  actorLrEnd: number;
  lrDecayBegin: number;
  lrDecaySteps: number;
  /** Reverse chains per state; the best by min(Q1, Q2) is the sample. */
  particles: number;
  /** Exploration noise std is noiseScale * alpha. */
  noiseScale: number;
  /** Clean-action samples per state in the policy loss (M). */
  reverseSamples: number;
  /** Weights are softmax(min Q energyScale / alpha) (the code's constant 5, the initial alpha). */
  energyScale: number;

  // critic
  criticHidden: number[];
  criticLr: number;
  discount: number;
  rewardScale: number;
  /** Polyak rate of the target critic and the target policy. */
  tau: number;

  // delays and temperature
  /** Policy and target updates every `delay` updates. */
  delay: number;
  /** Temperature update every `alphaEvery` updates (a multiple of delay). */
  alphaEvery: number;
  alphaLr: number;
  initAlpha: number;
  /** Target entropy is -targetEntropyScale * act_dim. */
  targetEntropyScale: number;
}

/** The paper's MuJoCo settings (scripts/train_mujoco.py with the SDAC class defaults it does not override). */
export const SDAC_PAPER_AGENT: Readonly<Omit<SDACAgentConfig, 'seed'>> = Object.freeze({
  batch: 256,
  T: 20,
  betaScale: 0.8,
  actorHidden: 256,
  actorDepth: 3,
  actorLr: 3e-4,
  actorLrEnd: 3e-5,
  lrDecayBegin: 25_000,
  lrDecaySteps: 50_000,
  particles: 32,
  noiseScale: 0.1,
  reverseSamples: 64,
  energyScale: 5,
  criticHidden: [256, 256, 256],
  criticLr: 3e-4,
  discount: 0.99,
  rewardScale: 0.2,
  tau: 0.005,
  delay: 2,
  alphaEvery: 250,
  alphaLr: 7e-3,
  initAlpha: 5,
  targetEntropyScale: 0.9,
});

/** Update variants: critic only; also policy and targets; also the temperature. */
export const UPDATE_CRITIC = 0;
export const UPDATE_POLICY = 1;
export const UPDATE_TEMPERATURE = 2;

/** The variant of 0-based update u (the code's step % delay_update and step % delay_alpha_update tests). */
export function sdacUpdateVariant(cfg: Pick<SDACAgentConfig, 'delay' | 'alphaEvery'>, u: number): number {
  if (u % cfg.alphaEvery === 0) return UPDATE_TEMPERATURE;
  return u % cfg.delay === 0 ? UPDATE_POLICY : UPDATE_CRITIC;
}

/** optax.linear_schedule: start until `begin`, then linear to `end` over `steps`, then `end`. */
export function linearDecayLR(start: number, end: number, begin: number, steps: number): LRSchedule {
  if (!(start >= 0 && end >= 0 && begin >= 0 && steps > 0)) throw new Error(`linearDecayLR: need start, end, begin >= 0 and steps > 0, got ${start}, ${end}, ${begin}, ${steps}`);
  return (s: number) => {
    const progress = Math.min(1, Math.max(0, (s - begin) / steps));
    return start + (end - start) * progress;
  };
}

/** Stream offsets, so the networks and random streams of one seed are independent. */
const SEED = { actor: 1, critic: 2, train: 3, explore: 4, evaluate: 5 } as const;

// =========================================================================================================
// The pieces of the update (exported for tests)

/** The temperature: log alpha as a one-element parameter, so its updates stay on the GPU. */
export class Temperature extends Module {
  readonly logAlpha: Tensor;

  constructor(initAlpha: number) {
    super();
    if (!(initAlpha > 0 && Number.isFinite(initAlpha))) throw new Error(`Temperature: initial alpha must be positive, got ${initAlpha}`);
    this.logAlpha = this.registerParameter('log_alpha', parameter([Math.log(initAlpha)], [1]));
  }
}

/** The Gaussian entropy of the exploration noise, 0.5 d ln(2 pi e (noiseScale alpha)^2), [1]; no gradient. */
export function entropyEstimate(logAlpha: Tensor, actDim: number, noiseScale: number): Tensor {
  const perDim = 0.5 * Math.log(2 * Math.PI * Math.E) + Math.log(noiseScale);
  return noGrad(() => add(scale(logAlpha, actDim), actDim * perDim));
}

/**
 * The temperature loss -log alpha (-H + targetEntropy) with H = entropyEstimate held constant: its gradient in
 * log alpha is H - targetEntropy. Returns the loss [1] and H [1].
 */
export function temperatureLoss(logAlpha: Tensor, actDim: number, noiseScale: number, targetEntropy: number): { loss: Tensor; entropy: Tensor } {
  const entropy = entropyEstimate(logAlpha, actDim, noiseScale);
  return { loss: mul(logAlpha, sub(entropy, targetEntropy)), entropy };
}

/** The eps model of the reverse chains at the given (repeated) states. */
export type ChainModelFor = (states: Tensor) => DiscreteEpsModel;

/**
 * Policy samples at `obs` [B, S]: per state `particles` reverse chains (DDPM, 'dql' log variances) from
 * 0.5 N(0, I), the data prediction clipped to [-1, 1] at every step, the best by min(Q1, Q2) of `critic`, plus
 * N(0, noiseStd^2) where noiseStd [1] is given. No gradient. [B, A].
 */
export function sampleActions(chainModel: ChainModelFor, critic: TwinQ, obs: Tensor, gen: Generator, particles: number, noiseStd: Tensor | null): Tensor {
  return noGrad(() => {
    const B = obs.shape[0]!;
    const A = critic.actDim;
    const states = particles > 1 ? repeatRows(obs, particles) : obs;
    const rows = B * particles;
    const start = gen.normal([rows, A], 0, 0.5);
    let a = ddpmSample(chainModel(states), states, { batch: rows, actionDim: A, generator: gen, noise: start, logVarMode: 'dql' });
    if (particles > 1) {
      const { actions, indices } = selectByCriticWithIndices(a, critic.min(states, a), particles, gen, { mode: 'argmax' });
      indices.dispose();
      a = actions;
    }
    if (noiseStd) a = add(a, mul(gen.normal([B, A]), noiseStd));
    return a;
  });
}

/** What the policy loss reads, drawn from the new actions without gradient. */
export interface ReverseSamples {
  /** a~ = sqrt(abar_k) a + sqrt(1 - abar_k) n1, [B, A] */
  noisy: Tensor;
  /** n1, [B, A] */
  forwardNoise: Tensor;
  /** k per state as f32, [B] */
  time: Tensor;
  /** n_j, [B*M, A] state-major */
  noise: Tensor;
  /** a0_j = clip(a~ / sqrt(abar_k) - sqrt(1/abar_k - 1) n_j, -1, 1), [B*M, A] */
  actions: Tensor;
  /** sqrt(abar_k) and sqrt(1 - abar_k) per state, [B] */
  alpha: Tensor;
  sigma: Tensor;
}

/** Forward-noises `actions` [B, A] at a random step and draws M clean actions back from each (no gradient). */
export function reverseSamples(actions: Tensor, schedule: DiscreteSchedule, gen: Generator, M: number): ReverseSamples {
  return noGrad(() => {
    const [B, A] = actions.shape as [number, number];
    const nb = noiseDiscrete(actions, schedule, gen);
    const noise = gen.normal([B * M, A]);
    const rep = (t: Tensor) => repeatRows(reshape(t, [B, 1]), M);
    const a0 = predictX0(repeatRows(nb.xt, M), noise, rep(nb.alpha), rep(nb.sigma), 1);
    return { noisy: nb.xt, forwardNoise: nb.noise, time: nb.time, noise, actions: a0, alpha: nb.alpha, sigma: nb.sigma };
  });
}

/** softmax over each state's M candidates of q * energy, with q [B*M, 1] state-major and energy [1]: [B*M, 1]. */
export function energyWeights(q: Tensor, M: number, energy: Tensor): Tensor {
  return noGrad(() => {
    const rows = q.size;
    if (rows % M !== 0) throw new Error(`energyWeights: ${rows} values are not whole groups of M = ${M}`);
    return reshape(softmax(mul(reshape(q, [rows / M, M]), energy)), [rows, 1]);
  });
}

/**
 * mean over [B*M, A] of w_j (eps_b - n_j)^2: eps [B, A] the network output at (a~, k, s) (differentiable), noise
 * [B*M, A] and weights [B*M, 1] constants. The paper code's reverse_samping_weighted_p_loss.
 */
export function weightedScoreLoss(eps: Tensor, noise: Tensor, weights: Tensor, M: number): Tensor {
  const B = eps.shape[0]!;
  if (noise.shape[0] !== B * M || noise.shape[1] !== eps.shape[1] || weights.size !== B * M) {
    throw new Error(`weightedScoreLoss: eps [${eps.shape}], noise [${noise.shape}] and weights [${weights.shape}] do not fit M = ${M}`);
  }
  return mean(mul(square(sub(repeatRows(eps, M), noise)), weights));
}

// =========================================================================================================
// The agent

/** The acting policy as one module: the target noise network, the online critic choosing among particles and
 *  the temperature (the code saves these four as its policy). */
export class SDACPolicy extends Module {
  constructor(policy: SDACNoiseNet, critic: TwinQ, temperature: Temperature) {
    super();
    this.registerModule('policy', policy);
    this.registerModule('critic', critic);
    this.registerModule('temperature', temperature);
  }
}

export class SDACAgent implements OnlineAgent {
  readonly obsDim: number;
  readonly actDim: number;
  readonly config: Readonly<SDACAgentConfig>;
  readonly schedule: DiscreteSchedule;
  readonly policyNet: SDACNoiseNet;
  readonly policyTargetNet: SDACNoiseNet;
  /** Reverse-chain models of the online and the target policy. */
  readonly policyChain: ChainModelFor;
  readonly policyTargetChain: ChainModelFor;
  /** 0..T-1, the network times of the chain's steps. */
  private readonly stepTimes: Tensor;
  readonly critic: TwinQ;
  readonly criticTarget: TwinQ;
  readonly temperature: Temperature;
  readonly policyOpt: AdamW;
  readonly criticOpt: AdamW;
  readonly temperatureOpt: AdamW;
  readonly trainGen: Generator;
  readonly exploreGen: Generator;
  readonly evalGen: Generator;
  readonly actor: SDACPolicy;
  readonly parts: CheckpointParts;
  readonly targetEntropy: number;

  constructor(obsDim: number, actDim: number, config: SDACAgentConfig) {
    checkConfig(config);
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.config = Object.freeze({ ...config, criticHidden: [...config.criticHidden] });
    const c = this.config;
    const base = c.seed * 16;
    this.schedule = DiscreteSchedule.sdac(c.T, c.betaScale);
    const netOpts = { hidden: c.actorHidden, depth: c.actorDepth };
    this.policyNet = new SDACNoiseNet(obsDim, actDim, { ...netOpts, rng: new HostRng(base + SEED.actor) });
    this.policyTargetNet = new SDACNoiseNet(obsDim, actDim, { ...netOpts, rng: new HostRng(0) });
    this.policyTargetNet.copyFrom(this.policyNet);
    this.stepTimes = keep(tensor(Float32Array.from({ length: c.T }, (_, k) => k), [c.T]));
    const chainOf = (net: SDACNoiseNet): ChainModelFor => (states) => new SDACChainModel(net, this.schedule, 1, states, this.stepTimes);
    this.policyChain = chainOf(this.policyNet);
    this.policyTargetChain = chainOf(this.policyTargetNet);
    const criticOpts = { hidden: c.criticHidden, act: 'mish' } as const;
    this.critic = new TwinQ(obsDim, actDim, { ...criticOpts, rng: new HostRng(base + SEED.critic) });
    this.criticTarget = new TwinQ(obsDim, actDim, { ...criticOpts, rng: new HostRng(0) });
    this.criticTarget.copyFrom(this.critic);
    for (const p of [...this.policyTargetNet.parameters(), ...this.criticTarget.parameters()]) p.requiresGrad = false;
    this.temperature = new Temperature(c.initAlpha);
    this.policyOpt = new AdamW(this.policyNet.paramGroup(), {
      lr: c.actorLr,
      schedule: linearDecayLR(c.actorLr, c.actorLrEnd, c.lrDecayBegin, c.lrDecaySteps),
    });
    this.criticOpt = new AdamW(this.critic.paramGroup(), { lr: c.criticLr });
    this.temperatureOpt = new AdamW(this.temperature.paramGroup(), { lr: c.alphaLr });
    // packed once, so the Polyak updates find their groups
    this.policyTargetNet.paramGroup();
    this.criticTarget.paramGroup();
    this.trainGen = new Generator(base + SEED.train);
    this.exploreGen = new Generator(base + SEED.explore);
    this.evalGen = new Generator(base + SEED.evaluate);
    this.targetEntropy = -c.targetEntropyScale * actDim;
    this.actor = new SDACPolicy(this.policyTargetNet, this.critic, this.temperature);
    this.parts = {
      modules: {
        policy: this.policyNet,
        policyTarget: this.policyTargetNet,
        critic: this.critic,
        criticTarget: this.criticTarget,
        temperature: this.temperature,
      },
      optimizers: { policy: this.policyOpt, critic: this.criticOpt, temperature: this.temperatureOpt },
      generators: { train: this.trainGen, explore: this.exploreGen, evaluate: this.evalGen },
    };
  }

  /** Exploration noise std noiseScale * alpha, [1]. */
  private noiseStd(): Tensor {
    return noGrad(() => scale(exp(this.temperature.logAlpha), this.config.noiseScale));
  }

  act(obs: Tensor, explore: boolean): Tensor {
    if (obs.rank !== 2 || obs.shape[1] !== this.obsDim) throw new Error(`SDACAgent.act: obs must be [n, ${this.obsDim}], got [${obs.shape}]`);
    return noGrad(() => {
      const gen = explore ? this.exploreGen : this.evalGen;
      const a = sampleActions(this.policyTargetChain, this.critic, obs, gen, this.config.particles, explore ? this.noiseStd() : null);
      return explore ? clamp(a, -1, 1) : a;
    });
  }

  updateVariant(u: number): number {
    return sdacUpdateVariant(this.config, u);
  }

  update(store: ReplayStore, variant: number): Record<string, Tensor> {
    if (variant !== UPDATE_CRITIC && variant !== UPDATE_POLICY && variant !== UPDATE_TEMPERATURE) {
      throw new Error(`SDACAgent.update: unknown variant ${variant}`);
    }
    const c = this.config;
    const gen = this.trainGen;
    const batch = store.sample(c.batch, gen);
    const logAlpha = this.temperature.logAlpha;
    const M = c.reverseSamples;

    // Everything the losses need from the networks before any of them moves, as in the code's single jit.
    const pre = noGrad(() => {
      const noiseStd = this.noiseStd();
      if (variant === UPDATE_CRITIC) {
        const nextActions = sampleActions(this.policyChain, this.critic, batch.nextObs, gen, c.particles, noiseStd);
        return { nextV: this.criticTarget.min(batch.nextObs, nextActions), rs: null, weights: null };
      }
      // the next states' and the states' actions from one set of chains (half the dispatches of two)
      const B = c.batch;
      const both = sampleActions(this.policyChain, this.critic, concat([batch.nextObs, batch.obs], 0), gen, c.particles, noiseStd);
      const nextV = this.criticTarget.min(batch.nextObs, slice(both, 0, B, 0));
      const rs = reverseSamples(slice(both, B, 2 * B, 0), this.schedule, gen, M);
      const q = this.critic.min(repeatRows(batch.obs, M), rs.actions);
      const energy = scale(exp(neg(logAlpha)), c.energyScale);
      return { nextV, rs, weights: energyWeights(q, M, energy) };
    });

    const [q1, q2] = this.critic.forward(batch.obs, batch.actions);
    const criticLoss = twinTdLoss(q1, q2, scale(batch.rewards, c.rewardScale), batch.notDone, pre.nextV, c.discount, 'sum');
    this.criticOpt.group.zeroGrad();
    backward(criticLoss);
    this.criticOpt.step();
    const out: Record<string, Tensor> = { critic: detach(criticLoss), q: noGrad(() => mean(minimum(q1, q2))) };
    if (variant === UPDATE_CRITIC) return out;

    const rs = pre.rs!;
    const eps = this.policyNet.forward(rs.noisy, rs.time, batch.obs);
    const policyLoss = weightedScoreLoss(eps, rs.noise, pre.weights!, M);
    this.policyOpt.group.zeroGrad();
    backward(policyLoss);
    this.policyOpt.step();
    out.policy = detach(policyLoss);

    if (variant === UPDATE_TEMPERATURE) {
      const { loss } = temperatureLoss(logAlpha, this.actDim, c.noiseScale, this.targetEntropy);
      this.temperatureOpt.group.zeroGrad();
      backward(loss);
      this.temperatureOpt.step();
      out.temperature = detach(loss);
    }

    polyakUpdate(this.criticTarget.paramGroup(), this.criticOpt.group, c.tau);
    polyakUpdate(this.policyTargetNet.paramGroup(), this.policyOpt.group, c.tau);
    return out;
  }

  async stats(): Promise<Record<string, number>> {
    const logAlpha = (await this.temperature.logAlpha.read())[0]!;
    const { noiseScale } = this.config;
    const entropy = 0.5 * this.actDim * Math.log(2 * Math.PI * Math.E * (noiseScale * Math.exp(logAlpha)) ** 2);
    return { alpha: Math.exp(logAlpha), entropy, policyLr: this.policyOpt.schedule!(this.policyOpt.stepCount) };
  }

  dispose(): void {
    for (const opt of [this.policyOpt, this.criticOpt, this.temperatureOpt]) opt.dispose();
    this.stepTimes.dispose();
  }
}

function checkConfig(c: SDACAgentConfig): void {
  const positiveInts: (keyof SDACAgentConfig)[] = ['batch', 'T', 'actorHidden', 'actorDepth', 'particles', 'reverseSamples', 'delay', 'alphaEvery'];
  for (const key of positiveInts) {
    const v = c[key] as number;
    if (!Number.isInteger(v) || v < 1) throw new Error(`SDAC: ${key} must be a positive integer, got ${v}`);
  }
  if (c.alphaEvery % c.delay !== 0) throw new Error(`SDAC: alphaEvery (${c.alphaEvery}) must be a multiple of delay (${c.delay})`);
  const nonNegative: (keyof SDACAgentConfig)[] = ['actorLr', 'actorLrEnd', 'lrDecayBegin', 'criticLr', 'alphaLr', 'noiseScale', 'energyScale', 'rewardScale'];
  for (const key of nonNegative) {
    const v = c[key] as number;
    if (!(Number.isFinite(v) && v >= 0)) throw new Error(`SDAC: ${key} must be a non-negative number, got ${v}`);
  }
  if (!(c.lrDecaySteps > 0)) throw new Error(`SDAC: lrDecaySteps must be positive, got ${c.lrDecaySteps}`);
  if (!(c.discount >= 0 && c.discount <= 1)) throw new Error(`SDAC: discount must be in [0, 1], got ${c.discount}`);
  if (!(c.tau > 0 && c.tau <= 1)) throw new Error(`SDAC: tau must be in (0, 1], got ${c.tau}`);
  if (!(c.noiseScale > 0)) throw new Error(`SDAC: noiseScale must be positive (the entropy estimate takes its log), got ${c.noiseScale}`);
  if (c.criticHidden.length === 0 || c.criticHidden.some((w) => !Number.isInteger(w) || w < 1)) {
    throw new Error(`SDAC: criticHidden must be one or more positive integers, got [${c.criticHidden}]`);
  }
  if (!Number.isSafeInteger(c.seed) || c.seed < 0) throw new Error(`SDAC: seed must be a non-negative integer, got ${c.seed}`);
}
