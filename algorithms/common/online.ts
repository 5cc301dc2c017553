// Online RL: an agent interacting with vector environments, its transitions kept in a GPU replay store and its
// gradient updates recorded once per variant and replayed. The loop (warm-up with uniform random actions,
// updates per transition, periodic deterministic evaluation, progress, log, checkpoints holding the replay
// store, resume) is shared by every online agent (SAC, SDAC) and by the dataset recipe, which watches the
// transitions and evaluations through hooks. The command runner at the end gives every online algorithm the
// same command line, run directory, summary and learning-curve picture.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { noGrad } from '../../engine/autograd.ts';
import { HostRng } from '../../engine/init.ts';
import { Module } from '../../engine/nn.ts';
import { dispose as disposeEngine, runtime } from '../../engine/runtime.ts';
import { recordStep, type RecordedStep } from '../../engine/record.ts';
import { tensor, tidy, type Tensor } from '../../engine/tensor.ts';
import { ReplayStore } from '../../datasets/replay.ts';
import type { TransitionChunk } from '../../datasets/transition-log.ts';
import { envIds, makeEnv, makeVecEnv } from '../../envs/registry.ts';
import { evaluate, gpuPolicy, meanStd, type BatchPolicy } from '../../envs/evaluate.ts';
import { pendulumSwingUp, randomPolicy } from '../../envs/controllers.ts';
import { onlineCurvesSvg } from './curves.ts';
import { CliError, assignDefined, isMainModule, parseCli, runMain, type CliSpec, type CliValues, type OptionSpec, type OptionSpecs } from './cli.ts';
import { GpuChurnGuard, JsonlLog, LossMeter, Progress, assertFinite, formatDuration, formatNumber } from './monitor.ts';
import { RUN_FILES, loadCheckpoint, readCheckpointInfo, removeStaleTemps, saveCheckpoint, writeFileAtomic, type CheckpointParts } from './run-files.ts';
import { ENGINE_CLI_OPTIONS, interruptible, openDevice, openRun, tuningLog } from './command.ts';
import { PhaseInterrupted, type RunContext } from './phase.ts';
import { say } from './monitor.ts';
import { userError } from './cli.ts';

/** What the loop needs from an online agent. */
export interface OnlineAgent {
  readonly obsDim: number;
  readonly actDim: number;
  /** The policy network alone: the dataset recipe saves it (engine/safetensors saveModule) as a policy snapshot
   *  and loads snapshots back into it (loadModule) to collect data. */
  readonly actor: Module;
  /** Everything a checkpoint holds (networks incl. targets, optimisers, generators). */
  readonly parts: CheckpointParts;
  /** Actions in [-1, 1] for the rows of obs [n, obsDim] (raw, unnormalised observations). explore = true: the
   *  behaviour policy used to collect data (SAC: a sample; SDAC: best-of-particles plus noise); false: the
   *  deterministic evaluation policy. Eager; called under tidy by the loop, which reads the result back. */
  act(obs: Tensor, explore: boolean): Tensor;
  /** One gradient update on a minibatch the agent samples from `store` itself. Returns its losses as GPU
   *  tensors (scalars or [1]). Recorded once per variant and replayed: no readbacks, no host writes, random
   *  numbers from Generators, learning rates from AdamW schedules, per-step scalars (temperature) on the GPU. */
  update(store: ReplayStore, variant: number): Record<string, Tensor>;
  /** Variant of the 0-based update index u (e.g. 1 when delayed actor/target/temperature updates also run). */
  updateVariant?(u: number): number;
  /** Scalars worth logging at log points (e.g. the temperature alpha); may read back. */
  stats?(): Promise<Record<string, number>>;
  dispose(): void;
}

export interface OnlineConfig {
  /** Id or alias understood by envs/registry.ts. */
  env: string;
  seed: number;
  /** Vector envs stepped together (SAC default 1, SDAC default 5). */
  numEnvs: number;
  /** Total environment transitions (all copies together). */
  envSteps: number;
  /** Transitions collected with uniform random actions before any update. */
  warmupSteps: number;
  /** Gradient updates per collected transition (default 1); replayed with replay(k). */
  updatesPerStep: number;
  replayCapacity: number;
  /** Env transitions between evaluations (0: only at the end). */
  evalEvery: number;
  evalEpisodes: number;
  /** Env transitions between progress/log lines. */
  logEvery: number;
  /** Env transitions between checkpoints. */
  checkpointEvery: number;
  /** Evaluation episode i is reset with evalSeed + i (default 1000000, the same episodes for every run). */
  evalSeed?: number;
}

/**
 * Host copies of what the loop collects, in collection order, for the dataset recipe. Actions in env units.
 * The loop leaves the optional simulator state (qpos, qvel) out.
 */
export type CollectedTransitions = TransitionChunk;

export interface OnlineHooks {
  onTransitions?(t: CollectedTransitions, envStepsSoFar: number): void;
  onEvaluation?(r: { envSteps: number; mean: number; std: number; returns: number[] }): void | Promise<void>;
}

export interface OnlineResult {
  envSteps: number;
  updates: number;
  ms: number;
  evals: { envSteps: number; mean: number; std: number }[];
  /** Where this session started (non-zero when resumed), for rates. */
  startEnvSteps: number;
  startUpdates: number;
  /** Time of this session spent in evaluations (part of ms). */
  evalMs: number;
  /** The last evaluation's per-episode returns. */
  lastReturns: number[];
}


/** How trainOnline runs beyond the configuration. */
export interface OnlineRunOptions {
  hooks?: OnlineHooks;
  /** Checkpoint file (agent, loop counters, replay store); none: no checkpoints are written. */
  checkpoint?: string;
  /** Continue from `checkpoint` when it exists. */
  resume?: boolean;
  /** Name in progress lines, log records and the checkpoint (default 'online'). */
  phase?: string;
  /**
   * Ends training early after an evaluation for which this returns true (e.g. a target return reached): the run
   * is then complete at that many env steps, with its final checkpoint.
   */
  stopWhen?: (r: { envSteps: number; mean: number; std: number; returns: number[] }) => boolean;
}

/** The loop's counters as a checkpoint keeps them (its `extra`). */
interface LoopState {
  phase: string;
  complete: boolean;
  envSteps: number;
  updates: number;
  episodes: number;
  replaySize: number;
  replayPosition: number;
  evals: OnlineResult['evals'];
  lastReturns: number[];
}

const DEFAULT_EVAL_SEED = 1_000_000;

/** Checks the loop settings; throws naming the first bad one. */
export function checkOnlineConfig(cfg: OnlineConfig): void {
  const ints: [string, number, number][] = [
    ['numEnvs', cfg.numEnvs, 1], ['envSteps', cfg.envSteps, 1], ['warmupSteps', cfg.warmupSteps, 0], ['replayCapacity', cfg.replayCapacity, 1],
    ['evalEvery', cfg.evalEvery, 0], ['evalEpisodes', cfg.evalEpisodes, 1], ['logEvery', cfg.logEvery, 1], ['checkpointEvery', cfg.checkpointEvery, 1],
  ];
  for (const [name, v, min] of ints) {
    if (!Number.isInteger(v) || v < min) throw userError(`online config: ${name} must be an integer >= ${min}, got ${v}`);
  }
  if (!(cfg.updatesPerStep >= 0 && Number.isFinite(cfg.updatesPerStep))) throw userError(`online config: updatesPerStep must be >= 0, got ${cfg.updatesPerStep}`);
  if (cfg.numEnvs > 65535) throw userError(`online config: numEnvs must be at most 65535, got ${cfg.numEnvs}`);
}

/** Gradient updates due once `envSteps` transitions were collected. */
export function updatesDue(cfg: Pick<OnlineConfig, 'warmupSteps' | 'updatesPerStep'>, envSteps: number): number {
  return Math.floor(Math.max(0, envSteps - cfg.warmupSteps) * cfg.updatesPerStep + 1e-9);
}

/** The replay store's rows as one checkpoint module (buffers chunk0, chunk1, ...; views, nothing copied). */
class ReplayRows extends Module {
  private readonly views: Tensor[];

  constructor(store: ReplayStore) {
    super();
    this.views = store.storedRows();
    this.views.forEach((t, i) => this.registerBuffer(`chunk${i}`, t));
  }

  dispose(): void {
    for (const t of this.views) t.dispose();
  }
}

/** Maps actions in [-1, 1] (clipped there first) to the box [low, high], row by row. */
export function toEnvActions(unit: Float32Array, low: ArrayLike<number>, high: ArrayLike<number>): { unit: Float32Array; env: Float32Array } {
  const d = low.length;
  const clipped = new Float32Array(unit.length);
  const env = new Float32Array(unit.length);
  for (let i = 0; i < unit.length; i++) {
    const a = Math.min(1, Math.max(-1, unit[i]!));
    const j = i % d;
    clipped[i] = a;
    env[i] = low[j]! + ((a + 1) / 2) * (high[j]! - low[j]!);
  }
  return { unit: clipped, env };
}

/**
 * A BatchPolicy in env units from the agent's deterministic (explore false) or behaviour policy: observations
 * to the GPU, actions back, clipped to [-1, 1] and mapped to the box.
 */
export function agentPolicy(agent: OnlineAgent, low: ArrayLike<number>, high: ArrayLike<number>, explore = false): BatchPolicy {
  const gpu = gpuPolicy((obs) => agent.act(obs, explore));
  return async (obs, n) => toEnvActions(await gpu(obs, n), low, high).env;
}

/**
 * Trains `agent` online in `cfg.numEnvs` copies of `cfg.env`: `warmupSteps` transitions with uniform random
 * actions, then the agent's explore actions, every transition stored in a replay store of `replayCapacity`
 * rows (dones are terminations only; an ended episode's next observation is its final one, before the
 * automatic reset). After warm-up, `updatesPerStep` updates per transition, each variant run eagerly at its
 * first use, recorded at its second and replayed after that (ctx.eager: always eager). Losses are summed on
 * the GPU and read at log points, checked for NaN/Inf; evaluations every `evalEvery` transitions once past
 * the warm-up, and at the end (deterministic policy, `evalEpisodes` episodes reset with evalSeed + i). A checkpoint holds the agent's
 * parts, the loop counters and the replay store's rows; a resumed run restarts its episodes (the environments'
 * states and random streams are not saved). Hooks see every stored transition in order and every evaluation
 * (a resumed run does not repeat earlier transitions). ctx.stopRequested stops at the next transition with a
 * checkpoint and throws PhaseInterrupted.
 */
export async function trainOnline(agent: OnlineAgent, cfg: OnlineConfig, ctx: RunContext, opts: OnlineRunOptions = {}): Promise<OnlineResult> {
  checkOnlineConfig(cfg);
  const t0 = performance.now();
  const phase = opts.phase ?? 'online';
  const hooks = opts.hooks ?? {};
  const venv = await makeVecEnv(cfg.env, cfg.numEnvs, { seed: cfg.seed });
  const { obsDim, actDim, num } = venv;
  if (obsDim !== agent.obsDim || actDim !== agent.actDim) {
    venv.close();
    throw new Error(`trainOnline: ${cfg.env} has obs ${obsDim}, act ${actDim}; the agent expects obs ${agent.obsDim}, act ${agent.actDim}`);
  }
  const low = venv.envs[0]!.actionLow;
  const high = venv.envs[0]!.actionHigh;
  const store = ReplayStore.empty(Math.min(cfg.replayCapacity, cfg.envSteps), obsDim, actDim);
  const state: LoopState = { phase, complete: false, envSteps: 0, updates: 0, episodes: 0, replaySize: 0, replayPosition: 0, evals: [], lastReturns: [] };
  const checkpointPath = opts.checkpoint ?? null;
  const saveState = async (complete: boolean) => {
    if (!checkpointPath) return;
    const rows = new ReplayRows(store);
    try {
      state.complete = complete;
      state.replaySize = store.size;
      state.replayPosition = store.position;
      await saveCheckpoint(checkpointPath, {
        ...agent.parts,
        modules: { ...agent.parts.modules, replay: rows },
        step: state.envSteps,
        extra: { ...state },
      });
    } finally {
      rows.dispose();
    }
  };
  let lastGoodCheckpoint: string | null = null;
  if (opts.resume && checkpointPath && existsSync(checkpointPath)) {
    const saved = readCheckpointInfo(checkpointPath).extra as unknown as LoopState;
    if (saved.phase !== phase) throw userError(`checkpoint ${checkpointPath} is of phase '${saved.phase}', not '${phase}'`);
    store.restoreState(saved.replaySize, saved.replayPosition);
    const rows = new ReplayRows(store);
    try {
      loadCheckpoint(checkpointPath, { ...agent.parts, modules: { ...agent.parts.modules, replay: rows } });
    } finally {
      rows.dispose();
    }
    Object.assign(state, saved);
    lastGoodCheckpoint = checkpointPath;
    say(ctx, `${phase}: ${saved.complete ? 'complete' : `resuming at ${saved.envSteps} env steps, ${saved.updates} updates`} (${checkpointPath})`);
  }
  const startEnvSteps = state.envSteps;
  const startUpdates = state.updates;
  let evalMs = 0;
  const result = (): OnlineResult => ({
    envSteps: state.envSteps, updates: state.updates, ms: performance.now() - t0, evals: state.evals,
    startEnvSteps, startUpdates, evalMs, lastReturns: state.lastReturns,
  });
  if (state.complete || state.envSteps >= cfg.envSteps) {
    venv.close();
    store.dispose();
    return result();
  }

  const progress = new Progress(phase, cfg.envSteps, { stream: ctx.stream, startStep: state.envSteps });
  const meter = new LossMeter();
  const churn = new GpuChurnGuard();
  const eager = ctx.eager ?? false;
  const recorded = new Map<number, RecordedStep<Record<string, never>>>();
  const ranEagerly = new Set<number>();
  const updateAndMeter = (variant: number) => () => {
    meter.add(agent.update(store, variant));
    return {};
  };
  const variantOf = (u: number) => agent.updateVariant?.(u) ?? 0;
  const runUpdates = (target: number) => {
    while (state.updates < target) {
      const variant = variantOf(state.updates);
      if (eager || !ranEagerly.has(variant)) {
        ranEagerly.add(variant);
        tidy(updateAndMeter(variant));
        runtime().flush();
        state.updates++;
        continue;
      }
      const rec = recorded.get(variant);
      if (!rec) {
        recorded.set(variant, recordStep(updateAndMeter(variant)));
        state.updates++;
        continue;
      }
      // consecutive updates of one variant go out in one submit
      let k = 1;
      while (state.updates + k < target && variantOf(state.updates + k) === variant) k++;
      rec.replay(k);
      state.updates += k;
    }
  };

  const evaluateNow = async () => {
    const t = performance.now();
    const r = await evaluate(agentPolicy(agent, low, high), () => makeEnv(cfg.env), {
      episodes: cfg.evalEpisodes,
      numEnvs: Math.min(cfg.evalEpisodes, 10),
      seed: cfg.evalSeed ?? DEFAULT_EVAL_SEED,
    });
    evalMs += performance.now() - t;
    state.evals.push({ envSteps: state.envSteps, mean: r.mean, std: r.std });
    state.lastReturns = r.returns;
    ctx.log?.write({ phase, step: state.envSteps, updates: state.updates, eval: { mean: r.mean, std: r.std, returns: r.returns } });
    if (!ctx.quiet) progress.log(`[${phase}] ${state.envSteps} env steps: evaluation return ${formatNumber(r.mean)} +- ${formatNumber(r.std)}`);
    const e = { envSteps: state.envSteps, mean: r.mean, std: r.std, returns: r.returns };
    await hooks.onEvaluation?.(e);
    return opts.stopWhen?.(e) ?? false;
  };

  // a resumed run starts fresh episodes (environment states are not checkpointed) and a fresh warm-up stream
  let obs = venv.reset(cfg.seed + state.envSteps);
  const warmupRng = new HostRng(cfg.seed * 1_000_003 + state.envSteps + 17);
  const episodeReturn = new Float64Array(num);
  let finished: number[] = [];
  let lastLog = state.envSteps;
  let lastCheckpoint = state.envSteps;
  const evalEvery = cfg.evalEvery;
  let nextEval = evalEvery > 0 ? (Math.floor(state.envSteps / evalEvery) + 1) * evalEvery : Infinity;
  type LossTicket = { values: Promise<Record<string, number>>; step: number; fromStep: number; extra: Record<string, number> };
  let pending: LossTicket | null = null;
  let last: Record<string, number> = {};
  const takeLosses = async (t: LossTicket) => {
    const values = await t.values;
    assertFinite(phase, t.step, values, { fromStep: t.fromStep, checkpoint: lastGoodCheckpoint });
    last = { ...values, ...t.extra };
    ctx.log?.write({ phase, step: t.step, ...last });
    progress.update(t.step, last);
  };

  try {
    while (state.envSteps < cfg.envSteps) {
      const n = Math.min(num, cfg.envSteps - state.envSteps);
      let unitActions: Float32Array;
      if (state.envSteps < cfg.warmupSteps) {
        unitActions = new Float32Array(num * actDim);
        for (let i = 0; i < unitActions.length; i++) unitActions[i] = warmupRng.uniform(-1, 1);
      } else {
        const input = tensor(obs, [num, obsDim]);
        const out = tidy(() => noGrad(() => agent.act(input, true)));
        try {
          if (out.shape[0] !== num || out.shape[1] !== actDim) throw new Error(`trainOnline: agent.act returned [${out.shape}] for ${num} observations; expected [${num}, ${actDim}]`);
          unitActions = (await out.read()) as Float32Array;
        } finally {
          out.dispose();
          input.dispose();
        }
        for (let i = 0; i < unitActions.length; i++) {
          if (!Number.isFinite(unitActions[i]!)) throw userError(`[${phase}] the behaviour policy returned a non-finite action (${unitActions[i]}) at env step ${state.envSteps}`);
        }
      }
      const actions = toEnvActions(unitActions, low, high);
      const res = venv.step(actions.env);
      const nextObs = new Float32Array(n * obsDim);
      const terminals = new Uint8Array(n);
      const timeouts = new Uint8Array(n);
      const envIndex = new Uint16Array(n);
      const rewards = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const fin = res.finalObs[i];
        if (fin) nextObs.set(fin, i * obsDim);
        else nextObs.set(res.obs.subarray(i * obsDim, (i + 1) * obsDim), i * obsDim);
        terminals[i] = res.terminated[i]!;
        timeouts[i] = res.truncated[i]! && !res.terminated[i]! ? 1 : 0;
        envIndex[i] = i;
        rewards[i] = res.rewards[i]!;
      }
      const observations = obs.slice(0, n * obsDim);
      store.add({ observations, actions: actions.unit.subarray(0, n * actDim), rewards, nextObservations: nextObs, dones: terminals });
      hooks.onTransitions?.(
        { observations, actions: actions.env.slice(0, n * actDim), rewards, nextObservations: nextObs, terminals, timeouts, envIndex },
        state.envSteps + n,
      );
      for (let i = 0; i < n; i++) {
        episodeReturn[i] = episodeReturn[i]! + res.rewards[i]!;
        if (res.terminated[i] || res.truncated[i]) {
          finished.push(episodeReturn[i]!);
          state.episodes++;
          episodeReturn[i] = 0;
        }
      }
      obs = res.obs;
      state.envSteps += n;
      runUpdates(updatesDue(cfg, state.envSteps));

      const step = state.envSteps;
      let end = step >= cfg.envSteps;
      const stop = !end && (ctx.stopRequested?.() ?? false);
      // no periodic evaluation before the first update: the policy is still its initialisation
      const evalDue = end || (step >= nextEval && step > cfg.warmupSteps);
      const checkpointDue = end || stop || step - lastCheckpoint >= cfg.checkpointEvery;
      if (step - lastLog < cfg.logEvery && !end && !stop && !evalDue && !checkpointDue) continue;
      // losses travel back while the next transitions are collected; a checkpoint, an evaluation or the end
      // waits for them, so nothing is saved before the losses up to it were found finite
      const extra: Record<string, number> = { updates: state.updates, episodes: state.episodes };
      if (finished.length) extra['episodeReturn'] = meanStd(finished).mean;
      finished = [];
      if (agent.stats) Object.assign(extra, await agent.stats());
      const ticket: LossTicket = { values: meter.pending > 0 ? meter.drainLater() : Promise.resolve({}), step, fromStep: lastLog, extra };
      lastLog = step;
      if (pending) await takeLosses(pending);
      pending = null;
      if (checkpointDue || evalDue) await takeLosses(ticket);
      else pending = ticket;
      churn.check();
      if (evalDue) {
        if ((await evaluateNow()) && !end) {
          end = true;
          if (!ctx.quiet) progress.log(`[${phase}] stopping early at ${step} env steps: the evaluation met the stop condition`);
        }
        while (nextEval <= step) nextEval += evalEvery;
      }
      if (checkpointDue || end) {
        await saveState(end);
        if (checkpointPath) lastGoodCheckpoint = checkpointPath;
        lastCheckpoint = step;
      }
      if (stop) {
        progress.finish(step, last);
        throw new PhaseInterrupted(phase, step, checkpointPath ?? '(no checkpoint file)');
      }
      if (end) break;
    }
    if (pending) await takeLosses(pending);
    progress.finish(state.envSteps, last);
  } finally {
    for (const r of recorded.values()) r.dispose();
    meter.dispose();
    store.dispose();
    venv.close();
  }
  return result();
}

// =========================================================================================================
// Reference returns and the learning-curve picture

/**
 * Returns of reference policies on the evaluation episodes: uniform random actions always, and the scripted
 * swing-up controller on Pendulum (the "near expert" bar).
 */
export async function referenceReturns(env: string, episodes: number, evalSeed = DEFAULT_EVAL_SEED): Promise<Record<string, number>> {
  const probe = await makeEnv(env);
  const space = { actDim: probe.actDim, actionLow: probe.actionLow, actionHigh: probe.actionHigh };
  const id = probe.id;
  probe.close();
  const opts = { episodes, numEnvs: Math.min(episodes, 10), seed: evalSeed };
  const out: Record<string, number> = { 'uniform random': (await evaluate(randomPolicy(space, evalSeed), () => makeEnv(env), opts)).mean };
  if (id.startsWith('Pendulum')) out['scripted swing-up'] = (await evaluate(pendulumSwingUp(), () => makeEnv(env), opts)).mean;
  return out;
}


// =========================================================================================================
// Command line shared by the online algorithms

/** Options every online command has (the algorithm adds its own). */
export const ONLINE_CLI_OPTIONS = {
  env: { type: 'string', default: 'pendulum', placeholder: 'id', description: 'environment: pendulum, hopper, halfcheetah, walker2d (or a Gymnasium id such as Hopper-v4)' },
  preset: { type: 'string', default: 'default', placeholder: 'name', description: "settings preset (see above): 'default' is the algorithm's paper settings for the environment (short on Pendulum), 'quick' small networks and a short run" },
  seed: { type: 'integer', nonNegative: true, description: 'seed of the networks, random streams and environments (default 0)' },
  steps: { type: 'integer', positive: true, placeholder: 'n', description: "environment transitions in total, all copies together (default: the preset's)" },
  'num-envs': { type: 'integer', positive: true, placeholder: 'n', description: 'environment copies stepped together' },
  'warmup-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'transitions collected with uniform random actions before any update' },
  'updates-per-step': { type: 'number', nonNegative: true, placeholder: 'x', description: 'gradient updates per collected transition' },
  'replay-capacity': { type: 'integer', positive: true, placeholder: 'n', description: 'replay store rows (oldest overwritten when full)' },
  'eval-every': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'transitions between evaluations (0: only at the end)' },
  'eval-episodes': { type: 'integer', positive: true, placeholder: 'n', description: 'episodes per evaluation (deterministic policy, fixed seeds)' },
  'log-every': { type: 'integer', positive: true, placeholder: 'n', description: 'transitions between log records and NaN checks' },
  'checkpoint-every': { type: 'integer', positive: true, placeholder: 'n', description: 'transitions between checkpoints' },
  out: { type: 'string', placeholder: 'dir', description: 'run directory (default runs/<algorithm>-<env>-<preset>-<timestamp>)' },
  resume: { type: 'string', placeholder: 'dir', description: 'continue the run in dir from its checkpoint, with its config.json (episodes restart)' },
  device: { type: 'string', default: 'auto', placeholder: 'auto|name', description: 'WebGPU adapter: auto, or part of an adapter name (e.g. llvmpipe, nvidia)' },
  quiet: { type: 'boolean', description: 'print only the summary' },
  ...ENGINE_CLI_OPTIONS,
} as const satisfies Record<string, OptionSpec>;

/** Options that do not change training (allowed together with --resume). */
const RUN_ONLY_OPTIONS = ['resume', 'device', 'quiet', 'out', 'eager', 'tune'];

/** What a configuration of an online command holds besides the loop's settings. */
export interface OnlineCommandConfig extends OnlineConfig {
  algorithm: string;
  preset: string;
}

export type OnlineCliValues = NonNullable<CliValues<typeof ONLINE_CLI_OPTIONS>>;

/** An online algorithm as a command: what runOnlineCommand needs to know about it. */
export interface OnlineCommand<C extends OnlineCommandConfig, S extends OptionSpecs> {
  /** File stem and run-directory prefix, e.g. 'sac' (node algorithms/sac.ts). */
  name: string;
  /** Display name, e.g. 'SAC'. */
  title: string;
  /** --help paragraphs (what the algorithm does, what the presets are). */
  description: string;
  presetNames: readonly string[];
  /** The configuration of a preset for an environment (as typed on the command line); CliError when unknown. */
  preset(env: string, preset: string): C;
  /** The algorithm's own options, listed after the shared ones. */
  options: S;
  /** Writes the algorithm's options that were given into cfg (the shared ones are applied already). */
  applyOptions(cfg: C, args: CliValues<S>): void;
  makeAgent(cfg: C, dims: { obsDim: number; actDim: number }): OnlineAgent;
  examples?: string[];
  /** One line describing the agent's settings for the start of the run. */
  describe?(cfg: C): string;
}

/** The --help and parsing spec of an online command: the shared options, then the algorithm's. */
export function onlineCliSpec<C extends OnlineCommandConfig, S extends OptionSpecs>(cmd: OnlineCommand<C, S>): CliSpec<typeof ONLINE_CLI_OPTIONS & S> {
  const options = {
    ...ONLINE_CLI_OPTIONS,
    preset: { ...ONLINE_CLI_OPTIONS.preset, choices: cmd.presetNames },
    ...cmd.options,
  } as unknown as typeof ONLINE_CLI_OPTIONS & S;
  return {
    usage: `node algorithms/${cmd.name}.ts [options]`,
    description:
      `${cmd.description}\n\n` +
      'Trains online in the environment: uniform random actions for the warm-up, then the behaviour policy, every ' +
      'transition in a GPU replay store, gradient updates recorded once and replayed; evaluates the deterministic ' +
      'policy periodically on fixed episodes. Progress goes to stderr; outputs go to ' +
      `runs/${cmd.name}-<env>-<preset>-<timestamp>/: config.json, log.jsonl, checkpoint.safetensors (networks, optimisers, ` +
      'replay store and loop counters; --resume continues from it), curves.svg (learning curve and losses) and summary.json. ' +
      'Ctrl-C stops at a checkpoint.',
    options,
    examples: cmd.examples,
  };
}

/** The configuration a command line asks for: the preset, then the shared options, then the algorithm's. */
export function onlineConfigFromArgs<C extends OnlineCommandConfig, S extends OptionSpecs>(cmd: OnlineCommand<C, S>, args: OnlineCliValues & CliValues<S>): C {
  if (!envIds().includes(args.env)) throw new CliError(`--env: unknown environment '${args.env}'; known: ${envIds().join(', ')}`);
  const cfg = cmd.preset(args.env, args.preset);
  assignDefined(cfg as OnlineConfig, {
    seed: args.seed,
    envSteps: args.steps,
    numEnvs: args['num-envs'],
    warmupSteps: args['warmup-steps'],
    updatesPerStep: args['updates-per-step'],
    replayCapacity: args['replay-capacity'],
    evalEvery: args['eval-every'],
    evalEpisodes: args['eval-episodes'],
    logEvery: args['log-every'],
    checkpointEvery: args['checkpoint-every'],
  });
  cmd.applyOptions(cfg, args);
  checkOnlineConfig(cfg);
  return cfg;
}

export interface OnlineSummary {
  algorithm: string;
  env: string;
  preset: string;
  envSteps: number;
  updates: number;
  /** The last evaluation (the end of training). */
  final: { mean: number; std: number; episodes: number } | null;
  evals: OnlineResult['evals'];
  /** Reference returns on the same evaluation episodes. */
  references: Record<string, number>;
  seconds: { total: number; training: number; evaluation: number };
  /** Over this session's training time (evaluations excluded). */
  envStepsPerSecond: number;
  updatesPerSecond: number;
  dir: string;
}

export interface OnlineRunSettings {
  dir: string;
  resume?: boolean;
  quiet?: boolean;
  stream?: RunContext['stream'];
  stopRequested?: () => boolean;
  eager?: boolean;
  hooks?: OnlineHooks;
  stopWhen?: OnlineRunOptions['stopWhen'];
}

/** Trains an online command's agent into `dir` (log.jsonl, checkpoint, curves.svg, summary.json). */
export async function runOnline<C extends OnlineCommandConfig, S extends OptionSpecs>(cmd: OnlineCommand<C, S>, cfg: C, run: OnlineRunSettings): Promise<OnlineSummary> {
  const dir = run.dir;
  removeStaleTemps(dir);
  const log = new JsonlLog(join(dir, RUN_FILES.log));
  const ctx: RunContext = { cfg, log, stream: run.stream, quiet: run.quiet, stopRequested: run.stopRequested, eager: run.eager };
  const probe = await makeEnv(cfg.env).catch((err: unknown) => {
    throw userError(err instanceof Error ? err.message : String(err));
  });
  const dims = { obsDim: probe.obsDim, actDim: probe.actDim };
  const envId = probe.id;
  probe.close();
  const references = await referenceReturns(cfg.env, cfg.evalEpisodes, cfg.evalSeed);
  say(run, `${cmd.title} on ${envId}: ${cfg.envSteps} env steps in ${cfg.numEnvs} cop${cfg.numEnvs > 1 ? 'ies' : 'y'}, ${cfg.warmupSteps} random warm-up, ` +
    `${cfg.updatesPerStep} update${cfg.updatesPerStep === 1 ? '' : 's'} per step${cmd.describe ? `; ${cmd.describe(cfg)}` : ''}`);
  say(run, `reference returns: ${Object.entries(references).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
  const agent = cmd.makeAgent(cfg, dims);
  let result: OnlineResult;
  try {
    result = await trainOnline(agent, cfg, ctx, { hooks: run.hooks, checkpoint: join(dir, 'checkpoint.safetensors'), resume: run.resume, phase: cmd.name, stopWhen: run.stopWhen });
  } finally {
    agent.dispose();
  }
  const lastEval = result.evals[result.evals.length - 1];
  const trainingMs = Math.max(1, result.ms - result.evalMs);
  const summary: OnlineSummary = {
    algorithm: cmd.title,
    env: envId,
    preset: cfg.preset,
    envSteps: result.envSteps,
    updates: result.updates,
    final: lastEval ? { mean: lastEval.mean, std: lastEval.std, episodes: result.lastReturns.length } : null,
    evals: result.evals,
    references,
    seconds: { total: result.ms / 1000, training: trainingMs / 1000, evaluation: result.evalMs / 1000 },
    envStepsPerSecond: ((result.envSteps - result.startEnvSteps) * 1000) / trainingMs,
    updatesPerSecond: ((result.updates - result.startUpdates) * 1000) / trainingMs,
    dir,
  };
  log.write({ phase: 'summary', ...summary });
  writeFileAtomic(join(dir, RUN_FILES.summary), JSON.stringify(summary, null, 2));
  writeFileAtomic(join(dir, RUN_FILES.curves), onlineCurvesSvg(JsonlLog.read(log.path), references, { phase: cmd.name, policy: cmd.title }));
  return summary;
}

export function printOnlineSummary(s: OnlineSummary): void {
  const line = (label: string, v: string) => console.log(`  ${label.padEnd(26)}${v}`);
  console.log(`\n${s.algorithm} on ${s.env} (preset ${s.preset})`);
  if (s.final) line('final evaluation return', `${s.final.mean.toFixed(1)} +- ${s.final.std.toFixed(1)}  (${s.final.episodes} episodes)`);
  for (const [k, v] of Object.entries(s.references)) line(k, v.toFixed(1));
  if (s.evals.length > 1) line('learning curve', s.evals.map((e) => `${e.envSteps}: ${e.mean.toFixed(0)}`).join(', '));
  line('env steps, updates', `${s.envSteps}, ${s.updates}`);
  line('rate (training time)', `${s.envStepsPerSecond.toFixed(1)} env steps/s, ${s.updatesPerSecond.toFixed(1)} updates/s`);
  line('wall time', `training ${formatDuration(s.seconds.training * 1000)}, evaluation ${formatDuration(s.seconds.evaluation * 1000)}; total ${formatDuration(s.seconds.total * 1000)}`);
  line('outputs', s.dir);
}

/**
 * The whole command: parses argv (null after --help), opens or resumes the run directory (config.json), starts
 * the device with the shared engine options, trains with Ctrl-C handling, prints the summary.
 */
export async function runOnlineCommand<C extends OnlineCommandConfig, S extends OptionSpecs>(
  cmd: OnlineCommand<C, S>,
  argv: string[] = process.argv.slice(2),
): Promise<OnlineSummary | null> {
  const spec = onlineCliSpec(cmd);
  const args = parseCli(spec, argv) as (OnlineCliValues & CliValues<S>) | null;
  if (!args) return null;
  const trainingOptions = Object.keys(spec.options).filter((k) => !RUN_ONLY_OPTIONS.includes(k));
  const { cfg, dir, resumed } = openRun<C>(args, argv, trainingOptions, () => {
    const fresh = onlineConfigFromArgs(cmd, args);
    return { cfg: fresh, name: `${cmd.name}-${envKey(fresh.env)}-${fresh.preset}` };
  });
  const rt = await openDevice(args.device, { tune: args.tune, log: tuningLog(args.quiet) });
  if (!args.quiet) process.stderr.write(`${cmd.title}: device ${rt.info.description || rt.info.vendor || 'unknown'} (${rt.info.adapterClass}); run directory ${dir}\n`);
  try {
    const summary = await interruptible(dir, `node algorithms/${cmd.name}.ts`, (stopRequested) =>
      runOnline(cmd, cfg, { dir, resume: resumed, quiet: args.quiet, stopRequested, eager: args.eager }),
    );
    printOnlineSummary(summary);
    return summary;
  } finally {
    disposeEngine();
  }
}

/** 'Hopper-v4' -> 'hopper', 'pendulum' -> 'pendulum': the key presets are looked up by. */
export function envKey(env: string): string {
  return env.toLowerCase().replace(/-v\d+$/, '');
}

/** Runs an online command when its file is the script Node started (the last line of algorithms/<name>.ts). */
export async function onlineCommandMain<C extends OnlineCommandConfig, S extends OptionSpecs>(moduleUrl: string, cmd: OnlineCommand<C, S>): Promise<void> {
  if (isMainModule(moduleUrl)) await runMain(cmd.name, async () => void (await runOnlineCommand(cmd)));
}

export { CliError };
