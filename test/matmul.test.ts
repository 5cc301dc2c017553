import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, poison, randn, rng, freshSeed, gradCheck } from './helpers.ts';
import { tensor, empty, tidy } from '../engine/tensor.ts';
import { matmul, matmulInto, setMatmulFamily, matmulFamily, setMatmulSubgroups, matmulSubgroupSize } from '../engine/ops/matmul.ts';

const t = suite('matmul');
t.before(gpu);
t.after(() => {
  setMatmulFamily('auto');
  setMatmulSubgroups('auto');
});

/** The kernel variants exercised here: both families, and the register family with and without subgroups. */
const VARIANTS = [
  { name: 'register', family: 'register', subgroups: 'auto' },
  { name: 'register-solo', family: 'register', subgroups: 'off' },
  { name: 'tiled', family: 'tiled', subgroups: 'auto' },
] as const;

function useVariant(v: (typeof VARIANTS)[number]): void {
  setMatmulFamily(v.family);
  setMatmulSubgroups(v.subgroups);
}

/** float64 op(A) op(B) from the stored layouts. */
function refMatmul(a: ArrayLike<number>, b: ArrayLike<number>, M: number, K: number, N: number, transA: boolean, transB: boolean): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      const av = transA ? a[k * M + i]! : a[i * K + k]!;
      if (av === 0) continue;
      const row = i * N;
      for (let j = 0; j < N; j++) c[row + j]! += av * (transB ? b[j * K + k]! : b[k * N + j]!);
    }
  }
  return c;
}

/** Per-element bound scaled by sum_k |a_ik b_kj| (the f32 rounding of a K-term sum), reporting the worst. */
function checkProduct(got: ArrayLike<number>, a: ArrayLike<number>, b: ArrayLike<number>, M: number, K: number, N: number, tA: boolean, tB: boolean, what: string): void {
  const want = refMatmul(a, b, M, K, N, tA, tB);
  const absA = Array.from(a, Math.abs);
  const absB = Array.from(b, Math.abs);
  const scale = refMatmul(absA, absB, M, K, N, tA, tB);
  assert.is(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    const tol = 2e-6 * Math.sqrt(K) * scale[i]! + 1e-30;
    if (!(err <= tol)) assert.unreachable(`${what}: element ${i} (row ${Math.floor(i / N)}, col ${i % N}) is ${got[i]}, reference ${want[i]} (tol ${tol})`);
  }
}

// Every dimension odd (scalar reads everywhere), every dimension a multiple of 4 (vec4 reads), and, for the
// default variant only, mixed layouts. Kernels are specialised per layout, so this bounds how many get built.
const ODD: [number, number, number][] = [
  [1, 1, 1],
  [1, 17, 3],
  [3, 5, 1],
  [17, 3, 255],
  [255, 17, 3],
  [33, 257, 17],
  [1023, 7, 5],
];
const ALIGNED: [number, number, number][] = [
  [4, 4, 4],
  [24, 8, 32],
  [20, 12, 28],
  [64, 64, 64],
  [36, 36, 260],
];
const MIXED: [number, number, number][] = [
  [257, 31, 36],
  [36, 17, 255],
  [255, 20, 17],
  [3, 12, 1],
];

for (const v of VARIANTS) {
  t(`${v.name}: every transpose pair on awkward shapes against float64, poisoned outputs`, async () => {
    useVariant(v);
    const r = rng(freshSeed());
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const [M, K, N] of [...ODD, ...ALIGNED, ...(v.name === 'register' ? MIXED : [])]) {
          const a = randn(M * K, r);
          const b = randn(K * N, r);
          const ta = tensor(a, transA ? [K, M] : [M, K]);
          const tb = tensor(b, transB ? [N, K] : [K, N]);
          const out = poison(empty([M, N]));
          matmulInto(out, ta, tb, { transA, transB });
          const got = await out.read();
          checkProduct(got, a, b, M, K, N, transA, transB, `${v.name} ${transA ? 'A^T' : 'A'} ${transB ? 'B^T' : 'B'} ${M}x${K}x${N}`);
          ta.dispose();
          tb.dispose();
          out.dispose();
        }
      }
    }
  });

  t(`${v.name}: large K and batch 1`, async () => {
    useVariant(v);
    const r = rng(freshSeed());
    for (const [M, K, N, transA, transB] of [
      [5, 4097, 7, false, false],
      [8, 4096, 36, true, false],
      [1, 4097, 33, false, true],
      [1, 255, 1, true, true],
      [4, 4096, 4, false, true],
    ] as const) {
      const a = randn(M * K, r);
      const b = randn(K * N, r);
      const ta = tensor(a, transA ? [K, M] : [M, K]);
      const tb = tensor(b, transB ? [N, K] : [K, N]);
      const out = poison(empty([M, N]));
      matmulInto(out, ta, tb, { transA, transB });
      checkProduct(await out.read(), a, b, M, K, N, transA, transB, `${v.name} ${M}x${K}x${N}`);
      ta.dispose();
      tb.dispose();
      out.dispose();
    }
  });

  t(`${v.name}: matmul backward by finite differences, every transpose pair`, async () => {
    useVariant(v);
    const r = rng(freshSeed());
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const [M, K, N] = [3, 5, 6];
        await gradCheck(
          (x, y) => matmul(x, y, { transA, transB }),
          (x, y) => refMatmul(x, y, M, K, N, transA, transB),
          [
            { data: randn(M * K, r), shape: transA ? [K, M] : [M, K] },
            { data: randn(K * N, r), shape: transB ? [N, K] : [K, N] },
          ],
          { what: `${v.name} matmul ${transA ? 'A^T' : 'A'} ${transB ? 'B^T' : 'B'}`, seed: freshSeed() },
        );
      }
    }
  });
}

t('family selection follows the adapter unless forced', () => {
  setMatmulFamily('auto');
  setMatmulSubgroups('auto');
  const fam = matmulFamily();
  assert.ok(fam === 'register' || fam === 'tiled');
  setMatmulFamily('tiled');
  assert.is(matmulFamily(), 'tiled');
  setMatmulFamily('register');
  assert.is(matmulFamily(), 'register');
  setMatmulSubgroups('off');
  assert.is(matmulSubgroupSize(), null);
  setMatmulFamily('auto');
  setMatmulSubgroups('auto');
  assert.throws(() => setMatmulFamily('fast' as 'tiled'));
});

t('shape errors name the op and the shapes', () => {
  tidy(() => {
    const a = empty([3, 4]);
    const b = empty([5, 6]);
    assert.throws(() => matmul(a, b), /matmul: inner dimensions differ: A \[3,4\] has K=4, B \[5,6\] has K=5/);
    assert.throws(() => matmul(empty([3]), b), /matmul: operands must be 2-D/);
  });
});

t.run();
