// Weight initialisation on the host, from a seeded generator, so a network is reproducible from one seed and
// identical across devices. Values are computed in float64 and rounded to f32 once.
import { globalRng, type HostRng } from './host-rng.ts';

export function uniformArray(n: number, lo: number, hi: number, rng: HostRng = globalRng()): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.uniform(lo, hi);
  return out;
}

export function normalArray(n: number, mean: number, std: number, rng: HostRng = globalRng()): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = mean + std * rng.normal();
  return out;
}

/**
 * PyTorch's default nn.Linear initialisation: kaiming_uniform with a = sqrt(5) for the weight, which reduces
 * to U(-1/sqrt(fanIn), 1/sqrt(fanIn)), and the same bound for the bias. Weight layout [outF, inF].
 */
export function torchLinearInit(inF: number, outF: number, rng: HostRng = globalRng()): { weight: Float32Array; bias: Float32Array } {
  const bound = inF > 0 ? 1 / Math.sqrt(inF) : 0;
  const weight = uniformArray(outF * inF, -bound, bound, rng);
  const bias = uniformArray(outF, -bound, bound, rng);
  return { weight, bias };
}

/**
 * A (semi-)orthogonal rows x cols matrix times gain, as torch.nn.init.orthogonal_: QR of a standard Gaussian
 * matrix (transposed first when it is wide), with Q's columns multiplied by the signs of R's diagonal so the
 * result is uniformly distributed over orthogonal matrices. Rows are orthonormal when rows <= cols,
 * columns when rows >= cols.
 */
export function orthogonal(rows: number, cols: number, gain = 1, rng: HostRng = globalRng()): Float32Array {
  const out = new Float32Array(rows * cols);
  if (rows === 0 || cols === 0) return out;
  const tall = rows >= cols;
  const m = tall ? rows : cols;
  const n = tall ? cols : rows;
  // a[i][j] of the tall m x n matrix, row-major; drawn in the layout of the final rows x cols matrix
  const drawn = new Float64Array(rows * cols);
  for (let i = 0; i < drawn.length; i++) drawn[i] = rng.normal();
  const a = new Float64Array(m * n);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      if (tall) a[i * n + j] = drawn[i * cols + j]!;
      else a[j * n + i] = drawn[i * cols + j]!;
    }
  }
  const q = householderQ(a, m, n);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) out[i * cols + j] = gain * (tall ? q[i * n + j]! : q[j * n + i]!);
  }
  return out;
}

/**
 * The m x n factor Q of a reduced QR (m >= n) by Householder reflections, with the sign correction applied:
 * column j is negated where R[j][j] < 0. `a` is overwritten.
 */
function householderQ(a: Float64Array, m: number, n: number): Float64Array {
  const vs: Float64Array[] = [];
  const rDiagSign: number[] = [];
  for (let k = 0; k < n; k++) {
    let norm = 0;
    for (let i = k; i < m; i++) norm += a[i * n + k]! ** 2;
    norm = Math.sqrt(norm);
    const x0 = a[k * n + k]!;
    // reflect x onto -sign(x0)*|x| e_k to avoid cancellation; R[k][k] is then -sign(x0)*|x|
    const alpha = x0 >= 0 ? -norm : norm;
    const v = new Float64Array(m - k);
    for (let i = k; i < m; i++) v[i - k] = a[i * n + k]!;
    v[0] = v[0]! - alpha;
    let vnorm2 = 0;
    for (let i = 0; i < v.length; i++) vnorm2 += v[i]! ** 2;
    if (vnorm2 > 0) {
      for (let j = k; j < n; j++) {
        let dot = 0;
        for (let i = k; i < m; i++) dot += v[i - k]! * a[i * n + j]!;
        const f = (2 * dot) / vnorm2;
        for (let i = k; i < m; i++) a[i * n + j] = a[i * n + j]! - f * v[i - k]!;
      }
    }
    vs.push(v);
    rDiagSign.push(a[k * n + k]! < 0 ? -1 : 1);
  }
  // Q = H_0 H_1 ... H_{n-1} applied to the first n columns of the identity
  const q = new Float64Array(m * n);
  for (let j = 0; j < n; j++) q[j * n + j] = 1;
  for (let k = n - 1; k >= 0; k--) {
    const v = vs[k]!;
    let vnorm2 = 0;
    for (let i = 0; i < v.length; i++) vnorm2 += v[i]! ** 2;
    if (vnorm2 === 0) continue;
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let i = k; i < m; i++) dot += v[i - k]! * q[i * n + j]!;
      const f = (2 * dot) / vnorm2;
      for (let i = k; i < m; i++) q[i * n + j] = q[i * n + j]! - f * v[i - k]!;
    }
  }
  for (let j = 0; j < n; j++) {
    if (rDiagSign[j]! < 0) for (let i = 0; i < m; i++) q[i * n + j] = -q[i * n + j]!;
  }
  return q;
}
