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
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { backward, detach, noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/init.ts';
import { AdamW, cosineLR, type LRSchedule } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import { dispose as disposeEngine, runtime } from '../engine/runtime.ts';
import { tidy, type Tensor } from '../engine/tensor.ts';
import { square, sub } from '../engine/ops/elementwise.ts';
import { mean } from '../engine/ops/reduce.ts';
import type { ObservationStats } from '../datasets/presets.ts';
import type { ReplayBatch, ReplayStore } from '../datasets/replay.ts';
import type { BatchPolicy, EvaluateResult } from '../envs/evaluate.ts';
import { noiseVPSDE } from './diffusion/losses.ts';
import { BehaviorModel, type BehaviorConfig } from './diffusion/behavior.ts';
import { VPSDEDiffusion } from './diffusion/models.ts';
import { IDQLScoreNet } from './diffusion/networks.ts';
import { VPSDE } from './diffusion/schedules.ts';
import { IQLCritic } from './iql.ts';
import {
  CliError, JsonlLog, assignDefined, RUN_FILES, formatDuration, isMainModule, parseCli, removeStaleTemps, runMain, writeFileAtomic,
  type CheckpointParts, type CliSpec, type OptionSpec, type ProgressStream,
} from './common/run.ts';
import {
  PhaseInterrupted, curvesSvg as offlineCurvesSvg, datasetScores, envPolicy, evaluatePolicy, interruptible, loadOfflineData, openDevice, openRun, ENGINE_CLI_OPTIONS, tuningLog, applyOfflineArgs,
  phaseStart, prepareData, runPhase, say, userError, type OfflineData, type PhaseResult, type PhaseRun, type RunContext,
} from './common/offline.ts';
import { ActionBox, SrpoActor } from './srpo/actor.ts';
import { srpoSurrogateLoss } from './srpo/loss.ts';
import { BUILTIN_DATASETS, QUICK_PENDULUM, TASK_NAMES, taskConfig, type SrpoConfig } from './srpo/presets.ts';

// the data preparation, evaluation and phase runner now live in common/offline.ts; re-exported for callers of this module
export { PhaseInterrupted, datasetScores, evaluatePolicy, prepareData, runPhase, type PhaseResult, type PhaseRun, type RunContext };
export { taskConfig, QUICK_PENDULUM, type SrpoConfig };

export const PHASES = ['behavior', 'critic', 'actor'] as const;
export type Phase = (typeof PHASES)[number];

/** Per-phase stream offsets, so the phases draw independent random numbers from one seed. */
const PHASE_SEED: Record<Phase, number> = { behavior: 1, critic: 2, actor: 3 };


// =========================================================================================================
// Data: z-scored observations, actions in [-1, 1], rewards by the preset, all on the GPU

export type SrpoData = OfflineData;

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

// =========================================================================================================
// Phase 3: actor extraction

export interface ActorTraining {
  actor: SrpoActor;
  /** Adam with the phase's cosine learning-rate schedule. */
  opt: AdamW;
  behavior: SrpoBehavior;
  critic: IQLCritic;
  schedule: VPSDE;
  cfg: SrpoConfig;
}

export function makeActor(obsDim: number, actDim: number, cfg: SrpoConfig): SrpoActor {
  return new SrpoActor(obsDim, actDim, { hidden: cfg.actorHidden, layers: cfg.actorLayers, rng: new HostRng(cfg.seed * 16 + PHASE_SEED.actor) });
}

export function actorTraining(actor: SrpoActor, behavior: SrpoBehavior, critic: IQLCritic, cfg: SrpoConfig): ActorTraining {
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

// =========================================================================================================
// Evaluation

export function actorPolicy(actor: SrpoActor, stats: ObservationStats | null, box: ActionBox): BatchPolicy {
  return envPolicy((s) => actor.forward(s), stats, box);
}

/** Behaviour cloning by the diffusion model itself: one DPM-Solver++ sample per state. */
export function behaviorPolicy(b: SrpoBehavior, stats: ObservationStats | null, box: ActionBox, gen: Generator, steps: number): BatchPolicy {
  return envPolicy((s) => b.model.sample(s, 1, gen, { sampler: 'dpm', steps }), stats, box);
}

/**
 * The other behaviour-cloning baseline: the actor's network fitted to the data's actions by mean squared error
 * (Adam, the actor phase's batch, learning rate and step count). It regresses to the mean action per state, so
 * on data with zero-mean action noise it recovers a denoised behaviour policy.
 */
export function trainBcMlp(
  store: ReplayStore,
  obsDim: number,
  actDim: number,
  cfg: Pick<SrpoConfig, 'actorHidden' | 'actorLayers' | 'actorLr' | 'actorSteps' | 'actorBatch' | 'seed'>,
): SrpoActor {
  const net = new SrpoActor(obsDim, actDim, { hidden: cfg.actorHidden, layers: cfg.actorLayers, rng: new HostRng(cfg.seed * 16 + 9) });
  const opt = new AdamW(net.paramGroup(), { lr: cfg.actorLr });
  const gen = new Generator(cfg.seed * 16 + 9);
  for (let i = 0; i < cfg.actorSteps; i++) {
    tidy(() => {
      const b = store.sample(cfg.actorBatch, gen);
      opt.group.zeroGrad();
      backward(mean(square(sub(net.forward(b.obs), b.actions))));
      opt.step();
    });
    runtime().flush();
  }
  opt.dispose();
  return net;
}

// =========================================================================================================
// The three phases as runnable units (what runSrpo runs; tests drive them directly)

/** Phase 1 over a replay store: the behaviour model, its optimiser, and the data and dropout streams. */
export function behaviorPhase(b: SrpoBehavior, store: ReplayStore, cfg: SrpoConfig, checkpoint: string): PhaseRun & { opt: AdamW } {
  const gen = new Generator(cfg.seed * 16 + PHASE_SEED.behavior);
  const opt = behaviorOptimizer(b, cfg);
  return {
    phase: 'behavior',
    steps: cfg.behaviorSteps,
    checkpoint,
    parts: { modules: { behavior: b.net }, optimizers: { behavior: opt }, generators: b.dropout ? { data: gen, dropout: b.dropout } : { data: gen } },
    step: () => ({ loss: behaviorStep(b, opt, store.sample(cfg.behaviorBatch, gen), gen) }),
    opt,
  };
}

/** Phase 2: IQL updates on minibatches of the store. */
export function criticPhase(critic: IQLCritic, store: ReplayStore, cfg: SrpoConfig, checkpoint: string): PhaseRun {
  const gen = new Generator(cfg.seed * 16 + PHASE_SEED.critic);
  return {
    phase: 'critic',
    steps: cfg.criticSteps,
    checkpoint,
    parts: { modules: critic.modules(), optimizers: { q: critic.qOptimizer, v: critic.vOptimizer }, generators: { data: gen } },
    step: () => {
      const { vLoss, qLoss } = critic.update(store.sample(cfg.criticBatch, gen));
      return { qLoss, vLoss };
    },
  };
}

/** Phase 3: the surrogate loss on the store's states; `evaluate` (optional) scores the actor at eval points. */
export function actorPhase(tr: ActorTraining, store: ReplayStore, checkpoint: string, evaluate?: PhaseRun['evaluate']): PhaseRun {
  const { cfg } = tr;
  const gen = new Generator(cfg.seed * 16 + PHASE_SEED.actor);
  return {
    phase: 'actor',
    steps: cfg.actorSteps,
    checkpoint,
    parts: { modules: { actor: tr.actor }, optimizers: { actor: tr.opt }, generators: { data: gen } },
    evalEvery: cfg.evalEvery,
    evaluate,
    step: () => {
      const { loss, terms } = actorStep(tr, store.sample(cfg.actorBatch, gen).obs, gen);
      return { loss, terms: [terms, ['scoreTerm', 'qGradTerm']] };
    },
  };
}

// =========================================================================================================
// The whole run

export interface SrpoRunOptions {
  /** Run directory (created if needed). */
  dir: string;
  /** Continue the phases found in `dir`. */
  resume?: boolean;
  /** Load the behaviour model (or critic) from this checkpoint and skip its phase. */
  behaviorFile?: string;
  criticFile?: string;
  stream?: ProgressStream;
  quiet?: boolean;
  /** Polled after every training step; true stops the run at a checkpoint (see PhaseInterrupted). */
  stopRequested?: () => boolean;
  /** Every step through autograd instead of replaying a recorded step (debugging). */
  eager?: boolean;
}

export interface SrpoSummary {
  task: string;
  env: string;
  dataset: string;
  /** Normalised score of the final actor (D4RL x100). */
  score: { mean: number; std: number; returnMean: number; episodes: number };
  /** The behaviour model sampled with DPM-Solver (behaviour cloning on the same data), when evaluated. */
  bcScore: { mean: number; std: number } | null;
  /** A deterministic MLP fitted to the actions by mean squared error (the other behaviour cloning), when evaluated. */
  bcMlpScore: { mean: number; std: number } | null;
  datasetScore: { mean: number; std: number; episodes: number } | null;
  /** Wall time per phase in seconds (this session; 0 for a phase loaded or already complete). */
  phaseSeconds: Record<Phase | 'evaluation' | 'setup', number>;
  totalSeconds: number;
  evals: { step: number; mean: number; std: number }[];
  dir: string;
}

/** Resolves a dataset name or path to a file path. */
export function datasetPath(nameOrPath: string): string {
  const builtin = BUILTIN_DATASETS[nameOrPath];
  if (builtin) return builtin.path;
  if (!existsSync(nameOrPath)) {
    throw userError(`dataset '${nameOrPath}' is neither a built-in name (${Object.keys(BUILTIN_DATASETS).join(', ')}) nor an existing file`);
  }
  return nameOrPath;
}

/** Runs (or resumes) phases 1-3 and the final evaluation; writes everything under opts.dir. */
export async function runSrpo(cfg: SrpoConfig, opts: SrpoRunOptions): Promise<SrpoSummary> {
  const tStart = performance.now();
  const dir = opts.dir;
  removeStaleTemps(dir);
  const log = new JsonlLog(join(dir, RUN_FILES.log));
  const ctx: RunContext = { cfg, log, stream: opts.stream, quiet: opts.quiet, stopRequested: opts.stopRequested, eager: opts.eager };
  const seconds: SrpoSummary['phaseSeconds'] = { setup: 0, behavior: 0, critic: 0, actor: 0, evaluation: 0 };

  // ---- environment and data; any dimension mismatch stops here, before training
  const file = datasetPath(cfg.dataset);
  const { data, box } = await loadOfflineData(cfg, file, dir, opts);
  const { obsDim, actDim } = data.transitions;
  seconds.setup = (performance.now() - tStart) / 1000;

  const behavior = makeBehavior(obsDim, actDim, cfg);
  const critic = makeCritic(obsDim, actDim, cfg);
  const actor = makeActor(obsDim, actDim, cfg);
  const paths: Record<Phase, string> = { behavior: join(dir, 'behavior.safetensors'), critic: join(dir, 'critic.safetensors'), actor: join(dir, 'actor.safetensors') };
  const allEvals: SrpoSummary['evals'] = [];
  let bcScore: SrpoSummary['bcScore'] = null;
  let bcMlpScore: SrpoSummary['bcMlpScore'] = null;

  /** Decides where a phase starts: loaded from a file (skip), resumed, complete, or from scratch. */
  const prepare = (phase: Phase, parts: CheckpointParts, file: string | undefined): Promise<number | 'done'> =>
    phaseStart(phase, parts, paths[phase], { file, resume: opts.resume, quiet: opts.quiet, log });

  // ---- phase 1: behaviour model
  {
    const run = behaviorPhase(behavior, data.store, cfg, paths.behavior);
    const start = await prepare('behavior', run.parts, opts.behaviorFile);
    if (start !== 'done') seconds.behavior = (await runPhase(run, ctx, start)).ms / 1000;
    run.opt.dispose();
    behavior.net.eval();
    if (cfg.bcEval) {
      const t = performance.now();
      const res = await evaluatePolicy(behaviorPolicy(behavior, data.obsStats, box, new Generator(cfg.seed * 16 + 7), cfg.bcSolverSteps), cfg);
      bcScore = { mean: res.normalizedMean!, std: res.normalizedStd! };
      seconds.evaluation += (performance.now() - t) / 1000;
      log.write({ phase: 'behavior', bcEval: { mean: bcScore.mean, std: bcScore.std, returnMean: res.mean } });
      say(opts, `behaviour cloning (diffusion samples, DPM-Solver++ ${cfg.bcSolverSteps} steps): score ${bcScore.mean.toFixed(1)} +- ${bcScore.std.toFixed(1)}`);
      const t2 = performance.now();
      const mlp = trainBcMlp(data.store, obsDim, actDim, cfg);
      const res2 = await evaluatePolicy(actorPolicy(mlp, data.obsStats, box), cfg);
      bcMlpScore = { mean: res2.normalizedMean!, std: res2.normalizedStd! };
      seconds.evaluation += (performance.now() - t2) / 1000;
      log.write({ phase: 'behavior', bcMlpEval: { mean: bcMlpScore.mean, std: bcMlpScore.std, returnMean: res2.mean } });
      say(opts, `behaviour cloning (MLP, mean squared error, ${cfg.actorSteps} steps): score ${bcMlpScore.mean.toFixed(1)} +- ${bcMlpScore.std.toFixed(1)}`);
    }
  }

  // ---- phase 2: critic
  {
    const run = criticPhase(critic, data.store, cfg, paths.critic);
    const start = await prepare('critic', run.parts, opts.criticFile);
    if (start !== 'done') seconds.critic = (await runPhase(run, ctx, start)).ms / 1000;
  }

  // ---- phase 3: actor
  const tr = actorTraining(actor, behavior, critic, cfg);
  const policy = actorPolicy(actor, data.obsStats, box);
  let final: EvaluateResult | null = null;
  {
    let evalMs = 0;
    const run = actorPhase(tr, data.store, paths.actor, async (step) => {
      const t = performance.now();
      const res = await evaluatePolicy(policy, cfg);
      evalMs += performance.now() - t;
      if (step === cfg.actorSteps) final = res;
      return { mean: res.normalizedMean!, std: res.normalizedStd!, returnMean: res.mean };
    });
    const start = await prepare('actor', run.parts, undefined);
    if (start !== 'done') {
      const r = await runPhase(run, ctx, start);
      seconds.actor = (r.ms - evalMs) / 1000;
      seconds.evaluation += evalMs / 1000;
      allEvals.push(...r.evals);
    }
  }
  if (!final) {
    const t = performance.now();
    final = await evaluatePolicy(policy, cfg);
    seconds.evaluation += (performance.now() - t) / 1000;
  }
  const result = final as EvaluateResult;
  const summary: SrpoSummary = {
    task: cfg.task,
    env: cfg.env,
    dataset: file,
    score: { mean: result.normalizedMean!, std: result.normalizedStd!, returnMean: result.mean, episodes: result.returns.length },
    bcScore,
    bcMlpScore,
    datasetScore: data.datasetScore,
    phaseSeconds: seconds,
    totalSeconds: (performance.now() - tStart) / 1000,
    evals: allEvals,
    dir,
  };
  log.write({ phase: 'summary', ...summary });
  writeFileAtomic(join(dir, RUN_FILES.summary), JSON.stringify(summary, null, 2));
  writeFileAtomic(join(dir, RUN_FILES.curves), curvesSvg(JsonlLog.read(log.path), { 'BC (diffusion)': bcScore, 'BC (MLP)': bcMlpScore, dataset: data.datasetScore }));
  data.store.dispose();
  critic.dispose();
  tr.opt.dispose();
  return summary;
}

// =========================================================================================================
// Training curves

/** One SVG: a loss chart per phase and the evaluation scores, stacked. */
export function curvesSvg(records: Record<string, unknown>[], baselines: Record<string, { mean: number } | null> = {}): string {
  return offlineCurvesSvg(records, baselines, { phases: PHASES, evalPhase: 'actor', policy: 'SRPO actor' });
}

// =========================================================================================================
// Command line

const CLI_OPTIONS = {
  task: { type: 'string', default: 'pendulum-quick', placeholder: 'name', description: `preset: ${TASK_NAMES.join(', ')}` },
  dataset: { type: 'string', placeholder: 'name|file', description: `D4RL-layout HDF5 file or a built-in dataset (${Object.keys(BUILTIN_DATASETS).join(', ')}); default: the task's` },
  env: { type: 'string', placeholder: 'id', description: 'evaluation environment (default: from the task or dataset name)' },
  seed: { type: 'integer', nonNegative: true, description: 'seed of every network and random stream (default 0)' },
  'behavior-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'phase 1 steps' },
  'critic-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'phase 2 steps' },
  'actor-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'phase 3 steps' },
  'behavior-batch': { type: 'integer', positive: true, placeholder: 'n', description: 'phase 1 batch size' },
  'batch-size': { type: 'integer', positive: true, placeholder: 'n', description: 'phase 2 and 3 batch size' },
  beta: { type: 'number', nonNegative: true, description: "weight of the critic's action gradient (default: the task's)" },
  weighting: { type: 'string', choices: ['VDS', 'stable', 'score'], description: 'w(t): VDS sigma^2 (default), stable 1, score alpha/sigma' },
  baseline: { type: 'boolean', description: 'use eps - z instead of eps in the score term' },
  out: { type: 'string', placeholder: 'dir', description: 'run directory (default runs/srpo-<task>-<timestamp>)' },
  resume: { type: 'string', placeholder: 'dir', description: "continue the run in dir from its last checkpoints, with its config.json" },
  behavior: { type: 'string', placeholder: 'file', description: 'load the behaviour model from a checkpoint and skip phase 1' },
  critic: { type: 'string', placeholder: 'file', description: 'load the critic from a checkpoint and skip phase 2' },
  'eval-every': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'actor steps between evaluations (0: only at the end)' },
  'eval-episodes': { type: 'integer', positive: true, placeholder: 'n', description: 'episodes per evaluation' },
  'no-bc-eval': { type: 'boolean', description: 'skip the behaviour-cloning baselines (diffusion samples and MSE-fitted MLP)' },
  'log-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between log lines and NaN checks' },
  'checkpoint-every': { type: 'integer', positive: true, placeholder: 'n', description: 'steps between checkpoints within a phase' },
  device: { type: 'string', default: 'auto', placeholder: 'auto|name', description: 'WebGPU adapter: auto, or part of an adapter name (e.g. llvmpipe, nvidia)' },
  quiet: { type: 'boolean', description: 'print only the summary' },
  ...ENGINE_CLI_OPTIONS,
} as const satisfies Record<string, OptionSpec>;

export const CLI: CliSpec<typeof CLI_OPTIONS> = {
  usage: 'node algorithms/srpo.ts [options]',
  description:
    'Score Regularized Policy Optimization (Chen et al., ICLR 2024): trains a diffusion behaviour model (phase 1), an IQL ' +
    'critic (phase 2) and a deterministic one-step actor regularised by the behaviour score (phase 3), then evaluates ' +
    'the actor in the environment and prints its normalised score.\n\n' +
    'With no arguments it runs the quick preset on the shipped Pendulum dataset (pendulum-medium-v1) and compares the ' +
    'result with behaviour cloning (the behaviour model sampled with DPM-Solver, and an MLP fitted to the actions by ' +
    'mean squared error) and with the dataset itself. Outputs go ' +
    'to runs/srpo-<task>-<timestamp>/: config.json, log.jsonl, behavior/critic/actor.safetensors (weights, optimiser ' +
    'state, step), curves.svg and summary.json.',
  options: CLI_OPTIONS,
  examples: [
    'node algorithms/srpo.ts',
    'node algorithms/srpo.ts --task hopper-medium-v2 --dataset path/to/hopper-medium-v2.hdf5',
    'node algorithms/srpo.ts --dataset hopper-expert-v4 --task hopper-medium-expert-v2 --behavior-steps 20000',
    'node algorithms/srpo.ts --resume runs/srpo-pendulum-quick-20250101-120000',
    'node algorithms/srpo.ts --behavior runs/A/behavior.safetensors --critic runs/A/critic.safetensors --beta 0.1',
  ],
};


type CliArgs = NonNullable<ReturnType<typeof parseCli<typeof CLI_OPTIONS>>>;

/** The configuration the command line asks for (preset, then dataset/env inference, then explicit options). */
export function configFromArgs(args: CliArgs): SrpoConfig {
  const cfg = taskConfig(args.task);
  applyOfflineArgs(cfg, args);
  assignDefined(cfg, {
    behaviorSteps: args['behavior-steps'],
    criticSteps: args['critic-steps'],
    actorSteps: args['actor-steps'],
    behaviorBatch: args['behavior-batch'],
    criticBatch: args['batch-size'],
    actorBatch: args['batch-size'],
    beta: args.beta,
    weighting: args.weighting as SrpoConfig['weighting'] | undefined,
  });
  if (args.baseline) cfg.baseline = true;
  return cfg;
}

/** Options that change training and therefore cannot be combined with --resume. */
const TRAINING_OPTIONS = Object.keys(CLI_OPTIONS).filter((k) => !['resume', 'device', 'quiet', 'out', 'eager', 'tune'].includes(k));

function printSummary(s: SrpoSummary): void {
  const line = (label: string, v: string) => console.log(`  ${label.padEnd(30)}${v}`);
  console.log(`\nSRPO ${s.task} on ${s.env} (${s.dataset})`);
  line('normalised score (SRPO actor)', `${s.score.mean.toFixed(1)} +- ${s.score.std.toFixed(1)}  (${s.score.episodes} episodes, mean return ${s.score.returnMean.toFixed(1)})`);
  if (s.bcScore) line('behaviour cloning (diffusion)', `${s.bcScore.mean.toFixed(1)} +- ${s.bcScore.std.toFixed(1)}`);
  if (s.bcMlpScore) line('behaviour cloning (MLP)', `${s.bcMlpScore.mean.toFixed(1)} +- ${s.bcMlpScore.std.toFixed(1)}`);
  if (s.datasetScore) line('dataset (behaviour policy)', `${s.datasetScore.mean.toFixed(1)} +- ${s.datasetScore.std.toFixed(1)}  (${s.datasetScore.episodes} episodes)`);
  const p = s.phaseSeconds;
  line('wall time', `setup ${formatDuration(p.setup * 1000)}, behaviour ${formatDuration(p.behavior * 1000)}, critic ${formatDuration(p.critic * 1000)}, actor ${formatDuration(p.actor * 1000)}, evaluation ${formatDuration(p.evaluation * 1000)}; total ${formatDuration(s.totalSeconds * 1000)}`);
  line('outputs', s.dir);
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<SrpoSummary | null> {
  const args = parseCli(CLI, argv);
  if (!args) return null;
  const { cfg, dir, resumed } = openRun<SrpoConfig>(args, argv, TRAINING_OPTIONS, () => {
    const fresh = configFromArgs(args);
    return { cfg: fresh, name: `srpo-${fresh.task}` };
  });
  const rt = await openDevice(args.device, { tune: args.tune, log: tuningLog(args.quiet) });
  if (!args.quiet) {
    process.stderr.write(`SRPO ${cfg.task}: device ${rt.info.description || rt.info.vendor || 'unknown'} (${rt.info.adapterClass}); run directory ${dir}\n`);
  }
  try {
    const summary = await interruptible(dir, 'node algorithms/srpo.ts', (stopRequested) =>
      runSrpo(cfg, { dir, resume: resumed, behaviorFile: args.behavior, criticFile: args.critic, quiet: args.quiet, stopRequested, eager: args.eager }),
    );
    printSummary(summary);
    return summary;
  } finally {
    disposeEngine();
  }
}

if (isMainModule(import.meta.url)) await runMain('srpo', async () => void (await main()));
