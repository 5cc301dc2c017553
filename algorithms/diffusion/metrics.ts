// Sample-quality measures for low-dimensional samples (toy bandits, action distributions), computed on the
// host in float64: kernel MMD between two samples, the share of samples near each mode, mean and covariance.
import { HostRng } from '../../engine/host-rng.ts';

export type Points = Float32Array | Float64Array;

export interface MmdOptions {
  /** RBF bandwidths sigma of k(a, b) = sum_sigma exp(-|a - b|^2 / (2 sigma^2)); default: median heuristic. */
  bandwidths?: number[];
  /** Each sample is subsampled (without replacement) to at most this many points; default 2000. */
  maxPoints?: number;
  /** Seed of the subsampling; default 0. */
  seed?: number;
}

/** Multiples of the median pairwise distance used as bandwidths when none are given. */
export const MEDIAN_BANDWIDTH_FACTORS = [0.5, 1, 2] as const;

function countRows(x: Points, dim: number, what: string): number {
  if (!Number.isInteger(dim) || dim < 1) throw new Error(`${what}: dim must be a positive integer, got ${dim}`);
  if (x.length % dim !== 0) throw new Error(`${what}: ${x.length} values are not a whole number of rows of ${dim}`);
  return x.length / dim;
}

/** Up to `max` rows drawn without replacement (all rows, in order, when there are no more than `max`). */
function subsample(x: Points, dim: number, max: number, rng: HostRng): Float64Array {
  const n = x.length / dim;
  if (n <= max) return Float64Array.from(x);
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  const out = new Float64Array(max * dim);
  for (let i = 0; i < max; i++) {
    const j = i + Math.min(n - i - 1, Math.floor(rng.next() * (n - i)));
    const pick = idx[j]!;
    idx[j] = idx[i]!;
    idx[i] = pick;
    for (let k = 0; k < dim; k++) out[i * dim + k] = x[pick * dim + k]!;
  }
  return out;
}

function dist2(a: Float64Array, i: number, b: Float64Array, j: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) {
    const d = a[i * dim + k]! - b[j * dim + k]!;
    s += d * d;
  }
  return s;
}

/** Median of the pairwise distances between distinct rows of `x` (at most `maxPoints` rows are used). */
export function medianPairwiseDistance(x: Points, dim: number, opts: { maxPoints?: number; seed?: number } = {}): number {
  countRows(x, dim, 'medianPairwiseDistance');
  const pts = subsample(x, dim, opts.maxPoints ?? 1000, new HostRng(opts.seed ?? 0));
  const n = pts.length / dim;
  if (n < 2) throw new Error(`medianPairwiseDistance: needs at least 2 points, got ${n}`);
  const d = new Float64Array((n * (n - 1)) / 2);
  let p = 0;
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) d[p++] = dist2(pts, i, pts, j, dim);
  const m = d.length;
  const upper = select(d, Math.floor(m / 2));
  if (m % 2 === 1) return Math.sqrt(upper);
  // after selection everything left of m/2 is <= its value: the lower middle is their maximum
  let lower = -Infinity;
  for (let i = 0; i < m / 2; i++) if (d[i]! > lower) lower = d[i]!;
  return 0.5 * (Math.sqrt(lower) + Math.sqrt(upper));
}

/** The k-th smallest value (0-based), partially reordering `a` (Hoare's selection, median-of-three pivot). */
function select(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const x = a[lo]!, y = a[mid]!, z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const tmp = a[i]!;
        a[i] = a[j]!;
        a[j] = tmp;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k]!;
  }
  return a[k]!;
}

/**
 * Unbiased estimate of the squared maximum mean discrepancy between the distributions of `x` and `y`
 * (rows of `dim` values) under a sum of RBF kernels:
 *   MMD^2 = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j).
 * It can come out slightly negative when the distributions agree. Without explicit bandwidths, sigma is the
 * median pairwise distance of the pooled subsamples times 0.5, 1 and 2.
 */
export function mmd(x: Points, y: Points, dim: number, opts: MmdOptions = {}): number {
  const nx = countRows(x, dim, 'mmd (x)');
  const ny = countRows(y, dim, 'mmd (y)');
  if (nx < 2 || ny < 2) throw new Error(`mmd: each sample needs at least 2 points, got ${nx} and ${ny}`);
  const max = opts.maxPoints ?? 2000;
  if (!(max >= 2)) throw new Error(`mmd: maxPoints must be at least 2, got ${max}`);
  const rng = new HostRng(opts.seed ?? 0);
  const a = subsample(x, dim, max, rng);
  const b = subsample(y, dim, max, rng);
  let bandwidths = opts.bandwidths;
  if (!bandwidths) {
    const pooled = new Float64Array(a.length + b.length);
    pooled.set(a);
    pooled.set(b, a.length);
    const med = medianPairwiseDistance(pooled, dim, { seed: opts.seed });
    // identical points everywhere: any bandwidth gives MMD 0, so pick one that is finite
    const base = med > 0 ? med : 1;
    bandwidths = MEDIAN_BANDWIDTH_FACTORS.map((f) => f * base);
  }
  if (bandwidths.length === 0 || bandwidths.some((s) => !(s > 0) || !Number.isFinite(s))) {
    throw new Error(`mmd: bandwidths must be positive and finite, got [${bandwidths}]`);
  }
  const coefs = bandwidths.map((s) => -1 / (2 * s * s));
  const kernel = (d2: number) => {
    let k = 0;
    for (const c of coefs) k += Math.exp(c * d2);
    return k;
  };
  const within = (p: Float64Array) => {
    const n = p.length / dim;
    let s = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) s += kernel(dist2(p, i, p, j, dim));
    return (2 * s) / (n * (n - 1));
  };
  const ma = a.length / dim;
  const mb = b.length / dim;
  let cross = 0;
  for (let i = 0; i < ma; i++) for (let j = 0; j < mb; j++) cross += kernel(dist2(a, i, b, j, dim));
  return within(a) + within(b) - (2 * cross) / (ma * mb);
}

export interface ModeMass {
  /** Per center: the share of samples whose nearest center it is and that lie within `radius` of it. */
  fractions: number[];
  /** The share of samples farther than `radius` from their nearest center. */
  outside: number;
}

/**
 * How a sample's mass splits over known modes: each point goes to its nearest center and counts for it when
 * within `radius` (Euclidean) of it, otherwise as outside. fractions and outside sum to 1.
 */
export function modeMass(samples: Points, dim: number, centers: number[][], radius: number): ModeMass {
  const n = countRows(samples, dim, 'modeMass');
  if (centers.length === 0) throw new Error('modeMass: no centers');
  centers.forEach((c, k) => {
    if (c.length !== dim) throw new Error(`modeMass: center ${k} has ${c.length} coordinates, expected ${dim}`);
  });
  if (!(radius >= 0)) throw new Error(`modeMass: radius must be non-negative, got ${radius}`);
  const counts = new Array<number>(centers.length).fill(0);
  let outside = 0;
  const r2 = radius * radius;
  for (let i = 0; i < n; i++) {
    let best = -1;
    let bestD = Infinity;
    for (let k = 0; k < centers.length; k++) {
      const c = centers[k]!;
      let d = 0;
      for (let j = 0; j < dim; j++) d += (samples[i * dim + j]! - c[j]!) ** 2;
      if (d < bestD) {
        bestD = d;
        best = k;
      }
    }
    if (bestD <= r2) counts[best]!++;
    else outside++;
  }
  const denom = Math.max(n, 1);
  return { fractions: counts.map((c) => c / denom), outside: n === 0 ? 0 : outside / denom };
}

/** Sample mean [dim] and covariance [dim, dim] (row-major, divided by n - 1 as numpy.cov; 0 for one row). */
export function meanCov(x: Points, dim: number): { mean: Float64Array; cov: Float64Array } {
  const n = countRows(x, dim, 'meanCov');
  if (n < 1) throw new Error('meanCov: no rows');
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let k = 0; k < dim; k++) mean[k]! += x[i * dim + k]!;
  for (let k = 0; k < dim; k++) mean[k]! /= n;
  const cov = new Float64Array(dim * dim);
  if (n < 2) return { mean, cov };
  const d = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < dim; k++) d[k] = x[i * dim + k]! - mean[k]!;
    for (let r = 0; r < dim; r++) for (let c = r; c < dim; c++) cov[r * dim + c]! += d[r]! * d[c]!;
  }
  for (let r = 0; r < dim; r++) {
    for (let c = r; c < dim; c++) {
      const v = cov[r * dim + c]! / (n - 1);
      cov[r * dim + c] = v;
      cov[c * dim + r] = v;
    }
  }
  return { mean, cov };
}
