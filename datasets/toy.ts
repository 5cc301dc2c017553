// Two-dimensional one-step bandit datasets from the diffusion-policy papers, regenerated from their published
// generators: Diffusion-QL's four-cluster bandit, the QGPO / SRPO `inf_train_gen` shapes with their energies,
// and DTQL's 25-Gaussian grid with its three reward functions. The formulas (including scikit-learn's
// make_swiss_roll and make_moons) are reproduced exactly; the random streams come from a seeded HostRng, so a
// dataset is reproducible from (name, n, seed) but is not bit-identical to a NumPy or PyTorch draw.
import { HostRng } from '../engine/host-rng.ts';

export const TOY_NAMES = [
  'dql-bandit',
  'dql-bandit-bc',
  '8gaussians',
  'rings',
  'swissroll',
  'moons',
  'checkerboard',
  '2spirals',
  '25gaussians-far',
  '25gaussians-near',
  '25gaussians-hard',
] as const;

export type ToyName = (typeof TOY_NAMES)[number];

export interface ToyData {
  name: ToyName;
  /** [n, 2] row-major. */
  actions: Float32Array;
  /** [n]: the reward (Diffusion-QL, DTQL) or energy (QGPO / SRPO) of each action. */
  rewards: Float32Array;
  actionDim: 2;
  stateDim: number;
  /** [n, stateDim]: the constant state of a one-step problem (all zeros). */
  states: Float32Array;
  /** Bound the original clips actions to, where it has one. */
  maxAction: number | null;
  /** For Gaussian mixtures: the component means and their common standard deviation per axis. */
  modes?: { centers: number[][]; std: number };
}

export function isToyName(name: string): name is ToyName {
  return (TOY_NAMES as readonly string[]).includes(name);
}

/** Generates `n` samples of the named toy dataset from `seed`. */
export function toyDataset(name: ToyName, n: number, seed: number): ToyData {
  if (!isToyName(name)) throw new Error(`toyDataset: unknown dataset "${String(name)}"; known: ${TOY_NAMES.join(', ')}`);
  if (!Number.isInteger(n) || n < 1) throw new Error(`toyDataset(${name}): n must be a positive integer, got ${n}`);
  const rng = new HostRng(seed);
  switch (name) {
    case 'dql-bandit':
      return dqlBandit(name, n, rng, true);
    case 'dql-bandit-bc':
      return dqlBandit(name, n, rng, false);
    case '8gaussians':
      return eightGaussians(n, rng);
    case 'rings':
      return rings(n, rng);
    case 'swissroll':
      return swissroll(n, rng);
    case 'moons':
      return moons(n, rng);
    case 'checkerboard':
      return checkerboard(n, rng);
    case '2spirals':
      return twoSpirals(n, rng);
    case '25gaussians-far':
    case '25gaussians-near':
    case '25gaussians-hard':
      return gaussianGrid(name, n, rng);
  }
}

// ---- helpers ----

function randint(rng: HostRng, k: number): number {
  return Math.min(k - 1, Math.floor(rng.next() * k));
}

/** Fisher-Yates over whole rows of each array (rows of `widths[i]` values), applying one permutation to all. */
function shuffleRows(rng: HostRng, n: number, arrays: { data: Float64Array | Float32Array; width: number }[]): void {
  for (let i = n - 1; i > 0; i--) {
    const j = randint(rng, i + 1);
    if (j === i) continue;
    for (const { data, width } of arrays) {
      for (let k = 0; k < width; k++) {
        const a = i * width + k;
        const b = j * width + k;
        const tmp = data[a]!;
        data[a] = data[b]!;
        data[b] = tmp;
      }
    }
  }
}

/** Splits n into `groups` counts of floor(n / groups), the first n mod groups counts one larger. */
function groupSizes(n: number, groups: number): number[] {
  const base = Math.floor(n / groups);
  return Array.from({ length: groups }, (_, g) => base + (g < n % groups ? 1 : 0));
}

function make(name: ToyName, actions: Float32Array, rewards: Float32Array, stateDim: number, extra: Partial<ToyData> = {}): ToyData {
  const n = rewards.length;
  return { name, actions, rewards, actionDim: 2, stateDim, states: new Float32Array(n * stateDim), maxAction: null, ...extra };
}

// ---- Diffusion-QL (run_toy_ql.py / run_toy_bc.py) ----

const DQL_CENTERS = [
  [-0.8, 0.8],
  [-0.8, -0.8],
  [0.8, 0.8],
  [0.8, -0.8],
];
const DQL_REWARD_MEANS = [3.0, 0.0, 1.5, 5.0];

/**
 * Four clusters N(center, 0.05^2 I) of n/4 points each, in the order left-up, left-bottom, right-up,
 * right-bottom, clipped to [-1, 1]; rewards N(mu, 0.5^2) per cluster (0 for the BC variant). The original
 * concatenates the clusters without shuffling.
 */
function dqlBandit(name: ToyName, n: number, rng: HostRng, withReward: boolean): ToyData {
  const std = 0.05;
  const actions = new Float32Array(n * 2);
  const rewards = new Float32Array(n);
  const sizes = groupSizes(n, 4);
  let row = 0;
  sizes.forEach((count, g) => {
    const c = DQL_CENTERS[g]!;
    for (let i = 0; i < count; i++, row++) {
      actions[row * 2] = clip(c[0]! + std * rng.normal(), -1, 1);
      actions[row * 2 + 1] = clip(c[1]! + std * rng.normal(), -1, 1);
    }
  });
  if (withReward) {
    row = 0;
    sizes.forEach((count, g) => {
      for (let i = 0; i < count; i++, row++) rewards[row] = DQL_REWARD_MEANS[g]! + 0.5 * rng.normal();
    });
  }
  return make(name, actions, rewards, 2, { maxAction: 1, modes: { centers: DQL_CENTERS.map((c) => [...c]), std } });
}

function clip(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

// ---- QGPO / SRPO inf_train_gen ----

const EIGHT_SCALE = 4;
const EIGHT_DIVISOR = 1.414;

const SQRT_HALF = 1 / Math.sqrt(2);
/** Unit directions of the eight modes, in the original's order. */
const EIGHT_UNIT = [[0, 1], [-SQRT_HALF, SQRT_HALF], [-1, 0], [-SQRT_HALF, -SQRT_HALF], [0, -1], [SQRT_HALF, -SQRT_HALF], [1, 0], [SQRT_HALF, SQRT_HALF]];

/** idx ~ randint(8); (0.5 N(0, I) + 4 unit_idx) / 1.414; energy idx / 7. Independent draws, no shuffle. */
function eightGaussians(n: number, rng: HostRng): ToyData {
  const actions = new Float32Array(n * 2);
  const rewards = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const px = 0.5 * rng.normal();
    const py = 0.5 * rng.normal();
    const idx = randint(rng, 8);
    const c = EIGHT_UNIT[idx]!;
    actions[i * 2] = (px + EIGHT_SCALE * c[0]!) / EIGHT_DIVISOR;
    actions[i * 2 + 1] = (py + EIGHT_SCALE * c[1]!) / EIGHT_DIVISOR;
    rewards[i] = idx / 7;
  }
  const centers = EIGHT_UNIT.map(([x, y]) => [(EIGHT_SCALE * x!) / EIGHT_DIVISOR, (EIGHT_SCALE * y!) / EIGHT_DIVISOR]);
  return make('8gaussians', actions, rewards, 1, { modes: { centers, std: 0.5 / EIGHT_DIVISOR } });
}

/** Radii of the four rings, outermost first (3 times 1, 0.75, 0.5, 0.25). */
export const RING_RADII = [3, 2.25, 1.5, 0.75] as const;

/** Energy of a noiseless ring point from its squared distance to the origin (the original's thresholds). */
export function ringEnergy(d2: number): number {
  if (d2 >= 8.5) return 0.667;
  if (d2 >= 5.0) return 0.333;
  if (d2 >= 2.0) return 1.0;
  return 0.0;
}

/**
 * n/4 evenly spaced angles (endpoint excluded) on each of the three outer circles, the rest on the innermost;
 * shuffled; energy from the noiseless radius; then N(0, 0.08^2) noise.
 */
function rings(n: number, rng: HostRng): ToyData {
  const quarter = Math.floor(n / 4);
  const counts = [quarter, quarter, quarter, n - 3 * quarter];
  const pts = new Float64Array(n * 2);
  let row = 0;
  counts.forEach((count, ring) => {
    const radius = RING_RADII[ring]!;
    for (let i = 0; i < count; i++, row++) {
      const angle = (2 * Math.PI * i) / count;
      pts[row * 2] = radius * Math.cos(angle);
      pts[row * 2 + 1] = radius * Math.sin(angle);
    }
  });
  shuffleRows(rng, n, [{ data: pts, width: 2 }]);
  const actions = new Float32Array(n * 2);
  const rewards = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = pts[i * 2]!;
    const y = pts[i * 2 + 1]!;
    rewards[i] = ringEnergy(x * x + y * y);
    actions[i * 2] = x + 0.08 * rng.normal();
    actions[i * 2 + 1] = y + 0.08 * rng.normal();
  }
  return make('rings', actions, rewards, 1);
}

/**
 * scikit-learn's make_swiss_roll(n, noise): t = 1.5 pi (1 + 2U), height 21U, point (t cos t, height, t sin t)
 * plus noise * N(0, I3). Returns the first and third coordinates.
 */
export function swissRoll2d(n: number, noise: number, rng: HostRng): Float64Array {
  const out = new Float64Array(n * 2);
  const t = new Float64Array(n);
  for (let i = 0; i < n; i++) t[i] = 1.5 * Math.PI * (1 + 2 * rng.next());
  // the height coordinate and its noise are dropped, so they are not drawn
  for (let i = 0; i < n; i++) out[i * 2] = t[i]! * Math.cos(t[i]!) + noise * rng.normal();
  for (let i = 0; i < n; i++) out[i * 2 + 1] = t[i]! * Math.sin(t[i]!) + noise * rng.normal();
  return out;
}

/** make_swiss_roll(n, noise = 1), columns 0 and 2, divided by 5; energy |a|^2 / 9 (from the f32 point). */
function swissroll(n: number, rng: HostRng): ToyData {
  const raw = swissRoll2d(n, 1.0, rng);
  const actions = new Float32Array(n * 2);
  const rewards = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    actions[i * 2] = raw[i * 2]! / 5;
    actions[i * 2 + 1] = raw[i * 2 + 1]! / 5;
  }
  for (let i = 0; i < n; i++) rewards[i] = (actions[i * 2]! ** 2 + actions[i * 2 + 1]! ** 2) / 9;
  return make('swissroll', actions, rewards, 1);
}

/**
 * scikit-learn's make_moons(n, noise = 0.1): floor(n/2) points (label 0) at (cos th, sin th) and the rest
 * (label 1) at (1 - cos th, 1 - sin th - 0.5), th evenly spaced over [0, pi] inclusive per moon; shuffled;
 * N(0, 0.1^2) noise. Then times 2 plus (-1, -0.2); energy = label.
 */
function moons(n: number, rng: HostRng): ToyData {
  const nOut = Math.floor(n / 2);
  const nIn = n - nOut;
  const pts = new Float64Array(n * 2);
  const labels = new Float64Array(n);
  const spaced = (i: number, count: number) => (count === 1 ? 0 : (Math.PI * i) / (count - 1));
  for (let i = 0; i < nOut; i++) {
    const th = spaced(i, nOut);
    pts[i * 2] = Math.cos(th);
    pts[i * 2 + 1] = Math.sin(th);
  }
  for (let i = 0; i < nIn; i++) {
    const th = spaced(i, nIn);
    const row = nOut + i;
    pts[row * 2] = 1 - Math.cos(th);
    pts[row * 2 + 1] = 1 - Math.sin(th) - 0.5;
    labels[row] = 1;
  }
  shuffleRows(rng, n, [
    { data: pts, width: 2 },
    { data: labels, width: 1 },
  ]);
  const actions = new Float32Array(n * 2);
  const rewards = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    actions[i * 2] = (pts[i * 2]! + 0.1 * rng.normal()) * 2 - 1;
    actions[i * 2 + 1] = (pts[i * 2 + 1]! + 0.1 * rng.normal()) * 2 - 0.2;
    rewards[i] = labels[i]!;
  }
  return make('moons', actions, rewards, 1);
}

/** Energy of a checkerboard point: 1 where 0 < x <= 2 or x <= -2. */
export function checkerboardEnergy(x: number): number {
  return (x > 0 && x <= 2) || x <= -2 ? 1 : 0;
}

/** x1 ~ U(-2, 2); x2 = U(0, 1) - 2 randint(2) + (floor(x1) mod 2); points 2 (x1, x2); energy from x. */
function checkerboard(n: number, rng: HostRng): ToyData {
  const actions = new Float32Array(n * 2);
  const rewards = new Float32Array(n);
  const x1 = new Float64Array(n);
  for (let i = 0; i < n; i++) x1[i] = rng.next() * 4 - 2;
  const u = new Float64Array(n);
  for (let i = 0; i < n; i++) u[i] = rng.next();
  for (let i = 0; i < n; i++) {
    const parity = ((Math.floor(x1[i]!) % 2) + 2) % 2;
    const x2 = u[i]! - randint(rng, 2) * 2 + parity;
    actions[i * 2] = 2 * x1[i]!;
    actions[i * 2 + 1] = 2 * x2;
    rewards[i] = checkerboardEnergy(actions[i * 2]!);
  }
  return make('checkerboard', actions, rewards, 1);
}

/**
 * h = sqrt(U) 540 (2 pi / 360); d1 = (-cos(h) h + U/2, sin(h) h + U/2); the points are d1 and -d1 stacked,
 * divided by 3, plus N(0, 0.1^2); energy clip(1 - h/10, 0, 1). The original draws n/2 spiral points; for odd
 * n the first half here takes the extra one so exactly n points come back.
 */
function twoSpirals(n: number, rng: HostRng): ToyData {
  const half = Math.ceil(n / 2);
  const h = new Float64Array(half);
  for (let i = 0; i < half; i++) h[i] = (Math.sqrt(rng.next()) * 540 * (2 * Math.PI)) / 360;
  const d1 = new Float64Array(half * 2);
  for (let i = 0; i < half; i++) d1[i * 2] = -Math.cos(h[i]!) * h[i]! + rng.next() * 0.5;
  for (let i = 0; i < half; i++) d1[i * 2 + 1] = Math.sin(h[i]!) * h[i]! + rng.next() * 0.5;
  const actions = new Float32Array(n * 2);
  const rewards = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const src = i < half ? i : i - half;
    const sign = i < half ? 1 : -1;
    actions[i * 2] = (sign * d1[src * 2]!) / 3 + 0.1 * rng.normal();
    actions[i * 2 + 1] = (sign * d1[src * 2 + 1]!) / 3 + 0.1 * rng.normal();
    rewards[i] = clip(1 - h[src]! / 10, 0, 1);
  }
  return make('2spirals', actions, rewards, 1);
}

// ---- DTQL (toy_tasks/data_generator.py, toy_main.py) ----

/**
 * Means of the 5 x 5 grid in the original's order: meshgrid(x, y).T.reshape(-1, 2), i.e. mode 5j + i is
 * (x_j, y_i) with x, y = linspace(-10, 10, 5).
 */
export function gridCenters(): number[][] {
  const axis = [-10, -5, 0, 5, 10];
  const out: number[][] = [];
  for (const x of axis) for (const y of axis) out.push([x, y]);
  return out;
}

/** DTQL's `hard` reward: |a|, doubled in the top-left mode (a0 < -7.5 and a1 > 7.5). */
export function gridHardReward(x: number, y: number): number {
  const r = Math.hypot(x, y);
  return x < -7.5 && y > 7.5 ? 2 * r : r;
}

/**
 * n/25 samples from N(mean, 0.3^2 I) per grid mode, mode by mode (no shuffle, as the original); for n not a
 * multiple of 25 the first modes take one more. Rewards from the f32 actions: far |a|, near max|a| - |a|, hard.
 */
function gaussianGrid(name: '25gaussians-far' | '25gaussians-near' | '25gaussians-hard', n: number, rng: HostRng): ToyData {
  const std = 0.3;
  const centers = gridCenters();
  const actions = new Float32Array(n * 2);
  let row = 0;
  groupSizes(n, 25).forEach((count, m) => {
    const c = centers[m]!;
    for (let i = 0; i < count; i++, row++) {
      actions[row * 2] = c[0]! + std * rng.normal();
      actions[row * 2 + 1] = c[1]! + std * rng.normal();
    }
  });
  const rewards = new Float32Array(n);
  let maxNorm = 0;
  for (let i = 0; i < n; i++) maxNorm = Math.max(maxNorm, Math.hypot(actions[i * 2]!, actions[i * 2 + 1]!));
  for (let i = 0; i < n; i++) {
    const x = actions[i * 2]!;
    const y = actions[i * 2 + 1]!;
    if (name === '25gaussians-far') rewards[i] = Math.hypot(x, y);
    else if (name === '25gaussians-near') rewards[i] = maxNorm - Math.hypot(x, y);
    else rewards[i] = gridHardReward(x, y);
  }
  return make(name, actions, rewards, 1, { modes: { centers, std } });
}
