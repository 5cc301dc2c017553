// DTQL: Diffusion Trusted Q-Learning (Chen, Wang, Zhou, NeurIPS 2024).
//
// A diffusion model clones the behaviour policy; a one-step Gaussian-tanh policy is trained to maximise Q while
// the diffusion loss evaluated at its own actions (the trust-region loss) keeps those actions where the behaviour
// model puts mass, without ever sampling the diffusion chain:
//   behaviour  D_phi on the EDM parameterisation, L_BC = E ||D_phi(a + sigma eps, sigma; s) - a||^2 / c_out^2
//   critic     IQL: twin Q (LayerNorm + Mish), V regressed to the online min Q by expectile, one joint step
//              (valueTarget 'target': to the Polyak-averaged target Q instead, as the quick Pendulum preset)
//   actor      L = alpha L_TR(a_theta) - mean min(Q1, Q2)(s, a_theta) + gamma (-mean log pi_theta(a_data | s)),
//              L_TR = E ||D_phi(a_theta + sigma eps, sigma; s) - a_theta||^2 / c_out^2, only theta stepped
// Pretraining fits the behaviour model and the critic; then every step updates critic, behaviour model and actor
// on one batch. Evaluation draws `candidates` one-step actions per state and picks one from softmax(min Q').
//
// `node algorithms/dtql.ts --help` for the command line; with no arguments it runs the quick Pendulum preset.
import { backward, detach, noGrad } from '../engine/autograd.ts';
import { zeros } from '../engine/basic.ts';
import { HostRng } from '../engine/host-rng.ts';
import { frozen } from '../engine/nn.ts';
import { add, neg, scale, sub } from '../engine/ops/elementwise.ts';
import { mean } from '../engine/ops/reduce.ts';
import { concat } from '../engine/ops/shape.ts';
import { AdamW, cosineLR } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ObservationStats } from '../datasets/presets.ts';
import type { ReplayBatch, ReplayStore } from '../datasets/replay.ts';
import type { BatchPolicy } from '../envs/evaluate.ts';
import { makeBehaviorModel, type BehaviorModel } from './diffusion/behavior.ts';
import type { EDMDiffusion } from './diffusion/models.ts';
import { repeatRows, selectByCritic } from './diffusion/select.ts';
import type { ActionBox } from './common/action-box.ts';
import { diffusionBaseline, mlpBaseline } from './common/baselines.ts';
import { envPolicy } from './common/evaluation.ts';
import { IQLCritic, IQL_DTQL } from './common/iql.ts';
import { offlineMain, type OfflineMethod } from './common/offline-method.ts';
import type { PhaseRun } from './common/phase.ts';
import type { StepLosses } from './common/step-scheduler.ts';
import { GaussianTanhActor } from './common/gaussian-actor.ts';
import { DTQL_CLI } from './dtql/cli.ts';
import type { DtqlConfig } from './dtql/presets.ts';

export { taskConfig, type DtqlConfig } from './dtql/presets.ts';



/** Stream offsets, so networks and phases draw independent random numbers from one seed (7 and 9: the baselines). */
const SEED = { behavior: 1, critic: 2, actor: 3, pretrain: 4, train: 5, select: 8 } as const;

// =========================================================================================================
// Models

export interface DtqlModels {
  /** The toolkit's 'dtql' behaviour model: DTQLDenoiserNet with EDM preconditioning. */
  behavior: BehaviorModel;
  diffusion: EDMDiffusion;
  critic: IQLCritic;
  actor: GaussianTanhActor;
  behaviorOpt: AdamW;
  actorOpt: AdamW;
  cfg: DtqlConfig;
}

/** The three networks and the behaviour and actor optimisers (the critic holds its own). */
export function makeModels(obsDim: number, actDim: number, cfg: DtqlConfig): DtqlModels {
  const behavior = makeBehaviorModel('dtql', obsDim, actDim, { hidden: cfg.behaviorHidden, maxAction: 1, seed: cfg.seed * 16 + SEED.behavior });
  const critic = new IQLCritic(
    obsDim,
    actDim,
    { ...IQL_DTQL, hidden: [...cfg.criticHidden], lr: cfg.criticLr, expectile: cfg.expectile, discount: cfg.discount, tau: cfg.targetTau, valueTarget: cfg.valueTarget ?? 'online' },
    { seed: cfg.seed * 16 + SEED.critic },
  );
  const actor = new GaussianTanhActor(obsDim, actDim, { hidden: cfg.actorHidden, layers: cfg.actorLayers, rng: new HostRng(cfg.seed * 16 + SEED.actor) });
  return {
    behavior,
    diffusion: behavior.diffusion as EDMDiffusion,
    critic,
    actor,
    behaviorOpt: new AdamW(behavior.net.paramGroup(), { lr: cfg.lr }),
    actorOpt: new AdamW(actor.paramGroup(), { lr: cfg.lr }),
    cfg,
  };
}

export function disposeModels(m: DtqlModels): void {
  m.behaviorOpt.dispose();
  m.actorOpt.dispose();
  m.critic.dispose();
}

// =========================================================================================================
// Training steps (recordable: no readbacks, no host writes, learning rates from the optimisers, no branches
// that change from step to step). Call inside tidy.

/** One Adam step of the behaviour model on its EDM loss; returns the loss. */
export function behaviorStep(m: DtqlModels, batch: ReplayBatch, gen: Generator): Tensor {
  const loss = m.behavior.loss(batch.actions, batch.obs, gen);
  m.behaviorOpt.group.zeroGrad();
  backward(loss);
  m.behaviorOpt.step();
  return loss;
}

/**
 * One Adam step of the actor on alpha L_TR - mean min Q(s, a) + gamma NLL(a_data). The behaviour network and
 * the online Q are frozen for the step, so only the actor's parameters get gradients. Returns the loss and its
 * terms [L_TR, mean min Q, NLL (0 when gamma is 0)].
 */
export function actorStep(m: DtqlModels, batch: ReplayBatch, gen: Generator): { loss: Tensor; terms: Tensor } {
  const { actor, diffusion, critic, actorOpt, cfg } = m;
  return frozen([m.behavior.net, critic.q], () => {
    const a = actor.sample(batch.obs, gen);
    const trLoss = diffusion.trustRegionLoss(a, batch.obs, gen);
    const q = mean(critic.q.min(batch.obs, a));
    let loss = sub(scale(trLoss, cfg.alpha), q);
    let nll: Tensor | null = null;
    if (cfg.gamma > 0) {
      nll = neg(mean(actor.logProb(batch.obs, batch.actions)));
      loss = add(loss, scale(nll, cfg.gamma));
    }
    actorOpt.group.zeroGrad();
    backward(loss);
    actorOpt.step();
    return { loss: detach(loss), terms: concat([detach(trLoss), detach(q), nll ? detach(nll) : zeros([1])]) };
  });
}

/** Pretraining: one behaviour step and one critic step on the same batch (the paper's order). */
export function pretrainStep(m: DtqlModels, batch: ReplayBatch, gen: Generator): StepLosses {
  const bcLoss = behaviorStep(m, batch, gen);
  const { qLoss, vLoss } = m.critic.update(batch);
  return { bcLoss, qLoss, vLoss };
}

/** Training: critic, behaviour model, then actor, on one batch (the paper's order). */
export function trainStep(m: DtqlModels, batch: ReplayBatch, gen: Generator): StepLosses {
  const { qLoss, vLoss } = m.critic.update(batch);
  const bcLoss = behaviorStep(m, batch, gen);
  const { loss, terms } = actorStep(m, batch, gen);
  return { qLoss, vLoss, bcLoss, actorLoss: loss, terms: [terms, ['trustRegion', 'qPolicy', 'nll']] };
}

/**
 * Cosine decay of every learning rate to 0 over the training phase (the lrDecay presets), as schedules inside
 * the optimisers so recorded steps follow them. All three follow the actor's step count, which is the training
 * step index whatever the behaviour model's and critic's optimisers counted in pretraining (and it is checkpointed
 * with the training phase); within a step the critic and behaviour model step before the actor, so all three see
 * the same index.
 */
export function useDecaySchedules(m: DtqlModels): void {
  const { cfg, actorOpt } = m;
  const factor = cosineLR(1, Math.max(1, cfg.trainSteps));
  actorOpt.schedule = (count) => cfg.lr * factor(count);
  m.behaviorOpt.schedule = () => cfg.lr * factor(actorOpt.stepCount);
  m.critic.setSchedule(() => cfg.criticLr * factor(actorOpt.stepCount));
}

// =========================================================================================================
// The phases as runnable units (what runDtql runs; tests drive them directly)

/** Pretraining over a replay store: the behaviour model and the critic. */
export function pretrainPhase(m: DtqlModels, store: ReplayStore, checkpoint: string): PhaseRun {
  const { cfg } = m;
  const gen = new Generator(cfg.seed * 16 + SEED.pretrain);
  return {
    phase: 'pretrain',
    steps: cfg.pretrainSteps,
    checkpoint,
    parts: {
      modules: { behavior: m.behavior.net, ...m.critic.modules() },
      optimizers: { behavior: m.behaviorOpt, ...m.critic.optimizers() },
      generators: { data: gen },
    },
    step: () => pretrainStep(m, store.sample(cfg.batch, gen), gen),
  };
}

/** Training: critic, behaviour model and actor. */
export function trainPhase(m: DtqlModels, store: ReplayStore, checkpoint: string): PhaseRun {
  const { cfg } = m;
  if (cfg.lrDecay) useDecaySchedules(m);
  const gen = new Generator(cfg.seed * 16 + SEED.train);
  return {
    phase: 'train',
    steps: cfg.trainSteps,
    checkpoint,
    parts: {
      modules: { behavior: m.behavior.net, ...m.critic.modules(), actor: m.actor },
      optimizers: { behavior: m.behaviorOpt, ...m.critic.optimizers(), actor: m.actorOpt },
      generators: { data: gen },
    },
    step: () => trainStep(m, store.sample(cfg.batch, gen), gen),
  };
}

// =========================================================================================================
// Policies

/**
 * DTQL's action selection: per state, `candidates` one-step actions, one drawn from softmax(min(Q1', Q2')),
 * [S, actDim]. No gradient.
 */
export function selectAction(m: DtqlModels, obs: Tensor, gen: Generator, candidates = m.cfg.candidates): Tensor {
  return noGrad(() => {
    const states = candidates === 1 ? obs : repeatRows(obs, candidates);
    const a = m.actor.sample(states, gen);
    if (candidates === 1) return a;
    return selectByCritic(a, m.critic.qTarget.min(states, a), candidates, gen);
  });
}

export function dtqlPolicy(m: DtqlModels, stats: ObservationStats | null, box: ActionBox, gen: Generator): BatchPolicy {
  return envPolicy((s) => selectAction(m, s, gen), stats, box);
}

// =========================================================================================================
// The method: pretraining then training, the selected one-step policy deployed, behaviour cloning by the
// diffusion model (EDM Heun) and by an MLP

export const DTQL: OfflineMethod<DtqlConfig, DtqlModels> = {
  name: 'dtql',
  title: () => 'DTQL',
  policyName: () => 'DTQL policy',
  build: makeModels,
  phases: [
    {
      name: 'pretrain',
      loadOption: { name: 'pretrained', description: 'load the behaviour model and critic from a pretrain checkpoint and skip pretraining' },
      make: (m, _cfg, store, path) => pretrainPhase(m, store, path),
    },
    { name: 'train', make: (m, _cfg, store, path) => trainPhase(m, store, path) },
  ],
  policy: (m, cfg, data, box) => dtqlPolicy(m, data.obsStats, box, new Generator(cfg.seed * 16 + SEED.select)),
  baselines: (cfg) => [
    diffusionBaseline('pretrain', (m: DtqlModels) => m.behavior, { sampler: 'edm-heun', steps: cfg.bcSamplerSteps }, `EDM Heun ${cfg.bcSamplerSteps} steps`, cfg.seed),
    mlpBaseline('pretrain', { hidden: cfg.actorHidden, layers: cfg.actorLayers, lr: cfg.lr, steps: cfg.bcMlpSteps, batch: cfg.batch, seed: cfg.seed }),
  ],
  dispose: disposeModels,
  cli: DTQL_CLI,
};

await offlineMain(import.meta.url, DTQL);
