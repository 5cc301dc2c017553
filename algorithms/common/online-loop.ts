// The online training loop: an agent interacting with vector environments, its transitions kept in a GPU replay
// store and its gradient updates run by the step scheduler (recorded once per variant and replayed). Warm-up
// with uniform random actions, updates per transition, periodic deterministic evaluation, progress, log, and
// checkpoints holding the replay store, with resume. Every online agent (SAC, SDAC) trains in it, and the
// dataset recipe watches its transitions and evaluations through hooks.
import { existsSync } from 'node:fs';
import { noGrad } from '../../engine/autograd.ts';
import { HostRng } from '../../engine/host-rng.ts';
import { Module } from '../../engine/nn.ts';
import { tensor, tidy, type Tensor } from '../../engine/tensor.ts';
import { ReplayStore } from '../../datasets/replay.ts';
import type { TransitionChunk } from '../../datasets/transition-log.ts';
import type { VecEnv } from '../../envs/core.ts';
import { makeEnv, makeVecEnv } from '../../envs/registry.ts';
import { evaluate, gpuPolicy, meanStd, type BatchPolicy } from '../../envs/evaluate.ts';
import { userError } from './cli.ts';
import { GpuChurnGuard, Progress, assertFinite, formatNumber, say } from './monitor.ts';
import { PhaseInterrupted, sessionEnd, type RunContext } from './phase.ts';
import { loadCheckpoint, readCheckpointInfo, saveCheckpoint, type CheckpointParts } from './run-files.ts';
import { StepScheduler } from './step-scheduler.ts';

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

/** Evaluation episode i is reset with DEFAULT_EVAL_SEED + i unless the config says otherwise. */
export const DEFAULT_EVAL_SEED = 1_000_000;

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

type EvaluationResult = { envSteps: number; mean: number; std: number; returns: number[] };

/** One run of the loop: its environments, replay store, counters and scheduler, in four parts. */
class OnlineLoop {
  readonly phase: string;
  readonly state: LoopState;
  private readonly agent: OnlineAgent;
  private readonly cfg: OnlineConfig;
  private readonly ctx: RunContext;
  private readonly opts: OnlineRunOptions;
  private readonly venv: VecEnv;
  private readonly store: ReplayStore;
  private readonly low: ArrayLike<number>;
  private readonly high: ArrayLike<number>;
  private readonly t0 = performance.now();
  private lastGoodCheckpoint: string | null = null;
  private startEnvSteps = 0;
  private startUpdates = 0;
  private evalMs = 0;
  // the episodes in flight
  private obs: Float32Array = new Float32Array(0);
  private warmupRng = new HostRng(0);
  private episodeReturn: Float64Array;
  private finished: number[] = [];

  constructor(agent: OnlineAgent, cfg: OnlineConfig, ctx: RunContext, opts: OnlineRunOptions, venv: VecEnv) {
    this.agent = agent;
    this.cfg = cfg;
    this.ctx = ctx;
    this.opts = opts;
    this.venv = venv;
    this.phase = opts.phase ?? 'online';
    this.low = venv.envs[0]!.actionLow;
    this.high = venv.envs[0]!.actionHigh;
    this.store = ReplayStore.empty(Math.min(cfg.replayCapacity, cfg.envSteps), venv.obsDim, venv.actDim);
    this.state = { phase: this.phase, complete: false, envSteps: 0, updates: 0, episodes: 0, replaySize: 0, replayPosition: 0, evals: [], lastReturns: [] };
    this.episodeReturn = new Float64Array(venv.num);
  }

  result(): OnlineResult {
    const s = this.state;
    return {
      envSteps: s.envSteps, updates: s.updates, ms: performance.now() - this.t0, evals: s.evals,
      startEnvSteps: this.startEnvSteps, startUpdates: this.startUpdates, evalMs: this.evalMs, lastReturns: s.lastReturns,
    };
  }

  // ---- checkpoint: the agent's parts, the loop counters and the replay store's rows

  async checkpoint(complete: boolean): Promise<void> {
    const path = this.opts.checkpoint;
    if (!path) return;
    const rows = new ReplayRows(this.store);
    try {
      Object.assign(this.state, { complete, replaySize: this.store.size, replayPosition: this.store.position });
      const parts = this.agent.parts;
      await saveCheckpoint(path, { ...parts, modules: { ...parts.modules, replay: rows }, step: this.state.envSteps, extra: { ...this.state } });
    } finally {
      rows.dispose();
    }
    this.lastGoodCheckpoint = path;
  }

  /** Loads the checkpoint when resuming and one exists; a resumed run starts fresh episodes (their states are not saved). */
  resume(): void {
    const path = this.opts.checkpoint;
    if (this.opts.resume && path && existsSync(path)) {
      const saved = readCheckpointInfo(path).extra as unknown as LoopState;
      if (saved.phase !== this.phase) throw userError(`checkpoint ${path} is of phase '${saved.phase}', not '${this.phase}'`);
      this.store.restoreState(saved.replaySize, saved.replayPosition);
      const rows = new ReplayRows(this.store);
      try {
        loadCheckpoint(path, { ...this.agent.parts, modules: { ...this.agent.parts.modules, replay: rows } });
      } finally {
        rows.dispose();
      }
      Object.assign(this.state, saved);
      this.lastGoodCheckpoint = path;
      say(this.ctx, `${this.phase}: ${saved.complete ? 'complete' : `resuming at ${saved.envSteps} env steps, ${saved.updates} updates`} (${path})`);
      if (!saved.complete) this.ctx.log?.write({ phase: this.phase, resumedAt: saved.envSteps });
    }
    this.startEnvSteps = this.state.envSteps;
    this.startUpdates = this.state.updates;
    this.obs = this.venv.reset(this.cfg.seed + this.state.envSteps);
    this.warmupRng = new HostRng(this.cfg.seed * 1_000_003 + this.state.envSteps + 17);
  }

  get done(): boolean {
    return this.state.complete || this.state.envSteps >= this.cfg.envSteps;
  }

  // ---- collect: one vector step, stored and shown to the hooks; episodes counted

  async collect(): Promise<void> {
    const { cfg, state, venv, agent } = this;
    const { num, obsDim, actDim } = venv;
    const n = Math.min(num, cfg.envSteps - state.envSteps);
    let unitActions: Float32Array;
    if (state.envSteps < cfg.warmupSteps) {
      unitActions = new Float32Array(num * actDim);
      for (let i = 0; i < unitActions.length; i++) unitActions[i] = this.warmupRng.uniform(-1, 1);
    } else {
      const input = tensor(this.obs, [num, obsDim]);
      const out = tidy(() => noGrad(() => agent.act(input, true)));
      try {
        if (out.shape[0] !== num || out.shape[1] !== actDim) throw new Error(`trainOnline: agent.act returned [${out.shape}] for ${num} observations; expected [${num}, ${actDim}]`);
        unitActions = (await out.read()) as Float32Array;
      } finally {
        out.dispose();
        input.dispose();
      }
      for (let i = 0; i < unitActions.length; i++) {
        if (!Number.isFinite(unitActions[i]!)) throw userError(`[${this.phase}] the behaviour policy returned a non-finite action (${unitActions[i]}) at env step ${state.envSteps}`);
      }
    }
    const actions = toEnvActions(unitActions, this.low, this.high);
    const res = venv.step(actions.env);
    const nextObs = new Float32Array(n * obsDim);
    const terminals = new Uint8Array(n);
    const timeouts = new Uint8Array(n);
    const envIndex = new Uint16Array(n);
    const rewards = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      // an ended episode's next observation is its final one, before the automatic reset
      nextObs.set(res.finalObs[i] ?? res.obs.subarray(i * obsDim, (i + 1) * obsDim), i * obsDim);
      terminals[i] = res.terminated[i]!;
      timeouts[i] = res.truncated[i]! && !res.terminated[i]! ? 1 : 0;
      envIndex[i] = i;
      rewards[i] = res.rewards[i]!;
    }
    const observations = this.obs.slice(0, n * obsDim);
    this.store.add({ observations, actions: actions.unit.subarray(0, n * actDim), rewards, nextObservations: nextObs, dones: terminals });
    this.opts.hooks?.onTransitions?.(
      { observations, actions: actions.env.slice(0, n * actDim), rewards, nextObservations: nextObs, terminals, timeouts, envIndex },
      state.envSteps + n,
    );
    for (let i = 0; i < n; i++) {
      this.episodeReturn[i] = this.episodeReturn[i]! + res.rewards[i]!;
      if (res.terminated[i] || res.truncated[i]) {
        this.finished.push(this.episodeReturn[i]!);
        state.episodes++;
        this.episodeReturn[i] = 0;
      }
    }
    this.obs = res.obs;
    state.envSteps += n;
  }

  /** The counters worth logging beside the losses; the finished episodes' mean return since the last call. */
  async logExtras(): Promise<Record<string, number>> {
    const extra: Record<string, number> = { updates: this.state.updates, episodes: this.state.episodes };
    if (this.finished.length) extra['episodeReturn'] = meanStd(this.finished).mean;
    this.finished = [];
    if (this.agent.stats) Object.assign(extra, await this.agent.stats());
    return extra;
  }

  // ---- update: the updates due so far, a run of one variant in one submit

  update(scheduler: StepScheduler): void {
    const { cfg, state, agent } = this;
    const target = updatesDue(cfg, state.envSteps);
    const variantOf = (u: number) => agent.updateVariant?.(u) ?? 0;
    while (state.updates < target) {
      const variant = variantOf(state.updates);
      let k = 1;
      while (state.updates + k < target && variantOf(state.updates + k) === variant) k++;
      scheduler.run(variant, k);
      state.updates += k;
    }
  }

  // ---- evaluate: the deterministic policy on fixed episodes; true when the stop condition is met

  async evaluate(progress: Progress): Promise<boolean> {
    const { cfg, state, ctx } = this;
    const t = performance.now();
    const r = await evaluate(agentPolicy(this.agent, this.low, this.high), () => makeEnv(cfg.env), {
      episodes: cfg.evalEpisodes,
      numEnvs: Math.min(cfg.evalEpisodes, 10),
      seed: cfg.evalSeed ?? DEFAULT_EVAL_SEED,
    });
    this.evalMs += performance.now() - t;
    state.evals.push({ envSteps: state.envSteps, mean: r.mean, std: r.std });
    state.lastReturns = r.returns;
    ctx.log?.write({ phase: this.phase, step: state.envSteps, updates: state.updates, eval: { mean: r.mean, std: r.std, returns: r.returns } });
    if (!ctx.quiet) progress.log(`[${this.phase}] ${state.envSteps} env steps: evaluation return ${formatNumber(r.mean)} +- ${formatNumber(r.std)}`);
    const e: EvaluationResult = { envSteps: state.envSteps, mean: r.mean, std: r.std, returns: r.returns };
    await this.opts.hooks?.onEvaluation?.(e);
    return this.opts.stopWhen?.(e) ?? false;
  }

  // ---- the loop: collect, update, and at log points losses, evaluation and checkpoint

  async run(): Promise<void> {
    const { cfg, state, ctx, phase } = this;
    const progress = new Progress(phase, cfg.envSteps, { stream: ctx.stream, startStep: state.envSteps });
    const churn = new GpuChurnGuard();
    let last: Record<string, number> = {};
    const scheduler = new StepScheduler((variant) => this.agent.update(this.store, variant), {
      eager: ctx.eager,
      startStep: state.envSteps,
      report: ({ step, fromStep, values, extra }) => {
        assertFinite(phase, step, values, { fromStep, checkpoint: this.lastGoodCheckpoint });
        last = { ...values, ...extra };
        ctx.log?.write({ phase, step, ...last });
        progress.update(step, last);
      },
    });
    let lastCheckpoint = state.envSteps;
    const evalEvery = cfg.evalEvery;
    let nextEval = evalEvery > 0 ? (Math.floor(state.envSteps / evalEvery) + 1) * evalEvery : Infinity;
    // the warm-up's random actions step many times faster than training: its pace would mislead the ETA
    let warmingUp = state.envSteps < cfg.warmupSteps;
    try {
      while (state.envSteps < cfg.envSteps) {
        await this.collect();
        this.update(scheduler);
        const step = state.envSteps;
        if (warmingUp && step >= cfg.warmupSteps) {
          warmingUp = false;
          progress.restartRate(step);
        }
        let end = step >= cfg.envSteps;
        const stop = !end && (ctx.stopRequested?.() ?? false);
        // no periodic evaluation before the first update: the policy is still its initialisation
        const evalDue = end || (step >= nextEval && step > cfg.warmupSteps);
        const checkpointDue = end || stop || step - lastCheckpoint >= cfg.checkpointEvery;
        if (step - scheduler.lastReadStep < cfg.logEvery && !end && !stop && !evalDue && !checkpointDue) continue;
        // nothing is saved or evaluated before the losses up to it were found finite
        await scheduler.readLosses(step, checkpointDue || evalDue, await this.logExtras());
        churn.check();
        if (evalDue) {
          if ((await this.evaluate(progress)) && !end) {
            end = true;
            if (!ctx.quiet) progress.log(`[${phase}] stopping early at ${step} env steps: the evaluation met the stop condition`);
          }
          while (nextEval <= step) nextEval += evalEvery;
        }
        if (checkpointDue || end) {
          await this.checkpoint(end);
          lastCheckpoint = step;
        }
        if (stop) {
          progress.finish(step, last);
          throw new PhaseInterrupted(phase, step, this.opts.checkpoint ?? '(no checkpoint file)');
        }
        if (end) break;
      }
      await scheduler.flush();
      progress.finish(state.envSteps, last);
    } finally {
      scheduler.dispose();
    }
  }

  /** This session's share of the run (its times, env steps and updates), for the log however the session ends. */
  sessionRecord(): Record<string, unknown> {
    const ms = performance.now() - this.t0;
    return {
      phase: 'session',
      seconds: { total: ms / 1000, training: (ms - this.evalMs) / 1000, evaluation: this.evalMs / 1000 },
      envSteps: this.state.envSteps - this.startEnvSteps,
      updates: this.state.updates - this.startUpdates,
    };
  }

  dispose(): void {
    this.store.dispose();
    this.venv.close();
  }
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
  const venv = await makeVecEnv(cfg.env, cfg.numEnvs, { seed: cfg.seed });
  if (venv.obsDim !== agent.obsDim || venv.actDim !== agent.actDim) {
    venv.close();
    throw new Error(`trainOnline: ${cfg.env} has obs ${venv.obsDim}, act ${venv.actDim}; the agent expects obs ${agent.obsDim}, act ${agent.actDim}`);
  }
  const loop = new OnlineLoop(agent, cfg, ctx, opts, venv);
  let failure: unknown;
  try {
    loop.resume();
    if (!loop.done) await loop.run();
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    ctx.log?.write({ ...loop.sessionRecord(), ...sessionEnd(failure) });
    loop.dispose();
  }
  return loop.result();
}
