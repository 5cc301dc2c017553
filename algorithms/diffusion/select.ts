// Energy-based action selection (EDP, Diffusion-QL, DTQL): repeat each state N times, sample N candidate
// actions, score them with a critic and keep one per state, drawn from softmax(temperature * Q) or the argmax.
// Selection is one dispatch and reads nothing back.
import { launch } from '../../engine/fused.ts';
import type { Generator } from '../../engine/random.ts';
import { gather } from '../../engine/ops/shape.ts';
import { empty, keep, tensor, type Tensor } from '../../engine/tensor.ts';
import { flatGrid } from '../../kernels/common.ts';
import { SELECT_WG, selectByCriticSource, type SelectMode } from '../../kernels/samplers.ts';

/**
 * x [S, ...] -> [S*n, ...], state-major: rows s*n .. s*n+n-1 are copies of row s. Differentiable (the gradient
 * sums the copies).
 */
export function repeatRows(x: Tensor, n: number): Tensor {
  if (x.rank < 1) throw new Error(`repeatRows: x must have at least one axis, got [${x.shape}]`);
  if (!Number.isInteger(n) || n < 1) throw new Error(`repeatRows: n must be a positive integer, got ${n}`);
  return gather(x, repeatIndices(x.shape[0]!, n));
}

const repeatIndexCache = new Map<string, Tensor>();

/**
 * The gather indices of repeatRows, uploaded once per (S, n) and kept: a training step that repeats rows then
 * makes no host write, so it can be recorded (engine/record.ts) once an eager step has made them.
 */
function repeatIndices(S: number, n: number): Tensor {
  const key = `${S}x${n}`;
  let indices = repeatIndexCache.get(key);
  if (!indices || indices.isDisposed) {
    const index = new Uint32Array(S * n);
    for (let s = 0; s < S; s++) index.fill(s, s * n, s * n + n);
    indices = keep(tensor(index, [S * n], 'u32'));
    repeatIndexCache.set(key, indices);
  }
  return indices;
}

export interface SelectOptions {
  /** Logits are temperature * q (a multiplier, like CleanDiffuser's weight_temperature); default 1, as in EDP, Diffusion-QL and DTQL. */
  temperature?: number;
  /** 'sample' (default) draws from the softmax; 'argmax' takes the first best candidate. */
  mode?: SelectMode;
}

/**
 * One candidate per state from candidates [S*N, D] (state-major, as repeatRows lays them out) scored by q [S*N]
 * or [S*N, 1]. Returns the chosen rows [S, D] and their indices within each state's group [S] (u32).
 * Sampling uses one uniform number per state from the generator (the layout of generator.uniform([S])); argmax
 * draws nothing. Not differentiable.
 */
export function selectByCriticWithIndices(
  candidates: Tensor,
  q: Tensor,
  N: number,
  gen: Generator,
  opts: SelectOptions = {},
): { actions: Tensor; indices: Tensor } {
  if (!Number.isInteger(N) || N < 1) throw new Error(`selectByCritic: N must be a positive integer, got ${N}`);
  if (candidates.rank !== 2 || candidates.dtype !== 'f32') {
    throw new Error(`selectByCritic: candidates must be an f32 [S*N, D] tensor, got ${candidates.dtype} [${candidates.shape}]`);
  }
  const [rows, D] = candidates.shape as [number, number];
  if (rows % N !== 0 || rows === 0) throw new Error(`selectByCritic: candidates [${candidates.shape}] do not hold a positive whole number of groups of N = ${N}`);
  const qOk = q.dtype === 'f32' && q.size === rows && (q.rank === 1 || (q.rank === 2 && q.shape[1] === 1));
  if (!qOk) throw new Error(`selectByCritic: q must be an f32 [${rows}] or [${rows}, 1] tensor, got ${q.dtype} [${q.shape}]`);
  const temperature = opts.temperature ?? 1;
  if (!Number.isFinite(temperature)) throw new Error(`selectByCritic: temperature must be finite, got ${temperature}`);
  const mode = opts.mode ?? 'sample';
  if (mode !== 'sample' && mode !== 'argmax') throw new Error(`selectByCritic: mode must be 'sample' or 'argmax', got ${String(mode)}`);
  const S = rows / N;
  const actions = empty([S, D]);
  const indices = empty([S], 'u32');
  const position = mode === 'sample' ? gen.reserve(S) : { key_lo: 0, key_hi: 0, base_lo: 0, base_hi: 0 };
  launch(
    `selectByCritic_${mode}`,
    () => selectByCriticSource(mode),
    { cand: candidates, q, out: actions, idx: indices },
    [{ S, N, D, temperature }, position],
    flatGrid(S, SELECT_WG),
  );
  return { actions, indices };
}

/** selectByCriticWithIndices without the indices: the chosen action per state, [S, D]. */
export function selectByCritic(candidates: Tensor, q: Tensor, N: number, gen: Generator, opts: SelectOptions = {}): Tensor {
  const { actions, indices } = selectByCriticWithIndices(candidates, q, N, gen, opts);
  indices.dispose();
  return actions;
}
