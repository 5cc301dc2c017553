// SRPO: Score Regularized Policy Optimization through Diffusion Behavior (Chen, Lu, Wang, Su, Zhu, ICLR 2024).
//
// A deterministic one-step actor is extracted from two pretrained models, each trained once and independently:
//   phase 1  behaviour model: eps_theta(a_t, t, s) on the VP-SDE (ScoreNet_IDQL), t ~ U(1e-3, 1)
//   phase 2  critic: IQL (twin Q, expectile V), trained on the same data
//   phase 3  actor pi(s): per batch, a = pi(s), t ~ U(0.02, 0.98), a_t = alpha_t a + sigma_t z and
//              L = mean_b [ w(t) (eps_theta(a_t, t, s) . a) - beta (grad_a Q(s, a) . a) ]
//            whose gradient is the policy gradient of Q regularised by the behaviour score (the KL to the
//            behaviour policy, estimated at every noise level), with w(t) = sigma_t^2.
// Evaluation runs the actor, one forward pass per action, in the matching environment.
//
// `node algorithms/srpo.ts --help` for the command line; with no arguments it runs the quick Pendulum preset.
import { backward, detach, noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/host-rng.ts';
import { AdamW, cosineLR } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ReplayBatch, ReplayStore } from '../datasets/replay.ts';
import { noiseVPSDE } from './diffusion/losses.ts';
import { BehaviorModel, type BehaviorConfig } from './diffusion/behavior.ts';
import { VPSDEDiffusion } from './diffusion/models.ts';
import { IDQLScoreNet } from './diffusion/networks.ts';
import { VPSDE } from './diffusion/schedules.ts';
import { IQLCritic } from './common/iql.ts';
import { diffusionBaseline, mlpBaseline } from './common/baselines.ts';
import { DeterministicActor } from './common/deterministic-actor.ts';
import { envPolicy } from './common/evaluation.ts';
import { offlineMain, type OfflineMethod } from './common/offline-method.ts';
import type { PhaseRun } from './common/phase.ts';
import { SRPO_CLI } from './srpo/cli.ts';
import { srpoSurrogateLoss } from './srpo/loss.ts';
import type { SrpoConfig } from './srpo/presets.ts';

export { taskConfig, type SrpoConfig } from './srpo/presets.ts';

/** Per-phase stream offsets, so the phases draw independent random numbers from one seed. */
const PHASE_SEED = { behavior: 1, critic: 2, actor: 3 } as const;

// =========================================================================================================
// Phase 1: behaviour model

export interface SrpoBehavior {
  /** The toolkit's 'srpo' behaviour model: ScoreNet_IDQL on the VP-SDE (algorithms/diffusion/behavior.ts). */
  model: BehaviorModel;
  diffusion: VPSDEDiffusion;
  net: IDQLScoreNet;
  /** The network's dropout mask stream, checkpointed with it so a resumed run draws the same masks. */
  dropout: Generator | null;
}

/**
 * ScoreNet_IDQL on the VP-SDE, wrapped in the toolkit's BehaviorModel (training loss, DPM-Solver sampling). The
 * network is built here rather than by makeBehaviorModel because the time-embedding sizes are part of the
 * preset: with a 64-wide trunk the paper's 64 Fourier features and 128-wide conditioning drown the state (on
 * the Pendulum data the samples stayed uncorrelated with the behaviour controller after 3000 steps, against
 * 0.28 with 32 and 32).
 */
export function makeBehavior(obsDim: number, actDim: number, cfg: SrpoConfig): SrpoBehavior {
  const dropout = cfg.behaviorDropout > 0 ? new Generator(cfg.seed * 16 + 11) : null;
  const net = new IDQLScoreNet(obsDim, actDim, {
    hidden: cfg.behaviorHidden,
    blocks: cfg.behaviorBlocks,
    dropout: cfg.behaviorDropout,
    embedDim: cfg.behaviorEmbedDim,
    condDim: cfg.behaviorCondDim,
    generator: dropout ?? undefined,
    rng: new HostRng(cfg.seed * 16 + PHASE_SEED.behavior),
  });
  const diffusion = new VPSDEDiffusion(net, new VPSDE(), { maxAction: 1 });
  const config: BehaviorConfig = {
    kind: 'srpo', stateDim: obsDim, actionDim: actDim, hidden: cfg.behaviorHidden, maxAction: 1,
    T: null, blocks: cfg.behaviorBlocks, dropout: cfg.behaviorDropout, sigmaData: null,
  };
  return { model: new BehaviorModel(config, net, diffusion), diffusion, net, dropout };
}

/** The paper trains the behaviour model with torch's AdamW, whose default weight decay is 0.01. */
export function behaviorOptimizer(b: SrpoBehavior, cfg: SrpoConfig): AdamW {
  return new AdamW(b.net.paramGroup(), { lr: cfg.behaviorLr, weightDecay: 0.01 });
}

/** One step: mean over the batch of sum over dims (eps_theta(a_t, t, s) - z)^2, t ~ U(1e-3, 1). Call in tidy. */
export function behaviorStep(b: SrpoBehavior, opt: AdamW, batch: ReplayBatch, gen: Generator): Tensor {
  b.net.train();
  const loss = b.model.loss(batch.actions, batch.obs, gen);
  opt.group.zeroGrad();
  backward(loss);
  opt.step();
  return loss;
}

/** Phase 1 over a replay store: the behaviour model, its optimiser, and the data and dropout streams. */
export function behaviorPhase(b: SrpoBehavior, store: ReplayStore, cfg: SrpoConfig, checkpoint: string): PhaseRun & { opt: AdamW; finish(): void } {
  const gen = new Generator(cfg.seed * 16 + PHASE_SEED.behavior);
  const opt = behaviorOptimizer(b, cfg);
  return {
    phase: 'behavior',
    steps: cfg.behaviorSteps,
    checkpoint,
    parts: { modules: { behavior: b.net }, optimizers: { behavior: opt }, generators: b.dropout ? { data: gen, dropout: b.dropout } : { data: gen } },
    step: () => ({ loss: behaviorStep(b, opt, store.sample(cfg.behaviorBatch, gen), gen) }),
    opt,
    finish: () => {
      opt.dispose();
      b.net.eval();
    },
  };
}

// =========================================================================================================
// Phase 2: IQL critic

export function makeCritic(obsDim: number, actDim: number, cfg: SrpoConfig): IQLCritic {
  return new IQLCritic(
    obsDim,
    actDim,
    { expectile: cfg.expectile, discount: cfg.discount, tau: cfg.targetTau, lr: cfg.criticLr, hidden: [...cfg.criticHidden] },
    { seed: cfg.seed * 16 + PHASE_SEED.critic },
  );
}

/** Phase 2: IQL updates on minibatches of the store. */
export function criticPhase(critic: IQLCritic, store: ReplayStore, cfg: SrpoConfig, checkpoint: string): PhaseRun {
  const gen = new Generator(cfg.seed * 16 + PHASE_SEED.critic);
  return {
    phase: 'critic',
    steps: cfg.criticSteps,
    checkpoint,
    parts: { modules: critic.modules(), optimizers: critic.optimizers(), generators: { data: gen } },
    step: () => {
      const { vLoss, qLoss } = critic.update(store.sample(cfg.criticBatch, gen));
      return { qLoss, vLoss };
    },
  };
}

// =========================================================================================================
// Phase 3: actor extraction

export interface ActorTraining {
  actor: DeterministicActor;
  /** Adam with the phase's cosine learning-rate schedule. */
  opt: AdamW;
  behavior: SrpoBehavior;
  critic: IQLCritic;
  schedule: VPSDE;
  cfg: SrpoConfig;
}

/** SRPO's actor (the paper code's Dirac_Policy): [s, hidden x layers, act], ReLU, Tanh output. */
export function makeActor(obsDim: number, actDim: number, cfg: SrpoConfig): DeterministicActor {
  return new DeterministicActor(obsDim, actDim, { hidden: cfg.actorHidden, layers: cfg.actorLayers, rng: new HostRng(cfg.seed * 16 + PHASE_SEED.actor) });
}

export function actorTraining(actor: DeterministicActor, behavior: SrpoBehavior, critic: IQLCritic, cfg: SrpoConfig): ActorTraining {
  // Adam with cosine annealing to 0 over the phase, as the paper's CosineAnnealingLR(T_max = all steps)
  const opt = new AdamW(actor.paramGroup(), { lr: cfg.actorLr, schedule: cosineLR(cfg.actorLr, Math.max(1, cfg.actorSteps)) });
  return { actor, opt, behavior, critic, schedule: behavior.diffusion.schedule, cfg };
}

/**
 * One policy-extraction step on a batch of states (call in tidy); the optimiser's step count sets the
 * learning rate. Returns the loss and its two terms [mean w (eps . a), mean g . a].
 */
export function actorStep(tr: ActorTraining, obs: Tensor, gen: Generator): { loss: Tensor; terms: Tensor } {
  const { actor, opt, behavior, critic, cfg } = tr;
  behavior.net.eval();
  const a = actor.forward(obs);
  // the perturbation and the behaviour score are constants of the loss: no tape through them
  const { eps, nb } = noGrad(() => {
    const nb = noiseVPSDE(detach(a), tr.schedule, gen, cfg.tMin, cfg.tMax);
    return { nb, eps: behavior.net.forward(nb.xt, nb.time, obs) };
  });
  const g = critic.targetQGrad(obs, a);
  const out = srpoSurrogateLoss(a, eps, g, nb.alpha, nb.sigma, {
    beta: cfg.beta,
    weighting: cfg.weighting,
    noise: cfg.baseline ? nb.noise : null,
    normalizeQGrad: cfg.normalizeQGrad,
  });
  opt.group.zeroGrad();
  backward(out.loss);
  opt.step();
  return out;
}

/** Phase 3: the surrogate loss on the store's states. */
export function actorPhase(tr: ActorTraining, store: ReplayStore, checkpoint: string): PhaseRun & { finish(): void } {
  const { cfg } = tr;
  const gen = new Generator(cfg.seed * 16 + PHASE_SEED.actor);
  return {
    phase: 'actor',
    steps: cfg.actorSteps,
    checkpoint,
    parts: { modules: { actor: tr.actor }, optimizers: { actor: tr.opt }, generators: { data: gen } },
    step: () => {
      const { loss, terms } = actorStep(tr, store.sample(cfg.actorBatch, gen).obs, gen);
      return { loss, terms: [terms, ['scoreTerm', 'qGradTerm']] };
    },
    finish: () => tr.opt.dispose(),
  };
}

// =========================================================================================================
// The method: three phases, the actor deployed, behaviour cloning by the diffusion model and by an MLP

export interface SrpoModels {
  behavior: SrpoBehavior;
  critic: IQLCritic;
  actor: DeterministicActor;
}

export const SRPO: OfflineMethod<SrpoConfig, SrpoModels> = {
  name: 'srpo',
  title: () => 'SRPO',
  policyName: () => 'SRPO actor',
  build: (obsDim, actDim, cfg) => ({ behavior: makeBehavior(obsDim, actDim, cfg), critic: makeCritic(obsDim, actDim, cfg), actor: makeActor(obsDim, actDim, cfg) }),
  phases: [
    {
      name: 'behavior',
      title: 'behaviour',
      loadOption: { name: 'behavior', description: 'load the behaviour model from a checkpoint and skip phase 1' },
      make: (m, cfg, store, path) => behaviorPhase(m.behavior, store, cfg, path),
    },
    {
      name: 'critic',
      loadOption: { name: 'critic', description: 'load the critic from a checkpoint and skip phase 2' },
      make: (m, cfg, store, path) => criticPhase(m.critic, store, cfg, path),
    },
    { name: 'actor', make: (m, cfg, store, path) => actorPhase(actorTraining(m.actor, m.behavior, m.critic, cfg), store, path) },
  ],
  policy: (m, _cfg, data, box) => envPolicy((s) => m.actor.forward(s), data.obsStats, box),
  baselines: (cfg) => [
    diffusionBaseline('behavior', (m: SrpoModels) => m.behavior.model, { sampler: 'dpm', steps: cfg.bcSolverSteps }, `DPM-Solver++ ${cfg.bcSolverSteps} steps`, cfg.seed),
    // the actor's network fitted by mean squared error, with the actor phase's batch, learning rate and steps
    mlpBaseline('behavior', { hidden: cfg.actorHidden, layers: cfg.actorLayers, lr: cfg.actorLr, steps: cfg.actorSteps, batch: cfg.actorBatch, seed: cfg.seed }),
  ],
  dispose: (m) => m.critic.dispose(),
  cli: SRPO_CLI,
};

await offlineMain(import.meta.url, SRPO);
