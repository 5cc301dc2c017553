// Policy evaluation: K episodes run in parallel copies of an environment, every step's observations batched
// into one policy call (so a GPU policy makes one write and one read per step), episode i reset with seed + i
// so a score does not depend on how many copies ran at once.
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { noGrad } from '../engine/autograd.ts';
import type { Env } from './core.ts';

/** A batch policy: n observations packed row-major [n * obsDim] in, n actions [n * actDim] out. */
export type BatchPolicy = (obs: Float32Array, n: number) => Float32Array | Promise<Float32Array>;

export interface EvaluateOptions {
  episodes: number;
  /** Environment copies stepped together (default min(episodes, 16)). */
  numEnvs?: number;
  /** Episode i is reset with seed + i (default 0). */
  seed?: number;
  /** Maps a return to a normalised score (e.g. D4RL's ×100 score); adds normalizedMean/normalizedStd. */
  normalize?: (ret: number) => number;
  /** Called as each episode ends, in the order they end (not episode order). */
  onEpisode?: (ret: number, len: number) => void;
}

export interface EvaluateResult {
  /** Undiscounted return of episode i, in episode order. */
  returns: number[];
  lengths: number[];
  mean: number;
  /** Population standard deviation (ddof 0, as numpy's default). */
  std: number;
  normalizedMean?: number;
  normalizedStd?: number;
}

export function meanStd(xs: readonly number[]): { mean: number; std: number } {
  if (xs.length === 0) return { mean: Number.NaN, std: Number.NaN };
  let sum = 0;
  for (const x of xs) sum += x;
  const mean = sum / xs.length;
  let sq = 0;
  for (const x of xs) sq += (x - mean) ** 2;
  return { mean, std: Math.sqrt(sq / xs.length) };
}

interface Slot {
  env: Env;
  episode: number;
  ret: number;
  len: number;
  obs: Float64Array;
}

export async function evaluate(
  policy: BatchPolicy,
  makeEnvFn: () => Env | Promise<Env>,
  opts: EvaluateOptions,
): Promise<EvaluateResult> {
  const episodes = opts.episodes;
  if (!Number.isInteger(episodes) || episodes < 1) throw new Error(`evaluate: episodes must be a positive integer, got ${episodes}`);
  const numEnvs = Math.min(opts.numEnvs ?? 16, episodes);
  if (!Number.isInteger(numEnvs) || numEnvs < 1) throw new Error(`evaluate: numEnvs must be a positive integer, got ${opts.numEnvs}`);
  const seed = opts.seed ?? 0;

  const envs: Env[] = [];
  try {
    for (let i = 0; i < numEnvs; i++) envs.push(await makeEnvFn());
    const { obsDim, actDim } = envs[0]!;
    for (const env of envs) {
      if (env.obsDim !== obsDim || env.actDim !== actDim) throw new Error(`evaluate: makeEnvFn returned environments of different dimensions`);
    }
    const returns = new Array<number>(episodes).fill(0);
    const lengths = new Array<number>(episodes).fill(0);
    let nextEpisode = 0;
    const active: Slot[] = envs.map((env) => {
      const episode = nextEpisode++;
      return { env, episode, ret: 0, len: 0, obs: env.reset(seed + episode) };
    });

    while (active.length > 0) {
      const n = active.length;
      const batch = new Float32Array(n * obsDim);
      active.forEach((s, i) => batch.set(s.obs, i * obsDim));
      const actions = await policy(batch, n);
      if (actions.length !== n * actDim) {
        throw new Error(`evaluate: policy returned ${actions.length} values for ${n} observations; expected ${n} x ${actDim} = ${n * actDim}`);
      }
      const action = new Float64Array(actDim);
      for (let i = n - 1; i >= 0; i--) {
        const s = active[i]!;
        for (let j = 0; j < actDim; j++) {
          const a = actions[i * actDim + j]!;
          if (!Number.isFinite(a)) throw new Error(`evaluate: policy returned a non-finite action (${a}) for episode ${s.episode}`);
          action[j] = a;
        }
        const r = s.env.step(action);
        s.ret += r.reward;
        s.len++;
        s.obs = r.obs;
        if (r.terminated || r.truncated) {
          returns[s.episode] = s.ret;
          lengths[s.episode] = s.len;
          opts.onEpisode?.(s.ret, s.len);
          if (nextEpisode < episodes) {
            s.episode = nextEpisode++;
            s.ret = 0;
            s.len = 0;
            s.obs = s.env.reset(seed + s.episode);
          } else {
            active.splice(i, 1);
          }
        }
      }
    }

    const { mean, std } = meanStd(returns);
    const result: EvaluateResult = { returns, lengths, mean, std };
    if (opts.normalize) {
      const normalized = meanStd(returns.map(opts.normalize));
      result.normalizedMean = normalized.mean;
      result.normalizedStd = normalized.std;
    }
    return result;
  } finally {
    for (const env of envs) env.close();
  }
}

/**
 * Adapts a tensor function [n, obsDim] -> [n, actDim] into a BatchPolicy: the observations go to the GPU in one
 * write, the function runs without gradient tracking, and the actions come back in one read. Intermediate
 * tensors are disposed.
 */
export function gpuPolicy(fn: (obs: Tensor) => Tensor): BatchPolicy {
  return async (obs: Float32Array, n: number): Promise<Float32Array> => {
    if (n < 1 || obs.length % n !== 0) throw new Error(`gpuPolicy: ${obs.length} observation values do not split into ${n} rows`);
    const input = tensor(obs, [n, obs.length / n]);
    let out: Tensor;
    try {
      out = tidy(() => noGrad(() => fn(input)));
    } catch (e) {
      input.dispose();
      throw e;
    }
    try {
      if (out.dtype !== 'f32') throw new Error(`gpuPolicy: the policy returned a ${out.dtype} tensor; actions must be f32`);
      if (out.shape[0] !== n) throw new Error(`gpuPolicy: the policy returned shape [${out.shape}] for ${n} observations`);
      return (await out.read()) as Float32Array;
    } finally {
      if (out !== input) out.dispose();
      input.dispose();
    }
  };
}
