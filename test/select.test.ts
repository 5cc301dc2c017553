import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, freshSeed, rng, randn, gradCheck, poisonNext } from './helpers.ts';
import { tensor, tidy } from '../engine/tensor.ts';
import { Generator } from '../engine/random.ts';
import { repeatRows, selectByCritic, selectByCriticWithIndices } from '../algorithms/diffusion/select.ts';

const t = suite('select');
t.before(gpu);

/** Candidate rows [S*N, D]: column 0 is the state, column 1 the candidate's index, the rest noise. */
function candidateRows(S: number, N: number, D: number, r: () => number): Float32Array {
  const c = randn(S * N * D, r);
  for (let s = 0; s < S; s++) {
    for (let i = 0; i < N; i++) {
      c[(s * N + i) * D] = s;
      if (D > 1) c[(s * N + i) * D + 1] = i;
    }
  }
  return c;
}

/** Float64 softmax CDF of temperature * q over one group. */
function softmaxCdf(q: ArrayLike<number>, temperature: number): number[] {
  const logits = Array.from(q, (v) => temperature * v);
  const top = Math.max(...logits);
  const w = logits.map((l) => Math.exp(l - top));
  const total = w.reduce((a, b) => a + b, 0);
  let acc = 0;
  return w.map((v) => (acc += v / total));
}

t('repeatRows copies each row n times, state-major, and sums gradients over copies', async () => {
  const r = rng(freshSeed());
  for (const [S, d, n] of [[1, 1, 1], [3, 5, 4], [17, 3, 50], [2, 7, 1024]] as const) {
    const x = randn(S * d, r);
    const got = await tidy(() => repeatRows(tensor(x, [S, d]), n)).read();
    for (let i = 0; i < S * n; i++) {
      for (let j = 0; j < d; j++) assert.is(got[i * d + j], x[Math.floor(i / n) * d + j], `S=${S} n=${n} row ${i}`);
    }
  }
  await gradCheck(
    (x) => repeatRows(x, 6),
    (x) => {
      const out = new Float64Array(4 * 6 * 3);
      for (let i = 0; i < 24; i++) for (let j = 0; j < 3; j++) out[i * 3 + j] = x[Math.floor(i / 6) * 3 + j]!;
      return out;
    },
    [{ data: randn(12, r), shape: [4, 3] }],
    { what: 'repeatRows' },
  );
});

t('argmax picks the first maximum of each group', async () => {
  const r = rng(freshSeed());
  const gen = new Generator(freshSeed());
  for (const [S, N, D] of [[1, 1, 2], [1, 1024, 3], [37, 5, 2], [5, 1024, 6], [300, 3, 1]] as const) {
    const q = randn(S * N, r);
    // a tie with the first maximum, which must still be chosen
    if (N > 2) q[N - 1] = Math.max(...q.slice(0, N));
    const cand = candidateRows(S, N, D, r);
    poisonNext([S, D]);
    const { actions, indices } = selectByCriticWithIndices(tensor(cand, [S * N, D]), tensor(q, [S * N, 1]), N, gen, { mode: 'argmax' });
    const a = await actions.read();
    const idx = await indices.read();
    for (let s = 0; s < S; s++) {
      const group = q.slice(s * N, s * N + N);
      const best = group.indexOf(Math.max(...group));
      assert.is(idx[s], best, `S=${S} N=${N} state ${s}`);
      for (let j = 0; j < D; j++) assert.is(a[s * D + j], cand[(s * N + best) * D + j], `S=${S} N=${N} state ${s} column ${j}`);
    }
    actions.dispose();
    indices.dispose();
  }
});

t('sampling follows the inverse CDF of each state\'s uniform number', async () => {
  const r = rng(freshSeed());
  for (const [S, N, D, temperature] of [[1, 1, 2, 1], [1, 1024, 2, 1], [37, 5, 3, 2.5], [6, 1024, 2, 10], [257, 50, 2, 1], [3, 7, 1, 0]] as const) {
    const seed = freshSeed();
    const gen = new Generator(seed);
    gen.counter = 11;
    const q = randn(S * N, r, 2);
    const cand = candidateRows(S, N, D, r);
    const { actions, indices } = selectByCriticWithIndices(tensor(cand, [S * N, D]), tensor(q, [S * N]), N, gen, { temperature });
    assert.is(gen.counter, 11 + Math.ceil(S / 4), 'one uniform per state');
    const replay = new Generator(seed);
    replay.counter = 11;
    const u = await replay.uniform([S]).read();
    const a = await actions.read();
    const idx = await indices.read();
    for (let s = 0; s < S; s++) {
      const cdf = softmaxCdf(q.slice(s * N, s * N + N), temperature);
      const c = idx[s]!;
      const lo = c === 0 ? 0 : cdf[c - 1]!;
      assert.ok(c < N && u[s]! >= lo - 1e-5 && u[s]! <= cdf[c]! + 1e-5, `S=${S} N=${N} state ${s}: index ${c}, u ${u[s]}, interval [${lo}, ${cdf[c]}]`);
      assert.is(a[s * D], s, 'row from its own state');
      if (D > 1) assert.is(a[s * D + 1], c, 'row of the chosen index');
    }
    actions.dispose();
    indices.dispose();
  }
});

t('empirical frequencies match the softmax (chi-square)', async () => {
  const S = 6000;
  const groups: [number[], number][] = [
    [[0.3, -0.2, 1.1, 0.0, 0.5], 1],
    [[0.3, -0.2, 1.1, 0.0, 0.5], 3],
    [[5, 4, 3, 2], 0.5],
  ];
  for (const [qRow, temperature] of groups) {
    const N = qRow.length;
    const q = new Float32Array(S * N);
    for (let s = 0; s < S; s++) q.set(qRow, s * N);
    const cand = candidateRows(S, N, 2, rng(freshSeed()));
    const gen = new Generator(freshSeed());
    const out = selectByCritic(tensor(cand, [S * N, 2]), tensor(q, [S * N]), N, gen, { temperature });
    const a = await out.read();
    const counts = new Array<number>(N).fill(0);
    for (let s = 0; s < S; s++) counts[a[s * 2 + 1]!]!++;
    const cdf = softmaxCdf(qRow, temperature);
    let chi2 = 0;
    cdf.forEach((c, i) => {
      const expected = S * (c - (i === 0 ? 0 : cdf[i - 1]!));
      chi2 += (counts[i]! - expected) ** 2 / expected;
    });
    // chi-square with N - 1 <= 4 degrees of freedom exceeds 36 with probability 2.9e-7 (30: 4.9e-6); a
    // temperature off by 1.5x or 2x gives 150 or more here
    assert.ok(chi2 < 36, `chi-square ${chi2.toFixed(2)} for counts ${counts} (temperature ${temperature})`);
    out.dispose();
  }
});

t('NaN scores are never chosen; temperature 0 is uniform', async () => {
  const S = 4000;
  const N = 4;
  const q = new Float32Array(S * N);
  for (let s = 0; s < S; s++) q.set([Number.NaN, 1, Number.NaN, 2], s * N);
  const cand = candidateRows(S, N, 2, rng(freshSeed()));
  const a = await selectByCritic(tensor(cand, [S * N, 2]), tensor(q, [S * N]), N, new Generator(freshSeed())).read();
  const counts = [0, 0, 0, 0];
  for (let s = 0; s < S; s++) counts[a[s * 2 + 1]!]!++;
  assert.is(counts[0]! + counts[2]!, 0, `NaN candidates chosen: ${counts}`);
  const argmax = await selectByCritic(tensor(cand, [S * N, 2]), tensor(q, [S * N]), N, new Generator(1), { mode: 'argmax' }).read();
  assert.is(argmax[1], 3);
  const flat = new Float32Array(S * N).map((_, i) => i % N);
  const u = await selectByCritic(tensor(cand, [S * N, 2]), tensor(flat, [S * N]), N, new Generator(freshSeed()), { temperature: 0 }).read();
  const uc = [0, 0, 0, 0];
  for (let s = 0; s < S; s++) uc[u[s * 2 + 1]!]!++;
  const chi2 = uc.reduce((acc, c) => acc + (c - S / N) ** 2 / (S / N), 0);
  // 3 degrees of freedom: P(chi2 > 36) = 7e-8
  assert.ok(chi2 < 36, `temperature 0 counts ${uc}`);
});

t('rejects bad shapes', () => {
  const gen = new Generator(1);
  assert.throws(() => selectByCritic(tensor(new Float32Array(12), [6, 2]), tensor(new Float32Array(6), [6]), 4, gen), /groups of N = 4/);
  assert.throws(() => selectByCritic(tensor(new Float32Array(12), [6, 2]), tensor(new Float32Array(5), [5]), 3, gen), /q must be/);
  assert.throws(() => selectByCritic(tensor(new Float32Array(12), [6, 2]), tensor(new Float32Array(6), [6]), 3, gen, { temperature: Infinity }), /temperature/);
});

t.run();
