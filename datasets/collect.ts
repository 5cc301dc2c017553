// Offline dataset collection: roll a batch policy (optionally with Gaussian action noise) in parallel copies of
// an environment and lay the steps out as a D4RL-style dataset. Episodes are stored whole and in episode order,
// so a file does not depend on how many copies ran at once.
//
// Row i of the result is one step: observations[i] -> actions[i] -> rewards[i], next_observations[i] (the true
// next observation, also on the last step of an episode), terminals[i] = the episode terminated (e.g. the goal
// was reached), timeouts[i] = it was cut by the time limit without terminating, infos/qpos[i] and
// infos/qvel[i] = the simulator state that observations[i] was taken from.
//
// Run as a command (`node datasets/collect.ts --help`) it writes the dataset to an HDF5 file.
import { HostRng } from '../engine/host-rng.ts';
import type { Env } from '../envs/core.ts';
import { meanStd, evaluate, type BatchPolicy } from '../envs/evaluate.ts';
import { randomPolicy } from '../envs/controllers.ts';
import type { D4RLData } from './d4rl.ts';

export interface CollectOptions {
  /** Exactly this many rows; the last episode is cut where the count is reached (neither flag set there). */
  steps?: number;
  /** This many whole episodes. Give steps or episodes, not both. */
  episodes?: number;
  /** Standard deviation of Gaussian noise added to every action (action units); the result is clipped to the box. */
  noiseStd?: number;
  /** Episode i is reset with seed + i; its action noise comes from its own stream derived from seed and i. */
  seed: number;
  /** Environment copies stepped together (default 16, at most the number of episodes when that is given). */
  numEnvs?: number;
  /** Recorded as metadata/policy (default 'custom'). */
  policyName?: string;
  /** Extra metadata entries, merged over the generated ones. */
  metadata?: Record<string, string | number | boolean>;
  /** Called as each episode finishes (in the order they finish), with the rows collected so far. */
  onEpisode?: (info: { ret: number; len: number; episodesDone: number; rows: number }) => void;
}

/** Recorded with every dataset as metadata/created_by. */
export const CREATED_BY = 'webdiffuser datasets/collect.ts';

interface EpisodeBuffer {
  index: number;
  len: number;
  ret: number;
  obs: Float32Array;
  actions: Float32Array;
  rewards: Float32Array;
  nextObs: Float32Array;
  terminals: Uint8Array;
  timeouts: Uint8Array;
  qpos: Float32Array | null;
  qvel: Float32Array | null;
}

interface Slot {
  env: Env;
  episode: EpisodeBuffer;
  obs: Float64Array;
  noise: HostRng;
}

/** A seed for episode i's noise stream that is unrelated to the environment's reset stream (seed + i). */
function noiseSeed(seed: number, episode: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) + Math.imul(episode + 1, 0x165667b1) + 0x2545f491) >>> 0;
}

function checkCount(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new Error(`collect: ${name} must be a positive integer, got ${v}`);
}

export async function collect(policy: BatchPolicy, makeEnvFn: () => Env | Promise<Env>, opts: CollectOptions): Promise<D4RLData> {
  const { steps, episodes } = opts;
  if ((steps === undefined) === (episodes === undefined)) throw new Error('collect: give exactly one of steps or episodes');
  checkCount('steps', steps);
  checkCount('episodes', episodes);
  checkCount('numEnvs', opts.numEnvs);
  const noiseStd = opts.noiseStd ?? 0;
  if (!(noiseStd >= 0) || !Number.isFinite(noiseStd)) throw new Error(`collect: noiseStd must be a finite number >= 0, got ${noiseStd}`);
  if (!Number.isInteger(opts.seed)) throw new Error(`collect: seed must be an integer, got ${opts.seed}`);
  const seed = opts.seed;
  const numEnvs = Math.min(opts.numEnvs ?? 16, episodes ?? Infinity);

  const envs: Env[] = [];
  try {
    for (let i = 0; i < numEnvs; i++) envs.push(await makeEnvFn());
    const first = envs[0]!;
    const { obsDim, actDim, maxEpisodeSteps, actionLow, actionHigh } = first;
    for (const env of envs) {
      if (env.id !== first.id || env.obsDim !== obsDim || env.actDim !== actDim) throw new Error('collect: makeEnvFn returned different environments');
    }
    const physics = first.physicsState?.() ?? null;
    const nq = physics?.qpos.length ?? 0;
    const nv = physics?.qvel.length ?? 0;

    const newEpisode = (index: number): EpisodeBuffer => ({
      index,
      len: 0,
      ret: 0,
      obs: new Float32Array(maxEpisodeSteps * obsDim),
      actions: new Float32Array(maxEpisodeSteps * actDim),
      rewards: new Float32Array(maxEpisodeSteps),
      nextObs: new Float32Array(maxEpisodeSteps * obsDim),
      terminals: new Uint8Array(maxEpisodeSteps),
      timeouts: new Uint8Array(maxEpisodeSteps),
      qpos: physics ? new Float32Array(maxEpisodeSteps * nq) : null,
      qvel: physics ? new Float32Array(maxEpisodeSteps * nv) : null,
    });

    const finished: EpisodeBuffer[] = [];
    let nextIndex = 0;
    let rowsAssigned = 0; // rows stepped so far over every episode started
    const wantMore = () => (episodes !== undefined ? nextIndex < episodes : rowsAssigned < steps!);
    const start = (env: Env): Slot => {
      const index = nextIndex++;
      return { env, episode: newEpisode(index), obs: env.reset(seed + index), noise: new HostRng(noiseSeed(seed, index)) };
    };
    const active: Slot[] = envs.map(start);

    const action = new Float32Array(actDim);
    while (active.length > 0) {
      const n = active.length;
      const batch = new Float32Array(n * obsDim);
      active.forEach((s, i) => batch.set(s.obs, i * obsDim));
      const actions = await policy(batch, n);
      if (actions.length !== n * actDim) {
        throw new Error(`collect: policy returned ${actions.length} values for ${n} observations; expected ${n} x ${actDim} = ${n * actDim}`);
      }
      for (let i = n - 1; i >= 0; i--) {
        const s = active[i]!;
        const ep = s.episode;
        const t = ep.len;
        for (let j = 0; j < actDim; j++) {
          let a = actions[i * actDim + j]!;
          if (!Number.isFinite(a)) throw new Error(`collect: policy returned a non-finite action (${a}) in episode ${ep.index}`);
          if (noiseStd > 0) a += noiseStd * s.noise.normal();
          action[j] = Math.min(Math.max(a, actionLow[j]!), actionHigh[j]!);
        }
        if (ep.qpos && ep.qvel) {
          const st = s.env.physicsState!();
          ep.qpos.set(st.qpos, t * nq);
          ep.qvel.set(st.qvel, t * nv);
        }
        ep.obs.set(s.obs, t * obsDim);
        ep.actions.set(action, t * actDim);
        const r = s.env.step(action);
        ep.rewards[t] = r.reward;
        ep.ret += r.reward;
        ep.nextObs.set(r.obs, t * obsDim);
        ep.terminals[t] = r.terminated ? 1 : 0;
        ep.timeouts[t] = r.truncated && !r.terminated ? 1 : 0;
        ep.len++;
        rowsAssigned++;
        s.obs = r.obs;
        if (r.terminated || r.truncated) {
          finished.push(ep);
          opts.onEpisode?.({ ret: ep.ret, len: ep.len, episodesDone: finished.length, rows: rowsAssigned });
          if (wantMore()) {
            const next = start(s.env);
            active[i] = next;
          } else {
            active.splice(i, 1);
          }
        } else if (ep.len >= maxEpisodeSteps) {
          throw new Error(`collect: ${first.id} ran ${ep.len} steps without ending although its limit is ${maxEpisodeSteps}`);
        }
      }
    }

    finished.sort((a, b) => a.index - b.index);
    const size = steps ?? finished.reduce((acc, e) => acc + e.len, 0);
    const data: D4RLData = {
      size,
      obsDim,
      actDim,
      observations: new Float32Array(size * obsDim),
      actions: new Float32Array(size * actDim),
      rewards: new Float32Array(size),
      terminals: new Uint8Array(size),
      timeouts: new Uint8Array(size),
      nextObservations: new Float32Array(size * obsDim),
    };
    const qpos = physics ? new Float32Array(size * nq) : null;
    const qvel = physics ? new Float32Array(size * nv) : null;
    const completeReturns: number[] = [];
    const completeLengths: number[] = [];
    let row = 0;
    for (const ep of finished) {
      if (row >= size) break;
      const take = Math.min(ep.len, size - row);
      data.observations.set(ep.obs.subarray(0, take * obsDim), row * obsDim);
      data.actions.set(ep.actions.subarray(0, take * actDim), row * actDim);
      data.rewards.set(ep.rewards.subarray(0, take), row);
      data.nextObservations!.set(ep.nextObs.subarray(0, take * obsDim), row * obsDim);
      if (take === ep.len) {
        data.terminals.set(ep.terminals.subarray(0, take), row);
        data.timeouts.set(ep.timeouts.subarray(0, take), row);
        completeReturns.push(ep.ret);
        completeLengths.push(ep.len);
      }
      if (qpos && qvel) {
        qpos.set(ep.qpos!.subarray(0, take * nq), row * nq);
        qvel.set(ep.qvel!.subarray(0, take * nv), row * nv);
      }
      row += take;
    }
    if (qpos && qvel) {
      data.infos = { qpos: { data: qpos, shape: [size, nq] }, qvel: { data: qvel, shape: [size, nv] } };
    }
    const stats = meanStd(completeReturns);
    const metadata: Record<string, string | number | boolean> = {
      env_id: first.id,
      policy: opts.policyName ?? 'custom',
      noise_std: noiseStd,
      seed,
      num_steps: size,
      num_episodes: completeReturns.length,
      max_episode_steps: maxEpisodeSteps,
      created_by: CREATED_BY,
    };
    if (completeReturns.length > 0) {
      Object.assign(metadata, {
        return_mean: stats.mean,
        return_std: stats.std,
        return_min: Math.min(...completeReturns),
        return_max: Math.max(...completeReturns),
        episode_length_mean: meanStd(completeLengths).mean,
      });
    }
    data.metadata = { ...metadata, ...opts.metadata };
    return data;
  } finally {
    for (const env of envs) env.close();
  }
}

/** Undiscounted return of each complete episode in a dataset (episodes end at a terminal or a timeout). */
export function episodeReturns(data: D4RLData): number[] {
  const out: number[] = [];
  let ret = 0;
  for (let i = 0; i < data.size; i++) {
    ret += data.rewards[i]!;
    if (data.terminals[i] || data.timeouts[i]) {
      out.push(ret);
      ret = 0;
    }
  }
  return out;
}

export interface ReferenceReturns {
  /** Mean return of uniform random actions. */
  min: number;
  /** Mean return of the given (noise-free) policy. */
  max: number;
  episodes: number;
  seed: number;
}

/**
 * D4RL-style reference returns for normalised scores: the mean return of a uniform random policy (ref_min, as
 * D4RL measures it over 100 episodes) and of an expert policy without noise (ref_max), episode i seeded with
 * seed + i for both. The random run uses one environment copy so its draws, and so ref_min, do not depend on
 * numEnvs; the expert should be deterministic for the same to hold of ref_max.
 */
export async function referenceReturns(expert: BatchPolicy, makeEnvFn: () => Env | Promise<Env>, opts: { episodes?: number; seed: number; numEnvs?: number }): Promise<ReferenceReturns> {
  const episodes = opts.episodes ?? 100;
  const probe = await makeEnvFn();
  const random = randomPolicy(probe, opts.seed);
  probe.close();
  // one copy, so the random draws reach the episodes in the same order whatever numEnvs is
  const min = await evaluate(random, makeEnvFn, { episodes, seed: opts.seed, numEnvs: 1 });
  const max = await evaluate(expert, makeEnvFn, { episodes, seed: opts.seed, numEnvs: opts.numEnvs });
  return { min: min.mean, max: max.mean, episodes, seed: opts.seed };
}

// ---- command line ----

const HELP = `usage: node datasets/collect.ts --env ID --policy NAME (--episodes N | --steps N) [options]

Rolls a scripted policy in an environment and writes a D4RL-layout HDF5 dataset (observations, actions,
rewards, next_observations, terminals, timeouts, infos/qpos, infos/qvel, metadata/*).

  --env ID            environment id or alias (e.g. Pendulum-v1, MountainCarContinuous-v0, hopper)
  --policy NAME       scripted policy: swingup (Pendulum), bangbang (MountainCar), random, zero
  --episodes N        collect N whole episodes
  --steps N           collect exactly N rows (the last episode may be cut)
  --noise STD         Gaussian action noise standard deviation, in action units (default 0)
  --seed S            episode i is reset with S + i (default 0)
  --num-envs K        environment copies stepped together (default 16); the data does not depend on it,
                      except with --policy random, whose draws follow the batch order
  --reference N       also measure reference returns over N episodes: uniform random (ref min) and the policy
                      without noise (ref max); recorded as metadata/ref_min_score, ref_max_score
  --reference-seed S  first episode seed of the reference runs (default 1000000, apart from the data's seeds)
  --compression L     gzip level 0-9 (default 4)
  --out FILE          output path (default runs/datasets/<env>-<policy>-noise<STD>-seed<S>.hdf5)
  -h, --help          this text`;

function parseNumber(flag: string, text: string | undefined, opts: { integer?: boolean; min?: number } = {}): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min)) {
    const what = opts.integer ? 'an integer' : 'a number';
    throw new Error(`--${flag} must be ${what}${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got '${text}'`);
  }
  return v;
}

async function main(argv: string[]): Promise<void> {
  const { parseArgs } = await import('node:util');
  const { mkdirSync } = await import('node:fs');
  const { dirname } = await import('node:path');
  const { values: args } = parseArgs({
    args: argv,
    options: {
      env: { type: 'string' },
      policy: { type: 'string' },
      episodes: { type: 'string' },
      steps: { type: 'string' },
      noise: { type: 'string', default: '0' },
      seed: { type: 'string', default: '0' },
      'num-envs': { type: 'string', default: '16' },
      reference: { type: 'string' },
      'reference-seed': { type: 'string', default: '1000000' },
      compression: { type: 'string', default: '4' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (args.help) {
    console.log(HELP);
    return;
  }
  if (!args.env) throw new Error('--env is required (e.g. --env Pendulum-v1); see --help');
  if (!args.policy) throw new Error('--policy is required (swingup, bangbang, random or zero); see --help');
  const episodes = parseNumber('episodes', args.episodes, { integer: true, min: 1 });
  const steps = parseNumber('steps', args.steps, { integer: true, min: 1 });
  if ((episodes === undefined) === (steps === undefined)) throw new Error('give exactly one of --episodes N or --steps N');
  const noiseStd = parseNumber('noise', args.noise, { min: 0 })!;
  const seed = parseNumber('seed', args.seed, { integer: true })!;
  const numEnvs = parseNumber('num-envs', args['num-envs'], { integer: true, min: 1 })!;
  const referenceEpisodes = parseNumber('reference', args.reference, { integer: true, min: 1 });
  const referenceSeed = parseNumber('reference-seed', args['reference-seed'], { integer: true })!;
  const compression = parseNumber('compression', args.compression, { integer: true, min: 0 })!;
  if (compression > 9) throw new Error(`--compression must be 0-9, got ${compression}`);

  const { makeEnv } = await import('../envs/registry.ts');
  const { scriptedPolicy } = await import('../envs/controllers.ts');
  const { writeD4RL } = await import('./d4rl.ts');
  const probe = await makeEnv(args.env, { seed });
  const envId = probe.id;
  const policyName = args.policy;
  const policy = scriptedPolicy(policyName, probe, { seed });
  probe.close();
  const makeEnvFn = () => makeEnv(envId, { seed });
  const out = args.out ?? `runs/datasets/${envId}-${policyName}-noise${noiseStd}-seed${seed}.hdf5`;

  const metadata: Record<string, string | number | boolean> = {};
  if (referenceEpisodes !== undefined) {
    process.stderr.write(`measuring reference returns over ${referenceEpisodes} episodes (seeds ${referenceSeed}..${referenceSeed + referenceEpisodes - 1})...\n`);
    const ref = await referenceReturns(scriptedPolicy(policyName, probe, { seed: referenceSeed }), makeEnvFn, {
      episodes: referenceEpisodes, seed: referenceSeed, numEnvs,
    });
    console.log(`reference returns: min (random) ${ref.min.toFixed(3)}, max (${policyName}, no noise) ${ref.max.toFixed(3)}`);
    Object.assign(metadata, {
      ref_min_score: ref.min, ref_max_score: ref.max, ref_episodes: ref.episodes, ref_seed: ref.seed,
      ref_min_policy: 'random', ref_max_policy: policyName,
    });
  }

  const total = episodes ?? steps!;
  const unit = episodes !== undefined ? 'episodes' : 'rows';
  let lastReport = 0;
  const t0 = performance.now();
  const data = await collect(policy, makeEnvFn, {
    episodes, steps, noiseStd, seed, numEnvs, policyName, metadata,
    onEpisode: ({ episodesDone, rows }) => {
      const done = episodes !== undefined ? episodesDone : Math.min(rows, total);
      const now = performance.now();
      if (now - lastReport > 1000 || done === total) {
        lastReport = now;
        const rate = rows / Math.max(1e-9, (now - t0) / 1000);
        process.stderr.write(`\r${done}/${total} ${unit}, ${rows} steps, ${rate.toFixed(0)} steps/s   `);
      }
    },
  });
  process.stderr.write('\n');
  const meta = data.metadata!;
  const returns = episodeReturns(data);
  const { mean, std } = meanStd(returns);
  let line = `${data.size} rows, ${returns.length} complete episodes, return ${mean.toFixed(3)} ± ${std.toFixed(3)}`;
  if (referenceEpisodes !== undefined) {
    const lo = meta.ref_min_score as number;
    const hi = meta.ref_max_score as number;
    const normalized = returns.map((r) => (100 * (r - lo)) / (hi - lo));
    const ns = meanStd(normalized);
    meta.normalized_score_mean = ns.mean;
    meta.normalized_score_std = ns.std;
    line += `, normalized score ${ns.mean.toFixed(2)} ± ${ns.std.toFixed(2)}`;
  }
  console.log(line);
  mkdirSync(dirname(out) || '.', { recursive: true });
  await writeD4RL(out, data, { compression });
  console.log(`wrote ${out}`);
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(`collect: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  });
}
