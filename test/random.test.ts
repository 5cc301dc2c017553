import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, poison, rng, freshSeed, allClose } from './helpers.ts';
import { Generator } from '../engine/random.ts';
import { kernel } from '../engine/kernel.ts';
import { runtime } from '../engine/runtime.ts';
import { empty, tensor, tidy } from '../engine/tensor.ts';
import { fill_ } from '../engine/basic.ts';
import { ParamGroup, parameter } from '../engine/params.ts';
import { PHILOX_WGSL } from '../kernels/rng.ts';
import { flatEntry, flatGrid } from '../kernels/common.ts';

// ---- float64 / BigInt host reference of Philox 4x32-10 and of the stream layout ----

const M0 = 0xd2511f53n;
const M1 = 0xcd9e8d57n;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const MASK = 0xffffffffn;

function philoxRef(counter: readonly number[], key: readonly number[]): number[] {
  let c = counter.map((x) => BigInt(x >>> 0));
  let k0 = key[0]! >>> 0;
  let k1 = key[1]! >>> 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const p0 = M0 * c[0]!;
    const p1 = M1 * c[2]!;
    c = [(p1 >> 32n) ^ c[1]! ^ BigInt(k0), p1 & MASK, (p0 >> 32n) ^ c[3]! ^ BigInt(k1), p0 & MASK];
  }
  return c.map((x) => Number(x));
}

const TWO32 = 4294967296;

/** The words a Generator(seed) at `counter` produces for n elements. */
function streamRef(seed: number, counter: number, n: number): Uint32Array {
  const out = new Uint32Array(n);
  const key = [seed % TWO32, Math.floor(seed / TWO32)];
  for (let b = 0; b * 4 < n; b++) {
    const c = counter + b;
    const words = philoxRef([c % TWO32, Math.floor(c / TWO32), 0, 0], key);
    for (let j = 0; j < 4 && b * 4 + j < n; j++) out[b * 4 + j] = words[j]!;
  }
  return out;
}

function unitRef(x: number): number {
  return (x >>> 8) / 16777216;
}

/** Normals from whole blocks of words (a pair's partner word is used even when its element is not). */
function normalRef(words: Uint32Array, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(((words[i]! >>> 8) + 0.5) / 16777216));
    const theta = 2 * Math.PI * (unitRef(words[i + 1]!) - 0.5);
    if (i < n) out[i] = r * Math.cos(theta);
    if (i + 1 < n) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

// ---- statistics ----

/** Complementary error function (Chebyshev fit, fractional error below 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly =
    -1.26551223 +
    t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const r = t * Math.exp(-z * z + poly);
  return x >= 0 ? r : 2 - r;
}

function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/** Kolmogorov-Smirnov statistic of a sample against a continuous CDF. */
function ksStatistic(sample: ArrayLike<number>, cdf: (x: number) => number): number {
  const xs = Float64Array.from(sample).sort();
  const n = xs.length;
  let d = 0;
  for (let i = 0; i < n; i++) {
    const f = cdf(xs[i]!);
    d = Math.max(d, (i + 1) / n - f, f - i / n);
  }
  return d;
}

/** KS critical value at significance alpha (asymptotic c(alpha) with Stephens' finite-n correction). */
function ksCritical(n: number, alpha: number): number {
  const c = Math.sqrt(-0.5 * Math.log(alpha / 2));
  return c / (Math.sqrt(n) + 0.12 + 0.11 / Math.sqrt(n));
}

/** Upper chi-square quantile for df degrees of freedom (Wilson-Hilferty), z the normal quantile. */
function chiSquareCritical(df: number, z: number): number {
  const a = 2 / (9 * df);
  return df * Math.pow(1 - a + z * Math.sqrt(a), 3);
}

const Z_999 = 3.090232306167813; // upper 0.001 quantile of N(0, 1)

function moments(xs: ArrayLike<number>): { mean: number; variance: number; skew: number; exKurt: number } {
  const n = xs.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += xs[i]!;
  mean /= n;
  let m2 = 0;
  let m3 = 0;
  let m4 = 0;
  for (let i = 0; i < n; i++) {
    const d = xs[i]! - mean;
    const d2 = d * d;
    m2 += d2;
    m3 += d2 * d;
    m4 += d2 * d2;
  }
  m2 /= n;
  m3 /= n;
  m4 /= n;
  return { mean, variance: m2, skew: m3 / Math.pow(m2, 1.5), exKurt: m4 / (m2 * m2) - 3 };
}

function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]!;
    mb += b[i]!;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i]! - ma;
    const db = b[i]! - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return sab / Math.sqrt(saa * sbb);
}

function randomSeed(r: () => number): number {
  // exercise both key words
  return Math.floor(r() * 2 ** 21) * TWO32 + Math.floor(r() * TWO32);
}

const SIZES = [1, 3, 17, 255, 257, 1023, 4099];

// Random123's tests/kat_vectors, the three philox4x32 10 lines: counter (4 words), key (2 words), output.
const KAT: { counter: number[]; key: number[]; out: number[] }[] = [
  { counter: [0, 0, 0, 0], key: [0, 0], out: [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8] },
  {
    counter: [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    key: [0xffffffff, 0xffffffff],
    out: [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
  },
  {
    counter: [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    key: [0xa4093822, 0x299f31d0],
    out: [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
  },
];

function philoxProbeSource(): string {
  return /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inputs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<u32>>;
${PHILOX_WGSL}
${flatEntry()}
  if (i >= p.n) { return; }
  let key = inputs[2u * i + 1u];
  out[i] = philox4x32_10(inputs[2u * i], vec2<u32>(key.x, key.y));
}`;
}

function boxMullerProbeSource(): string {
  return /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> words: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<vec2<f32>>;
${PHILOX_WGSL}
${flatEntry()}
  if (i >= p.n) { return; }
  out[i] = philox_box_muller(words[2u * i], words[2u * i + 1u]);
}`;
}

const t = suite('random');
t.before(gpu);

t('host reference reproduces the Random123 known-answer vectors', () => {
  for (const v of KAT) assert.equal(philoxRef(v.counter, v.key), v.out, `counter ${v.counter.map((x) => x.toString(16))}`);
});

t('WGSL Philox 4x32-10 reproduces the known-answer vectors', async () => {
  const data: number[] = [];
  for (const v of KAT) data.push(...v.counter, ...v.key, 0, 0);
  const inputs = tensor(data, [data.length], 'u32');
  const out = poison(empty([KAT.length * 4], 'u32'));
  runtime().dispatch(kernel('test_philox_probe', philoxProbeSource), { inputs, out }, { n: KAT.length }, flatGrid(KAT.length));
  const got = Array.from(await out.read());
  assert.equal(got, KAT.flatMap((v) => v.out));
  inputs.dispose();
  out.dispose();
  // the all-zeros vector is also the first block of Generator(0)
  const g = new Generator(0);
  const first = g.bits([4]);
  assert.equal(Array.from(await first.read()), KAT[0]!.out);
  first.dispose();
});

t('bits, uniform and randint match the host reference bit for bit', async () => {
  const r = rng(freshSeed());
  for (const n of SIZES) {
    const seed = randomSeed(r);
    // start just below 2^32 blocks so the draw carries into the counter's high word
    const counter = TWO32 - 1 - Math.floor(r() * Math.min(n, 8));
    const words = streamRef(seed, counter, n);

    const g = new Generator(seed);
    g.counter = counter;
    const bits = g.bits([n]);
    assert.equal(g.counter, counter + Math.ceil(n / 4), `counter advance n=${n}`);
    assert.equal(await bits.read(), words, `bits n=${n} seed=${seed}`);

    g.counter = counter;
    const u = g.uniform([n]);
    const uRef = Float32Array.from(words, unitRef);
    assert.equal(await u.read(), uRef, `uniform n=${n} seed=${seed}`);

    const high = [1, 7, 1000, 2 ** 31 + 3, TWO32 - 1][n % 5]!;
    g.counter = counter;
    const ints = g.randint([n], high);
    const intRef = Uint32Array.from(words, (x) => Number((BigInt(x) * BigInt(high)) >> 32n));
    assert.equal(await ints.read(), intRef, `randint n=${n} high=${high} seed=${seed}`);

    g.counter = counter;
    const lo = -3 + r();
    const hi = lo + 0.5 + 4 * r();
    const scaled = g.uniform([n], lo, hi);
    allClose(await scaled.read(), Array.from(uRef, (x) => lo + (hi - lo) * x), 1e-6, 1e-6, `uniform [${lo}, ${hi}) n=${n}`);
    bits.dispose();
    u.dispose();
    ints.dispose();
    scaled.dispose();
  }
});

t('normal matches Box-Muller on the host reference words', async () => {
  const r = rng(freshSeed());
  for (const n of SIZES) {
    const seed = randomSeed(r);
    const counter = Math.floor(r() * 2 ** 40);
    const g = new Generator(seed);
    g.counter = counter;
    const mean = r() - 0.5;
    const std = 0.5 + r();
    const z = g.normal([n], mean, std);
    assert.is(g.counter, counter + Math.ceil(n / 4));
    const ref = Array.from(normalRef(streamRef(seed, counter, Math.ceil(n / 4) * 4), n), (x) => mean + std * x);
    allClose(await z.read(), ref, 1e-5, 2e-6, `normal n=${n} seed=${seed}`);
    z.dispose();
  }
});

t('Box-Muller radius keeps its relative accuracy at the extremes of u', async () => {
  const r = rng(freshSeed());
  // radius words: u at its smallest and largest, both sides of the log/series switch at u = 0.75, random
  const xs = [0, 0xff, 0x100, 0xbfffffff, 0xc0000000, 0xc00000ff, 0xfffffeff, 0xffffff00, 0xffffffff];
  while (xs.length < 64) xs.push(Math.floor(r() * TWO32));
  const words = new Uint32Array(xs.length * 2);
  xs.forEach((x, i) => {
    words[2 * i] = x;
    words[2 * i + 1] = Math.floor(r() * TWO32);
  });
  const input = tensor(words, [words.length], 'u32');
  const out = poison(empty([words.length]));
  runtime().dispatch(kernel('test_box_muller_probe', boxMullerProbeSource), { words: input, out }, { n: xs.length }, flatGrid(xs.length));
  const z = await out.read();
  const ref = normalRef(words, words.length);
  const radius = (a: ArrayLike<number>, i: number) => Math.hypot(a[2 * i]!, a[2 * i + 1]!);
  allClose(Array.from(xs, (_, i) => radius(z, i)), Array.from(xs, (_, i) => radius(ref, i)), 2e-6, 0, 'Box-Muller radius');
  allClose(z, ref, 1e-5, 2e-6, 'Box-Muller values');
  input.dispose();
  out.dispose();
});

t('uniform: range, moments, lag correlation and KS against U(0, 1)', async () => {
  // fixed seeds: the statistical checks are then deterministic and a correct generator cannot flake at alpha
  for (const seed of [20240611, 2 ** 45 + 977]) {
    const n = 262147;
    const g = new Generator(seed);
    const u = g.uniform([n]);
    const xs = await u.read();
    u.dispose();
    let min = Infinity;
    let max = -Infinity;
    for (const x of xs) {
      min = Math.min(min, x);
      max = Math.max(max, x);
      assert.ok(Number.isInteger(x * 16777216), `uniform value ${x} is not a multiple of 2^-24`);
    }
    assert.ok(min >= 0 && max < 1, `uniform range [${min}, ${max}]`);
    const m = moments(xs);
    assert.ok(Math.abs(m.mean - 0.5) < 5 * Math.sqrt(1 / 12 / n), `uniform mean ${m.mean}`);
    // Var of the sample variance of U(0,1) is (1/80 - 1/144) / n
    assert.ok(Math.abs(m.variance - 1 / 12) < 5 * Math.sqrt((1 / 80 - 1 / 144) / n), `uniform variance ${m.variance}`);
    const lag = correlation(xs.subarray(0, n - 1), xs.subarray(1));
    assert.ok(Math.abs(lag) < 5 / Math.sqrt(n), `uniform lag-1 correlation ${lag}`);
    const d = ksStatistic(xs, (x) => Math.min(1, Math.max(0, x)));
    const crit = ksCritical(n, 0.001);
    assert.ok(d < crit, `uniform KS D = ${d}, critical ${crit} (n ${n}, seed ${seed})`);
  }
});

t('normal: moments, pair correlation and KS against N(0, 1)', async () => {
  for (const seed of [7, 2 ** 52 + 12345]) {
    const n = 262147;
    const g = new Generator(seed);
    g.counter = 1000;
    const z = g.normal([n]);
    const xs = await z.read();
    z.dispose();
    assert.ok(xs.every((x) => Number.isFinite(x)), 'normal values are finite');
    const m = moments(xs);
    assert.ok(Math.abs(m.mean) < 5 / Math.sqrt(n), `normal mean ${m.mean}`);
    assert.ok(Math.abs(m.variance - 1) < 5 * Math.sqrt(2 / n), `normal variance ${m.variance}`);
    assert.ok(Math.abs(m.skew) < 5 * Math.sqrt(6 / n), `normal skew ${m.skew}`);
    assert.ok(Math.abs(m.exKurt) < 5 * Math.sqrt(24 / n), `normal excess kurtosis ${m.exKurt}`);
    // the cos and sin halves of each Box-Muller pair must be uncorrelated
    const half = Math.floor(n / 2);
    const cosPart = new Float64Array(half);
    const sinPart = new Float64Array(half);
    for (let i = 0; i < half; i++) {
      cosPart[i] = xs[2 * i]!;
      sinPart[i] = xs[2 * i + 1]!;
    }
    const c = correlation(cosPart, sinPart);
    assert.ok(Math.abs(c) < 5 / Math.sqrt(half), `Box-Muller pair correlation ${c}`);
    const d = ksStatistic(xs, normalCdf);
    const crit = ksCritical(n, 0.001);
    assert.ok(d < crit, `normal KS D = ${d}, critical ${crit} (n ${n}, seed ${seed})`);
  }
});

t('randint: range and chi-square uniformity', async () => {
  for (const [seed, high] of [
    [99, 10],
    [2 ** 33 + 5, 1000],
    [123456789, 3],
  ] as const) {
    const n = 200003;
    const g = new Generator(seed);
    const ints = g.randint([n], high);
    const xs = await ints.read();
    ints.dispose();
    const counts = new Float64Array(high);
    for (const x of xs) {
      assert.ok(x < high, `randint value ${x} >= ${high}`);
      counts[x]!++;
    }
    const expected = n / high;
    let chi2 = 0;
    for (const c of counts) chi2 += ((c - expected) * (c - expected)) / expected;
    const crit = chiSquareCritical(high - 1, Z_999);
    assert.ok(chi2 < crit, `randint chi-square ${chi2}, critical ${crit} (high ${high}, seed ${seed})`);
  }
});

t('determinism: same seed and counter give the same bits; anything else differs', async () => {
  const seed = randomSeed(rng(freshSeed()));
  const n = 257;
  const read = async (s: number, counter: number, draw: (g: Generator) => ReturnType<Generator['bits']>) => {
    const g = new Generator(s);
    g.counter = counter;
    const x = draw(g);
    const out = await x.read();
    x.dispose();
    return out;
  };
  const a = await read(seed, 5, (g) => g.normal([n]));
  const b = await read(seed, 5, (g) => g.normal([n]));
  assert.equal(a, b, 'same seed and counter');
  const c = await read(seed, 6, (g) => g.normal([n]));
  assert.ok(a.some((x, i) => x !== c[i]), 'different counter');
  const d = await read(seed + 1, 5, (g) => g.normal([n]));
  assert.ok(a.some((x, i) => x !== d[i]), 'different seed');

  // successive draws continue the stream: two draws of 8 equal one draw of 16
  const g = new Generator(seed);
  const first = g.bits([8]);
  const second = g.bits([8]);
  assert.is(g.counter, 4);
  const whole = await read(seed, 0, (h) => h.bits([16]));
  assert.equal([...(await first.read()), ...(await second.read())], Array.from(whole));
  first.dispose();
  second.dispose();

  // reserve hands an inline-drawing kernel the same position a fill would have used
  const h = new Generator(2 ** 40 + 3);
  h.counter = TWO32 + 7;
  assert.equal(h.reserve(9), { key_lo: 3, key_hi: 256, base_lo: 7, base_hi: 1 });
  assert.is(h.counter, TWO32 + 10);
  assert.equal(h.reserve(0), { key_lo: 3, key_hi: 256, base_lo: 10, base_hi: 1 });
  assert.is(h.counter, TWO32 + 10);
});

t('fills write only their view: one parameter of a flat group', async () => {
  const g = new Generator(freshSeed() % 2 ** 30);
  const a = parameter(new Float32Array(5).fill(1), [5], 'a');
  const b = parameter(new Float32Array(7).fill(2), [7], 'b');
  const group = new ParamGroup([
    { name: 'a', tensor: a },
    { name: 'b', tensor: b },
  ]);
  const before = g.counter;
  g.fillNormal_(b, 3, 0.25);
  g.fillUniform_(a, -2, -1);
  assert.is(g.counter, before + 2 + 2);
  const flat = await group.values.read();
  const offB = group.offsets[1]!;
  for (let i = 0; i < flat.length; i++) {
    const x = flat[i]!;
    if (i < 5) assert.ok(x >= -2 && x < -1, `a[${i}] = ${x}`);
    else if (i >= offB && i < offB + 7) assert.ok(Math.abs(x - 3) < 0.25 * 6, `b[${i - offB}] = ${x}`);
    else assert.is(x, 0, `padding at ${i}`);
  }
  assert.throws(() => g.fillNormal_(empty([3], 'u32')), /u32/);
  assert.throws(() => g.randint([3], 0), /high/);
  assert.throws(() => new Generator(-1), /seed/);
  tidy(() => fill_(group.values, 0));
});

t.run();
