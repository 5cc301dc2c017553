// Setup shared by the benchmarks: random transitions at D4RL sizes in a GPU replay store, the three SRPO models
// at the paper's sizes with one training step of each phase as a step function, and a timer that waits for the
// GPU at the end.
import { runtime } from '../engine/runtime.ts';
import { Generator } from '../engine/random.ts';
import type { Tensor } from '../engine/tensor.ts';
import { ReplayStore } from '../datasets/replay.ts';
import type { Transitions } from '../datasets/d4rl.ts';
import type { IQLCritic, IQLStep } from '../algorithms/common/iql.ts';
import type { AdamW } from '../engine/optim.ts';
import type { DeterministicActor } from '../algorithms/common/deterministic-actor.ts';
import { actorStep, actorTraining, behaviorOptimizer, behaviorStep, makeActor, makeBehavior, makeCritic, type ActorTraining, type SrpoBehavior } from '../algorithms/srpo.ts';
import { taskConfig, type SrpoConfig } from '../algorithms/srpo/presets.ts';

/** Options of the benchmarks over Hopper-sized networks: the problem sizes and where the JSON results go. */
export const HOPPER_SIZE_OPTIONS = {
  obs: { type: 'integer', positive: true, default: 11, description: "observation size (Hopper's)" },
  act: { type: 'integer', positive: true, default: 3, description: "action size (Hopper's)" },
  out: { type: 'string', default: 'bench/results', placeholder: 'dir', description: 'where the JSON goes' },
} as const;

/** Runs fn `warmup` times untimed, then `reps` times; ms per call, measured up to the GPU finishing. */
export async function timeIt(reps: number, warmup: number, fn: () => Promise<void> | void): Promise<number> {
  const rt = runtime();
  for (let i = 0; i < warmup; i++) await fn();
  await rt.sync();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await fn();
  await rt.sync();
  return (performance.now() - t0) / reps;
}

/**
 * timeIt with the process's CPU time as well: ms per call of wall time and of CPU time (user + system, all
 * threads). A software adapter computes on the process's own threads, so on a machine shared with other work
 * the CPU time is the steadier measure of the work done (descheduled time does not count).
 */
export async function timeItWithCpu(reps: number, warmup: number, fn: () => Promise<void> | void): Promise<{ ms: number; cpuMs: number }> {
  const rt = runtime();
  for (let i = 0; i < warmup; i++) await fn();
  await rt.sync();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await fn();
  await rt.sync();
  const ms = (performance.now() - t0) / reps;
  const c = process.cpuUsage(c0);
  return { ms, cpuMs: (c.user + c.system) / 1000 / reps };
}

/** n transitions of uniform noise in [-1, 1] (no terminals), from a seeded LCG. */
export function randomTransitions(n: number, obsDim: number, actDim: number, seed: number): Transitions {
  let s = seed >>> 0;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296) * 2 - 1;
  const f = (k: number) => Float32Array.from({ length: k }, r);
  return { size: n, obsDim, actDim, observations: f(n * obsDim), actions: f(n * actDim), rewards: f(n), nextObservations: f(n * obsDim), dones: new Float32Array(n) };
}

/** A GPU replay store of n random transitions (randomTransitions) for the training-step benchmarks. */
export function randomStore(obsDim: number, actDim: number, n = 100_000, seed = 1): ReplayStore {
  return ReplayStore.fromTransitions(randomTransitions(n, obsDim, actDim, seed));
}

/** The SRPO models with the hopper-medium-v2 paper settings, on a store of random transitions. */
export interface SrpoBench {
  cfg: SrpoConfig;
  store: ReplayStore;
  /** Minibatch indices, noise and diffusion times of every step. */
  gen: Generator;
  behavior: SrpoBehavior;
  behaviorOpt: AdamW;
  critic: IQLCritic;
  actor: DeterministicActor;
  actorTraining: ActorTraining;
  dispose(): void;
}

export function srpoBench(obsDim: number, actDim: number, opts: { transitions?: number } = {}): SrpoBench {
  const cfg = taskConfig('hopper-medium-v2');
  cfg.dataset = 'random';
  const store = randomStore(obsDim, actDim, opts.transitions ?? 100_000);
  const behavior = makeBehavior(obsDim, actDim, cfg);
  const behaviorOpt = behaviorOptimizer(behavior, cfg);
  const critic = makeCritic(obsDim, actDim, cfg);
  const actor = makeActor(obsDim, actDim, cfg);
  const tr = actorTraining(actor, behavior, critic, cfg);
  return {
    cfg, store, gen: new Generator(5), behavior, behaviorOpt, critic, actor, actorTraining: tr,
    dispose() {
      behaviorOpt.dispose();
      tr.opt.dispose();
      critic.dispose();
      store.dispose();
    },
  };
}

/**
 * One training step of each phase on a fresh minibatch, returning its loss tensors (left on the GPU). They
 * create tensors, so run them inside tidy (or a step recorder).
 */
export interface SrpoSteps {
  /** Phase 1: the VP-SDE eps loss of ScoreNet_IDQL and an AdamW step (default batch: the config's 2048). */
  behavior: (batch?: number) => { loss: Tensor };
  /** Phase 2: IQLCritic.update (V expectile step, twin-Q step, Polyak target). */
  critic: () => IQLStep;
  /** Phase 3: the actor's surrogate loss (behaviour eps at a noised action, target-Q action gradient) and Adam. */
  actor: () => { loss: Tensor; terms: Tensor };
}

export function srpoSteps(b: SrpoBench): SrpoSteps {
  const { cfg, store, gen } = b;
  return {
    behavior: (batch = cfg.behaviorBatch) => ({ loss: behaviorStep(b.behavior, b.behaviorOpt, store.sample(batch, gen), gen) }),
    critic: () => b.critic.update(store.sample(cfg.criticBatch, gen)),
    actor: () => actorStep(b.actorTraining, store.sample(cfg.actorBatch, gen).obs, gen),
  };
}
