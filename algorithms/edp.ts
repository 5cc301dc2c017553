// EDP: Efficient Diffusion Policies (Kang, Ma, Du, Pang, Yan, NeurIPS 2023). The policy is a long-chain
// diffusion model (T = 100, scaled linear schedule) whose policy objective never runs the chain: one network
// call at a random step k gives both the diffusion loss and the action approximation
//   a0Hat = clip((a_k - sqrt(1 - abar_k) eps_theta(a_k, k, s)) / sqrt(abar_k)),
// which feeds the backbone's policy term:
//   td3  L = L_diff + alpha (-mean Q_j(s, a0Hat) / stopgrad(mean |Q_j(s, a0Hat)|)), j ~ U{1, 2} per step
//   crr  L = L_diff - mean w log N(a_data; a0Hat, I),  w = min(20, exp(adv)), adv = min Q(s, a_data) - mean of
//        min Q(s, a) over 10 a ~ N(a0Hat, I)
//   iql  L = L_diff - mean w log N(a_data; a0Hat, I),  w = min(100, exp(3 (min Q'(s, a_data) - V(s))))
// TD3 and CRR train a twin Q on r + 0.99 notDone min Q'(s', a') with a' from the target policy by DPM-Solver;
// IQL trains V by expectile regression and Q on V(s'), each step in the paper code's order V, policy, Q (the
// policy's weights and Q's targets see the V of this step). Evaluation draws 50 DPM-Solver samples per state and
// picks one from softmax(min Q').
//
// `node algorithms/edp.ts --help` for the command line; with no arguments it runs the quick Pendulum preset
// with the TD3 backbone.
import { backward, detach, noGrad } from '../engine/autograd.ts';
import { zeros } from '../engine/basic.ts';
import { frozen } from '../engine/nn.ts';
import { add, minimum, scale, sub } from '../engine/ops/elementwise.ts';
import { mean } from '../engine/ops/reduce.ts';
import { concat, reshape } from '../engine/ops/shape.ts';
import { clippedStep, polyakUpdate } from '../engine/optim.ts';
import type { Generator } from '../engine/random.ts';
import { keep, type Tensor } from '../engine/tensor.ts';
import type { ReplayBatch } from '../datasets/replay.ts';
import { repeatRows } from './diffusion/select.ts';
import {
  SEED, diffusionPolicyMethod, makeDiffusionActor, randomHeadQLoss, samplePolicy, updateTarget, type DiffusionActor, type MethodModels,
} from './common/diffusion-policy.ts';
import { IQLCritic, awrLoss, expectileLoss, twinTdLoss } from './common/iql.ts';
import { offlineMain } from './common/offline-method.ts';
import type { StepLosses } from './common/step-scheduler.ts';
import { TwinQCritic } from './common/twin-q-critic.ts';
import { EDP_CLI } from './edp/cli.ts';
import type { Backbone, EdpConfig } from './edp/presets.ts';

export { taskConfig, BACKBONES, type Backbone, type EdpConfig } from './edp/presets.ts';

export interface EdpModels extends MethodModels {
  /** TwinQCritic for td3 and crr, IQLCritic for iql. */
  critic: TwinQCritic | IQLCritic;
  cfg: EdpConfig;
}

/** TD3 and CRR: the twin Q's step on targets at next actions from the target policy (DPM-Solver by default). */
function criticStep(actor: DiffusionActor, critic: TwinQCritic, cfg: EdpConfig, batch: ReplayBatch, gen: Generator): Tensor {
  const n = cfg.maxQBackup ? cfg.maxQSamples : 1;
  const nextActions = samplePolicy(actor.target!, repeatRows(batch.nextObs, n), gen, cfg.targetSampler, cfg.targetSamplerSteps);
  return critic.update(batch, critic.nextValue(batch.nextObs, nextActions, n));
}

/** TD3's guide term at a0Hat: alpha times the random head's normalised -Q (critic frozen). */
export function td3Guide(critic: TwinQCritic, cfg: EdpConfig, obs: Tensor, a0Hat: Tensor, gen: Generator): Tensor {
  return frozen([critic.q], () => {
    const [q1, q2] = critic.q.forward(obs, a0Hat);
    return scale(randomHeadQLoss(q1, q2, gen, 'same'), cfg.alpha);
  });
}

/** CRR's advantage of the data actions against cfg.crrSamples actions ~ N(a0Hat, I), [B, 1], no gradient. */
export function crrAdvantage(critic: TwinQCritic, cfg: EdpConfig, batch: ReplayBatch, a0Hat: Tensor, gen: Generator): Tensor {
  return noGrad(() => {
    const n = cfg.crrSamples;
    const [B, D] = a0Hat.shape as [number, number];
    const around = add(repeatRows(detach(a0Hat), n), gen.normal([B * n, D]));
    const qPolicy = mean(reshape(critic.q.min(repeatRows(batch.obs, n), around), [B, n]), { axis: -1, keepDim: true });
    return sub(critic.q.min(batch.obs, batch.actions), qPolicy);
  });
}

/** One policy step on diffCoef L_diff + guideCoef guide; returns the loss and its terms. */
export function policyStep(actor: DiffusionActor, cfg: EdpConfig, diff: Tensor, guide: Tensor): StepLosses {
  const loss = add(scale(diff, cfg.diffCoef), scale(guide, cfg.guideCoef));
  actor.optimizer.group.zeroGrad();
  backward(loss);
  clippedStep(actor.optimizer, cfg.gradClip);
  return { actorLoss: detach(loss), terms: [concat([detach(diff), detach(guide)]), ['diffLoss', 'guide']] };
}

/**
 * IQL in EDP's order: V by expectile regression to min Q'(s, a); the policy, weighted by
 * exp(awrTemperature (min Q'(s, a) - V(s))) with the V just updated; Q on r + discount notDone V(s') with that
 * V; then Q's Polyak update.
 */
function iqlStep(m: EdpModels, zeroLogStd: Tensor, batch: ReplayBatch, gen: Generator): StepLosses {
  const { actor, cfg } = m;
  const critic = m.critic as IQLCritic;
  const c = critic.config;
  const qMin = noGrad(() => minimum(...critic.qTarget.forward(batch.obs, batch.actions)));
  const vLoss = expectileLoss(critic.v.forward(batch.obs), qMin, c.expectile);
  critic.vOptimizer.group.zeroGrad();
  backward(vLoss);
  clippedStep(critic.vOptimizer, cfg.gradClip);

  const advantage = noGrad(() => sub(qMin, critic.v.forward(batch.obs)));
  const { loss: diff, a0Hat } = actor.diffusion.actionApproximation(batch.actions, batch.obs, gen);
  const guide = awrLoss(a0Hat, batch.actions, advantage, { beta: cfg.awrTemperature, maxWeight: cfg.awrMaxWeight, logStd: zeroLogStd });
  const policy = policyStep(actor, cfg, diff, guide);

  const nextV = noGrad(() => critic.v.forward(batch.nextObs));
  const [q1, q2] = critic.q.forward(batch.obs, batch.actions);
  const qLoss = twinTdLoss(q1, q2, batch.rewards, batch.notDone, nextV, c.discount, c.qLossHeads);
  critic.qOptimizer.group.zeroGrad();
  backward(qLoss);
  clippedStep(critic.qOptimizer, cfg.gradClip);
  polyakUpdate(critic.qTarget.paramGroup(), critic.qOptimizer.group, c.tau);
  return { qLoss: detach(qLoss), vLoss: detach(vLoss), ...policy };
}

/**
 * One training step of the backbone: TD3 and CRR update the critic, then the policy on the action
 * approximation, then the variant's target-policy update; IQL runs iqlStep.
 */
export function trainStep(m: EdpModels, zeroLogStd: Tensor, batch: ReplayBatch, gen: Generator, variant: number): StepLosses {
  const { actor, cfg } = m;
  if (cfg.backbone === 'iql') return iqlStep(m, zeroLogStd, batch, gen);
  const critic = m.critic as TwinQCritic;
  const qLoss = criticStep(actor, critic, cfg, batch, gen);
  const { loss: diff, a0Hat } = actor.diffusion.actionApproximation(batch.actions, batch.obs, gen);
  const guide =
    cfg.backbone === 'td3'
      ? td3Guide(critic, cfg, batch.obs, a0Hat, gen)
      : awrLoss(a0Hat, batch.actions, crrAdvantage(critic, cfg, batch, a0Hat, gen), { beta: 1 / cfg.crrBeta, maxWeight: cfg.crrMaxWeight, logStd: zeroLogStd });
  const losses = { qLoss, ...policyStep(actor, cfg, diff, guide) };
  updateTarget(actor, cfg, variant);
  return losses;
}

export function makeModels(obsDim: number, actDim: number, cfg: EdpConfig): EdpModels {
  const iql = cfg.backbone === 'iql';
  const actor = makeDiffusionActor('edp', obsDim, actDim, cfg, !iql);
  const critic = iql
    ? new IQLCritic(
        obsDim,
        actDim,
        { hidden: [...cfg.criticHidden], act: 'mish', lr: cfg.criticLr, expectile: cfg.expectile, discount: cfg.discount, tau: cfg.targetTau, gradClip: cfg.gradClip > 0 ? cfg.gradClip : null },
        { seed: cfg.seed * 16 + SEED.critic },
      )
    : new TwinQCritic(obsDim, actDim, { hidden: cfg.criticHidden, lr: cfg.criticLr, discount: cfg.discount, tau: cfg.targetTau, gradClip: cfg.gradClip, seed: cfg.seed * 16 + SEED.critic });
  // the Gaussian around a0Hat has unit variance: log-std 0, a constant
  const zeroLogStd = keep(zeros([actDim]));
  const m: EdpModels = {
    actor,
    critic,
    cfg,
    criticModules: critic.modules(),
    criticOptimizers: critic instanceof IQLCritic ? { q: critic.qOptimizer, v: critic.vOptimizer } : { critic: critic.optimizer },
    step: (batch, gen, variant) => trainStep(m, zeroLogStd, batch, gen, variant),
    dispose: () => {
      actor.optimizer.dispose();
      critic.dispose();
      zeroLogStd.dispose();
    },
  };
  return m;
}

const METHOD_NAMES: Record<Backbone, string> = { td3: 'EDP (TD3)', crr: 'EDP (CRR)', iql: 'EDP (IQL)' };

export const EDP = diffusionPolicyMethod('edp', (cfg: EdpConfig) => METHOD_NAMES[cfg.backbone], makeModels, EDP_CLI);

await offlineMain(import.meta.url, EDP);
