// Diffusion-QL (Wang, Hunt, Zhou, ICLR 2023): the policy is a T-step diffusion model (T = 5, vp schedule)
// trained on behaviour cloning plus Q, with the Q term backpropagated through the whole reverse chain:
//   critic  y = r + 0.99 notDone min(Q1', Q2')(s', a'),  a' from the EMA policy's full chain (max-Q backup:
//           max over 10 a' per head, then min); loss MSE(Q1, y) + MSE(Q2, y); Polyak 0.005 every step
//   actor   a_new = reverse chain with gradient; q_loss = -mean Q1(s, a_new) / stopgrad(mean |Q2(s, a_new)|),
//           heads swapped with probability 0.5; loss = L_bc + eta q_loss
//   EMA     decay 0.995 every 5 steps from step 1000 (a copy before)
// Evaluation draws 50 actions per state with the online policy and picks one from softmax(min Q').
//
// `node algorithms/dql.ts --help` for the command line; with no arguments it runs the quick Pendulum preset.
import { backward, detach } from '../engine/autograd.ts';
import { frozen } from '../engine/nn.ts';
import { add, scale } from '../engine/ops/elementwise.ts';
import { concat } from '../engine/ops/shape.ts';
import { clippedStep } from '../engine/optim.ts';
import type { Generator } from '../engine/random.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ReplayBatch } from '../datasets/replay.ts';
import { ddpmSample } from './diffusion/samplers.ts';
import { repeatRows } from './diffusion/select.ts';
import {
  SEED, diffusionPolicyMethod, makeDiffusionActor, randomHeadQLoss, samplePolicy, updateTarget, type DiffusionActor, type MethodModels,
} from './common/diffusion-policy.ts';
import { offlineMain } from './common/offline-method.ts';
import { TwinQCritic } from './common/twin-q-critic.ts';
import { DQL_CLI } from './dql/cli.ts';
import type { DqlConfig } from './dql/presets.ts';

export { taskConfig, type DqlConfig } from './dql/presets.ts';

export interface DqlModels extends MethodModels {
  critic: TwinQCritic;
  cfg: DqlConfig;
}

/**
 * The policy's loss on a batch: L_bc + eta q_loss with a_new drawn through the reverse chain with gradient
 * (the critic's parameters off the tape). Returns the loss and its terms [L_bc, q_loss].
 */
export function actorLoss(actor: DiffusionActor, critic: TwinQCritic, cfg: DqlConfig, batch: ReplayBatch, gen: Generator): { loss: Tensor; bc: Tensor; q: Tensor } {
  const d = actor.diffusion;
  const bc = d.loss(batch.actions, batch.obs, gen);
  const rows = batch.obs.shape[0]!;
  const aNew = ddpmSample(d, batch.obs, { batch: rows, actionDim: batch.actions.shape[1]!, generator: gen, logVarMode: d.logVarMode, withGrad: true });
  const q = frozen([critic.q], () => {
    const [q1, q2] = critic.q.forward(batch.obs, aNew);
    return randomHeadQLoss(q1, q2, gen, 'other');
  });
  return { loss: add(bc, scale(q, cfg.eta)), bc, q };
}

/** One training step: critic (targets from the EMA policy's chain), policy, then the variant's EMA update. */
export function trainStep(actor: DiffusionActor, critic: TwinQCritic, cfg: DqlConfig, batch: ReplayBatch, gen: Generator, variant: number) {
  const n = cfg.maxQBackup ? cfg.maxQSamples : 1;
  const nextActions = samplePolicy(actor.target!, repeatRows(batch.nextObs, n), gen, 'ddpm', cfg.T);
  const qLoss = critic.update(batch, critic.nextValue(batch.nextObs, nextActions, n));
  const { loss, bc, q } = actorLoss(actor, critic, cfg, batch, gen);
  actor.optimizer.group.zeroGrad();
  backward(loss);
  clippedStep(actor.optimizer, cfg.gradClip);
  updateTarget(actor, cfg, variant);
  return { qLoss, actorLoss: detach(loss), terms: [concat([detach(bc), detach(q)]), ['bcLoss', 'qTerm']] as [Tensor, string[]] };
}

export function makeModels(obsDim: number, actDim: number, cfg: DqlConfig): DqlModels {
  const actor = makeDiffusionActor('dql', obsDim, actDim, cfg, true);
  const critic = new TwinQCritic(obsDim, actDim, {
    hidden: cfg.criticHidden, lr: cfg.criticLr, discount: cfg.discount, tau: cfg.targetTau, gradClip: cfg.gradClip, seed: cfg.seed * 16 + SEED.critic,
  });
  return {
    actor,
    critic,
    cfg,
    criticModules: critic.modules(),
    criticOptimizers: { critic: critic.optimizer },
    step: (batch, gen, variant) => trainStep(actor, critic, cfg, batch, gen, variant),
    dispose: () => {
      actor.optimizer.dispose();
      critic.dispose();
    },
  };
}

export const DQL = diffusionPolicyMethod('dql', () => 'Diffusion-QL', makeModels, DQL_CLI);

await offlineMain(import.meta.url, DQL);
