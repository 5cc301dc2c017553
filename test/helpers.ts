// Shared test tools: the engine started once per process, seeded random inputs, poisoned outputs, float64
// comparisons and finite-difference gradient checks.
import * as assert from 'uvu/assert';
import type { Activation } from '../kernels/common.ts';
import { init, isStarted, runtime } from '../engine/runtime.ts';
import { backward } from '../engine/autograd.ts';
import { fill_ } from '../engine/basic.ts';
import { empty, tensor, tidy, type DType, type Tensor } from '../engine/tensor.ts';

export async function gpu(): Promise<void> {
  if (!isStarted()) await init();
}

/** Every output buffer is filled with NaN before a kernel runs, so an element it fails to write shows up. */
export function poison(t: Tensor): Tensor {
  if (t.dtype === 'f32') fill_(t, Number.NaN);
  else fill_(t, 0xdeadbeef);
  return t;
}

/**
 * Fills the next pooled buffers of this size with junk (NaN for f32), so an op's freshly allocated output
 * starts poisoned and an element it fails to write shows up.
 */
export function poisonNext(shape: number | readonly number[], dtype: DType = 'f32', count = 3): void {
  const sh = typeof shape === 'number' ? [shape] : shape;
  const ts = Array.from({ length: count }, () => poison(empty(sh, dtype)));
  for (const x of ts) x.dispose();
  runtime().flush();
}

/** Deterministic generator (mulberry32) so a failing case can be rerun; seeds differ per call site. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let seedCounter = (Date.now() ^ (process.pid << 8)) >>> 0;
/** A fresh seed each call (printed on failure through the message of allClose's caller). */
export function freshSeed(): number {
  seedCounter = (seedCounter * 1664525 + 1013904223) >>> 0;
  return seedCounter;
}

export function randn(n: number, r: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

export function randu(n: number, r: () => number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/**
 * Asserts |a - b| <= atol + rtol * |b| elementwise, with b the float64 reference; reports the worst element.
 * NaN anywhere fails.
 */
export function allClose(a: ArrayLike<number>, b: ArrayLike<number>, rtol = 1e-5, atol = 1e-6, what = ''): void {
  assert.is(a.length, b.length, `${what}: length ${a.length} vs reference ${b.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    const excess = Math.abs(x - y) - (atol + rtol * Math.abs(y));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
      if (Number.isNaN(x) || Number.isNaN(y)) break;
    }
  }
  if (worst >= 0) {
    assert.unreachable(`${what}: element ${worst} is ${a[worst]}, reference ${b[worst]} (rtol ${rtol}, atol ${atol}, n ${a.length})`);
  }
}

/** Largest relative error max|a-b| / max|b|, for reporting. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / Math.max(den, 1e-30);
}

export interface GradInput {
  data: Float32Array;
  shape: number[];
}

/**
 * Checks an op's backward against central finite differences of its float64 reference forward.
 * gpuForward builds the op on GPU tensors; refForward computes the same function in float64 on the host.
 * The analytic gradient is the vector-Jacobian product with random output weights w; the numeric one
 * differentiates sum(ref(x) * w). Up to `probes` elements per input are checked (all when fewer).
 */
export async function gradCheck(
  gpuForward: (...xs: Tensor[]) => Tensor,
  refForward: (...xs: Float64Array[]) => ArrayLike<number>,
  inputs: GradInput[],
  opts: { seed?: number; probes?: number; eps?: number; rtol?: number; atol?: number; what?: string } = {},
): Promise<void> {
  const r = rng(opts.seed ?? freshSeed());
  const probes = opts.probes ?? 24;
  const eps = opts.eps ?? 1e-4;
  const what = opts.what ?? 'gradCheck';
  const xs64 = inputs.map((x) => Float64Array.from(x.data));
  const y0 = refForward(...xs64);
  const w = randn(y0.length, r);
  const analytic = await (async () => {
    const ts = inputs.map((x) => {
      const t = tensor(x.data, x.shape);
      t.requiresGrad = true;
      return t;
    });
    tidy(() => {
      const y = gpuForward(...ts);
      assert.is(y.size, y0.length, `${what}: GPU output size ${y.size}, reference ${y0.length}`);
      backward(y, tensor(w, y.shape));
    });
    const out: Float32Array[] = [];
    for (const t of ts) {
      assert.ok(t.grad, `${what}: no gradient reached an input`);
      out.push((await t.grad!.read()) as Float32Array);
      t.grad!.dispose();
      t.dispose();
    }
    return out;
  })();
  const objective = (xs: Float64Array[]) => {
    const y = refForward(...xs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i]! * w[i]!;
    return s;
  };
  for (let k = 0; k < inputs.length; k++) {
    const x = xs64[k]!;
    const idx = x.length <= probes ? [...Array(x.length).keys()] : Array.from({ length: probes }, () => Math.floor(r() * x.length));
    const num: number[] = [];
    const ana: number[] = [];
    for (const j of idx) {
      const orig = x[j]!;
      const h = eps * Math.max(1, Math.abs(orig));
      x[j] = orig + h;
      const fp = objective(xs64);
      x[j] = orig - h;
      const fm = objective(xs64);
      x[j] = orig;
      num.push((fp - fm) / (2 * h));
      ana.push(analytic[k]![j]!);
    }
    allClose(ana, num, opts.rtol ?? 1e-3, opts.atol ?? 1e-4, `${what}: d/d input ${k}`);
  }
}

export async function settle(): Promise<void> {
  await runtime().sync();
}

// ---- float64 references for the activations ----

export const sigmoid64 = (z: number): number => 1 / (1 + Math.exp(-z));
export const softplus64 = (z: number): number => Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z)));

export function act64(act: Activation, z: number): number {
  switch (act) {
    case 'identity':
      return z;
    case 'relu':
      return Math.max(z, 0);
    case 'tanh':
      return Math.tanh(z);
    case 'sigmoid':
      return sigmoid64(z);
    case 'silu':
      return z * sigmoid64(z);
    case 'mish':
      return z * Math.tanh(softplus64(z));
  }
}
