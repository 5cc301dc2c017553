import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freshSeed } from './helpers.ts';
import { TOY_NAMES, RING_RADII, checkerboardEnergy, gridCenters, gridHardReward, ringEnergy, toyDataset, type ToyData, type ToyName } from '../datasets/toy.ts';

const t = suite('toy datasets');

interface Stats {
  count: number;
  mean: [number, number];
  std: [number, number];
}

/** Assigns each action to its nearest center and returns per-center counts, means and per-axis stds. */
function perMode(d: ToyData, centers: number[][]): Stats[] {
  const acc = centers.map(() => ({ n: 0, s: [0, 0], s2: [0, 0] }));
  const n = d.rewards.length;
  for (let i = 0; i < n; i++) {
    const x = d.actions[i * 2]!;
    const y = d.actions[i * 2 + 1]!;
    let best = 0;
    let bestD = Infinity;
    centers.forEach((c, k) => {
      const dd = (x - c[0]!) ** 2 + (y - c[1]!) ** 2;
      if (dd < bestD) {
        bestD = dd;
        best = k;
      }
    });
    const a = acc[best]!;
    a.n++;
    a.s[0]! += x;
    a.s[1]! += y;
    a.s2[0]! += x * x;
    a.s2[1]! += y * y;
  }
  return acc.map((a) => {
    const m: [number, number] = [a.s[0]! / a.n, a.s[1]! / a.n];
    return { count: a.n, mean: m, std: [Math.sqrt(a.s2[0]! / a.n - m[0] ** 2), Math.sqrt(a.s2[1]! / a.n - m[1] ** 2)] };
  });
}

function nearest(x: number, y: number, centers: number[][]): number {
  let best = 0;
  let bestD = Infinity;
  centers.forEach((c, k) => {
    const dd = (x - c[0]!) ** 2 + (y - c[1]!) ** 2;
    if (dd < bestD) {
      bestD = dd;
      best = k;
    }
  });
  return best;
}

function checkShape(d: ToyData, name: ToyName, n: number, stateDim: number): void {
  assert.is(d.name, name);
  assert.is(d.actionDim, 2);
  assert.is(d.actions.length, n * 2, `${name}: actions length`);
  assert.is(d.rewards.length, n, `${name}: rewards length`);
  assert.is(d.stateDim, stateDim, `${name}: stateDim`);
  assert.is(d.states.length, n * stateDim);
  assert.ok(d.states.every((v) => v === 0), `${name}: states are zero`);
  assert.ok(d.actions.every(Number.isFinite) && d.rewards.every(Number.isFinite), `${name}: finite`);
}

t('every dataset: shapes, determinism per seed, different seeds differ', () => {
  const seed = freshSeed();
  for (const name of TOY_NAMES) {
    for (const n of [1, 7, 1001]) {
      const a = toyDataset(name, n, seed);
      const stateDim = name.startsWith('dql-') ? 2 : 1;
      checkShape(a, name, n, stateDim);
      const b = toyDataset(name, n, seed);
      assert.equal(a.actions, b.actions, `${name}: same seed, same actions`);
      assert.equal(a.rewards, b.rewards, `${name}: same seed, same rewards`);
    }
    const a = toyDataset(name, 1000, seed);
    const c = toyDataset(name, 1000, seed + 1);
    let same = 0;
    for (let i = 0; i < a.actions.length; i++) if (a.actions[i] === c.actions[i]) same++;
    assert.ok(same < 10, `${name}: seeds ${seed} and ${seed + 1} give ${same} equal coordinates of 2000`);
  }
});

t('unknown name: error lists the known names', () => {
  try {
    toyDataset('9gaussians' as ToyName, 10, 0);
    assert.unreachable('should throw');
  } catch (e) {
    const msg = (e as Error).message;
    assert.match(msg, '9gaussians');
    for (const name of TOY_NAMES) assert.match(msg, name);
  }
  assert.throws(() => toyDataset('moons', 0, 0), /positive integer/);
  assert.throws(() => toyDataset('moons', 2.5, 0), /positive integer/);
});

t('dql-bandit: four clusters of n/4, std 0.05, clipped to [-1, 1], rewards N(mu, 0.5^2) per cluster', () => {
  const n = 40000;
  const d = toyDataset('dql-bandit', n, freshSeed());
  checkShape(d, 'dql-bandit', n, 2);
  assert.is(d.maxAction, 1);
  const centers = [[-0.8, 0.8], [-0.8, -0.8], [0.8, 0.8], [0.8, -0.8]];
  assert.equal(d.modes, { centers, std: 0.05 });
  const mus = [3.0, 0.0, 1.5, 5.0];
  const stats = perMode(d, centers);
  // 10000 points per cluster: a mean has standard error 0.0005 and a std a relative one of 0.0071 (the
  // rewards' std below too), so these bounds are 6 standard errors (two-sided 2e-9 per check)
  stats.forEach((s, k) => {
    assert.is(s.count, n / 4, `cluster ${k} count`);
    for (const a of [0, 1] as const) {
      assert.ok(Math.abs(s.mean[a] - centers[k]![a]!) < 0.003, `cluster ${k} mean ${s.mean}`);
      assert.ok(Math.abs(s.std[a] / 0.05 - 1) < 0.043, `cluster ${k} std ${s.std}`);
    }
  });
  assert.ok(d.actions.every((v) => v >= -1 && v <= 1), 'clipped to [-1, 1]');
  // clusters are stored in order; rewards of cluster k ~ N(mu_k, 0.5^2)
  for (let k = 0; k < 4; k++) {
    let s = 0, s2 = 0;
    for (let i = k * (n / 4); i < (k + 1) * (n / 4); i++) {
      assert.is(nearest(d.actions[i * 2]!, d.actions[i * 2 + 1]!, centers), k, `row ${i} belongs to cluster ${k}`);
      s += d.rewards[i]!;
      s2 += d.rewards[i]! ** 2;
    }
    const m = s / (n / 4);
    const sd = Math.sqrt(s2 / (n / 4) - m * m);
    assert.ok(Math.abs(m - mus[k]!) < 0.03, `cluster ${k} reward mean ${m}`);
    assert.ok(Math.abs(sd / 0.5 - 1) < 0.043, `cluster ${k} reward std ${sd}`);
  }
  const bc = toyDataset('dql-bandit-bc', 1000, 5);
  assert.ok(bc.rewards.every((r) => r === 0), 'BC variant has zero rewards');
  assert.equal(bc.actions, toyDataset('dql-bandit', 1000, 5).actions, 'BC variant has the same actions');
  // the clip is active: a cluster placed at 0.8 with std 0.05 exceeds 1 in about 3e-5 of draws, so check the
  // bound through many seeds' worth of rows instead of relying on one
  const big = toyDataset('dql-bandit', 400000, 3);
  let atBound = 0;
  for (const v of big.actions) if (Math.abs(v) === 1) atBound++;
  assert.ok(atBound > 0, 'some coordinates hit the clip bound');
});

t('8gaussians: eight modes at 4 unit/1.414 with std 0.5/1.414, energy idx/7', () => {
  const n = 80000;
  const d = toyDataset('8gaussians', n, freshSeed());
  const r = Math.SQRT1_2;
  const unit = [[0, 1], [-r, r], [-1, 0], [-r, -r], [0, -1], [r, -r], [1, 0], [r, r]];
  const centers = unit.map(([x, y]) => [(4 * x!) / 1.414, (4 * y!) / 1.414]);
  assert.is(d.modes!.centers.length, 8);
  d.modes!.centers.forEach((c, k) => assert.ok(Math.abs(c[0]! - centers[k]![0]!) < 1e-12 && Math.abs(c[1]! - centers[k]![1]!) < 1e-12));
  assert.ok(Math.abs(d.modes!.std - 0.5 / 1.414) < 1e-12);
  const stats = perMode(d, centers);
  stats.forEach((s, k) => {
    // multinomial count: n/8 +- 6.4 sigma (sigma = sqrt(n p (1-p)) ~ 94); the mean's standard error is 0.0035
    // and the std's relative one 0.0071, so those bounds are 5.7 standard errors
    assert.ok(Math.abs(s.count - n / 8) < 600, `mode ${k} count ${s.count}`);
    for (const a of [0, 1] as const) {
      assert.ok(Math.abs(s.mean[a] - centers[k]![a]!) < 0.02, `mode ${k} mean ${s.mean}`);
      assert.ok(Math.abs(s.std[a] / (0.5 / 1.414) - 1) < 0.04, `mode ${k} std ${s.std}`);
    }
  });
  // energy = idx / 7 of the component the point came from; modes are 2.0 apart and std 0.35, so the
  // nearest center is the component except for a rare tail point
  let mismatch = 0;
  for (let i = 0; i < n; i++) {
    const e = d.rewards[i]!;
    const idx = Math.round(e * 7);
    assert.ok(Math.abs(e - Math.fround(idx / 7)) === 0 && idx >= 0 && idx < 8, `energy ${e} is k/7`);
    if (nearest(d.actions[i * 2]!, d.actions[i * 2 + 1]!, centers) !== idx) mismatch++;
  }
  assert.ok(mismatch / n < 0.01, `energy matches the nearest mode except in the tails (${mismatch} of ${n})`);
});

t('rings: n/4 per ring (innermost takes the rest), shuffled, energy from the noiseless radius, noise 0.08', () => {
  const n = 40003;
  const d = toyDataset('rings', n, freshSeed());
  const counts = [0, 0, 0, 0];
  let s2 = 0;
  const expectedEnergy = RING_RADII.map((r) => ringEnergy(r * r));
  assert.equal(expectedEnergy.map((e) => Math.fround(e)), [0.667, 0.333, 1.0, 0].map((e) => Math.fround(e)));
  // the energy names the ring a point was drawn on; its noisy radius stays within 0.6 (7.5 noise stds) of it.
  // Over 40003 points a bound of 5.6 stds fails in about 7e-4 of the draws (worst point 5.2 stds in 300 seeds);
  // at 7.5 stds it is 3e-9, and a point labelled with a neighbouring ring (0.75 away) still fails it.
  for (let i = 0; i < n; i++) {
    const rad = Math.hypot(d.actions[i * 2]!, d.actions[i * 2 + 1]!);
    const ring = expectedEnergy.findIndex((e) => Math.fround(e) === d.rewards[i]);
    assert.ok(ring >= 0, `point ${i} energy ${d.rewards[i]} is one of the four`);
    counts[ring]!++;
    s2 += (rad - RING_RADII[ring]!) ** 2;
    assert.ok(Math.abs(rad - RING_RADII[ring]!) < 0.6, `point ${i} radius ${rad} near ring ${RING_RADII[ring]}`);
  }
  const q = Math.floor(n / 4);
  assert.equal(counts, [q, q, q, n - 3 * q]);
  // radial spread of 2-D isotropic noise of std 0.08 is about 0.08 (the tangential part adds little)
  const radialStd = Math.sqrt(s2 / n);
  assert.ok(Math.abs(radialStd / 0.08 - 1) < 0.05, `radial std ${radialStd}`);
  // shuffled: the first thousand points are not all on one ring
  const firstRings = new Set<number>();
  for (let i = 0; i < 1000; i++) firstRings.add(d.rewards[i]!);
  assert.is(firstRings.size, 4, 'rows are shuffled');
  // angles on a ring are evenly spaced before noise: the outer ring's angular histogram is flat
  const bins = new Array(8).fill(0);
  for (let i = 0; i < n; i++) {
    if (d.rewards[i] !== Math.fround(0.667)) continue;
    const a = Math.atan2(d.actions[i * 2 + 1]!, d.actions[i * 2]!) + Math.PI;
    bins[Math.min(7, Math.floor((a / (2 * Math.PI)) * 8))]++;
  }
  for (const b of bins) assert.ok(Math.abs(b - q / 8) < 40, `outer ring angular bins ${bins}`);
});

t('swissroll: make_swiss_roll(noise 1)/5, energy |a|^2/9', () => {
  const n = 50000;
  const d = toyDataset('swissroll', n, freshSeed());
  for (let i = 0; i < n; i++) {
    const x = d.actions[i * 2]!;
    const y = d.actions[i * 2 + 1]!;
    const e = (x * x + y * y) / 9;
    assert.ok(Math.abs(d.rewards[i]! - e) <= 1e-6 * Math.max(1, e), `energy ${d.rewards[i]} vs ${e}`);
  }
  // without noise, 5 a = t (cos t, sin t) with t in [1.5 pi, 4.5 pi]: radius |5 a| in [1.5 pi, 4.5 pi] up to noise
  let inside = 0;
  for (let i = 0; i < n; i++) {
    const r = 5 * Math.hypot(d.actions[i * 2]!, d.actions[i * 2 + 1]!);
    if (r > 1.5 * Math.PI - 6 && r < 4.5 * Math.PI + 6) inside++;
  }
  assert.is(inside, n, 'radii within the roll plus 6 noise stds');
  // the mean over t ~ U(1.5 pi, 4.5 pi) of t cos t is (cos t + t sin t) / (3 pi) between the ends
  const T = (t0: number) => Math.cos(t0) + t0 * Math.sin(t0);
  const U = (t0: number) => Math.sin(t0) - t0 * Math.cos(t0);
  const a = 1.5 * Math.PI, b = 4.5 * Math.PI;
  const mx = (T(b) - T(a)) / (b - a) / 5;
  const my = (U(b) - U(a)) / (b - a) / 5;
  let sx = 0, sy = 0;
  for (let i = 0; i < n; i++) {
    sx += d.actions[i * 2]!;
    sy += d.actions[i * 2 + 1]!;
  }
  // the means' standard errors are 0.0060 (x) and 0.0063 (y): 0.038 is 6 of them
  assert.ok(Math.abs(sx / n - mx) < 0.038 && Math.abs(sy / n - my) < 0.038, `mean (${sx / n}, ${sy / n}) vs (${mx}, ${my})`);
});

t('moons: make_moons(noise 0.1) * 2 + (-1, -0.2), energy = label, shuffled', () => {
  const n = 30001;
  const d = toyDataset('moons', n, freshSeed());
  let ones = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    // undo the affine map: p = (a - (-1, -0.2)) / 2
    const px = (d.actions[i * 2]! + 1) / 2;
    const py = (d.actions[i * 2 + 1]! + 0.2) / 2;
    const label = d.rewards[i]!;
    assert.ok(label === 0 || label === 1, `label ${label}`);
    ones += label;
    // outer moon: unit circle around (0, 0), upper half; inner: unit circle around (1, 0.5), lower half
    const cx = label === 0 ? 0 : 1;
    const cy = label === 0 ? 0 : 0.5;
    const dr = Math.hypot(px - cx, py - cy) - 1;
    s2 += dr * dr;
    // 7 noise stds: over 30001 points 6 stds would fail in about 6e-5 of the draws, 7 in 1e-7
    assert.ok(Math.abs(dr) < 0.7, `point ${i} off its moon by ${dr}`);
    const side = label === 0 ? py : cy - py;
    assert.ok(side > -0.7, `point ${i} on the wrong half of its circle`);
  }
  assert.is(ones, n - Math.floor(n / 2), 'inner moon has the remaining points');
  assert.ok(Math.abs(Math.sqrt(s2 / n) / 0.1 - 1) < 0.1, `radial noise std ${Math.sqrt(s2 / n)}`);
  let firstOnes = 0;
  for (let i = 0; i < 1000; i++) firstOnes += d.rewards[i]!;
  assert.ok(firstOnes > 400 && firstOnes < 600, `shuffled (${firstOnes} of the first 1000 are label 1)`);
});

t('checkerboard: alternating squares of side 2 in [-4, 4]^2, energy from x', () => {
  const n = 80000;
  const d = toyDataset('checkerboard', n, freshSeed());
  const cells = new Map<string, number>();
  // A coordinate drawn just below a square's edge (an even integer, 4 included) can round to the edge itself
  // when stored as float32: 13 of 1000 draws of 80000 points had such a point. It belongs to either
  // square whose closure holds it, so an edge coordinate names both neighbouring cells.
  const cellsOf = (v: number) => (v % 2 === 0 ? [v / 2 - 1, v / 2] : [Math.floor(v / 2)]).filter((c) => c >= -2 && c < 2);
  for (let i = 0; i < n; i++) {
    const x = d.actions[i * 2]!;
    const y = d.actions[i * 2 + 1]!;
    assert.ok(x >= -4 && x <= 4 && y >= -4 && y <= 4, `point (${x}, ${y}) in [-4, 4]^2`);
    assert.is(d.rewards[i], checkerboardEnergy(x));
    const e = (x > 0 && x <= 2) || x <= -2 ? 1 : 0;
    assert.is(d.rewards[i], e);
    const filled = cellsOf(x).flatMap((cx) => cellsOf(y).map((cy) => [cx, cy] as const)).filter(([cx, cy]) => ((cx + cy) % 2 + 2) % 2 === 0);
    assert.ok(filled.length > 0, `point (${x}, ${y}) is on a filled square`);
    const [cx, cy] = filled[0]!;
    const key = `${cx},${cy}`;
    cells.set(key, (cells.get(key) ?? 0) + 1);
  }
  assert.is(cells.size, 8, 'eight filled squares');
  // multinomial counts: sigma = sqrt(n p (1 - p)) ~ 94, so 600 is 6.4 sigma
  for (const [k, c] of cells) assert.ok(Math.abs(c - n / 8) < 600, `square ${k} holds ${c}`);
});

t('2spirals: mirrored halves, points near the spiral, energy clip(1 - h/10, 0, 1)', () => {
  const n = 40001;
  const d = toyDataset('2spirals', n, freshSeed());
  const half = Math.ceil(n / 2);
  let sx = 0, sy = 0, s2x = 0;
  for (let i = 0; i < n; i++) {
    const e = d.rewards[i]!;
    const h = 10 * (1 - e);
    assert.ok(h >= -1e-5 && h <= 3 * Math.PI + 1e-5, `h = ${h} in [0, 3 pi]`);
    if (i >= half) assert.is(e, d.rewards[i - half], `mirrored point ${i} shares its energy`);
    const sign = i < half ? 1 : -1;
    // 3 a sign = (-cos h h, sin h h) + U/2 + 3 noise: the residual has mean 0.25, std sqrt(1/48 + 0.09)
    const rx = 3 * sign * d.actions[i * 2]! - -Math.cos(h) * h;
    const ry = 3 * sign * d.actions[i * 2 + 1]! - Math.sin(h) * h;
    assert.ok(Math.abs(rx - 0.25) < 2.5 && Math.abs(ry - 0.25) < 2.5, `point ${i} residual (${rx}, ${ry})`);
    sx += rx;
    sy += ry;
    s2x += rx * rx;
  }
  assert.ok(Math.abs(sx / n - 0.25) < 0.01 && Math.abs(sy / n - 0.25) < 0.01, `residual means ${sx / n}, ${sy / n}`);
  const sd = Math.sqrt(s2x / n - (sx / n) ** 2);
  const expected = Math.sqrt(1 / 48 + 0.09);
  assert.ok(Math.abs(sd / expected - 1) < 0.03, `residual std ${sd} vs ${expected}`);
  // h = sqrt(U) 3 pi: P(h <= 1.5 pi) = 1/4, standard error 0.0031 over 20001 points: 0.019 is 6 of them
  let low = 0;
  for (let i = 0; i < half; i++) if (10 * (1 - d.rewards[i]!) <= 1.5 * Math.PI) low++;
  assert.ok(Math.abs(low / half - 0.25) < 0.019, `P(h <= 1.5 pi) = ${low / half}`);
});

t('25gaussians: 5x5 grid in the original order, n/25 per mode, std 0.3, rewards far/near/hard', () => {
  const n = 10000;
  const seed = freshSeed();
  const far = toyDataset('25gaussians-far', n, seed);
  const near = toyDataset('25gaussians-near', n, seed);
  const hard = toyDataset('25gaussians-hard', n, seed);
  const centers = gridCenters();
  assert.equal(centers.slice(0, 3), [[-10, -10], [-10, -5], [-10, 0]], 'meshgrid(x, y).T order: the first coordinate varies slowest');
  assert.equal(far.modes, { centers, std: 0.3 });
  assert.equal(far.actions, near.actions);
  assert.equal(far.actions, hard.actions);
  // 400 points per mode: a mode's mean has standard error 0.015 and its std a relative error of 3.5%, so
  // per mode the bounds are 6 standard errors (at 5, the 100 checks together would fail in about 5e-5 of the draws)
  // and the std is pinned down on the pooled residuals
  const stats = perMode(far, centers);
  let pooled = 0;
  stats.forEach((s, k) => {
    assert.is(s.count, 400, `mode ${k} count`);
    for (const a of [0, 1] as const) {
      assert.ok(Math.abs(s.mean[a] - centers[k]![a]!) < 0.09, `mode ${k} mean ${s.mean}`);
      assert.ok(Math.abs(s.std[a] / 0.3 - 1) < 0.215, `mode ${k} std ${s.std}`);
      pooled += s.std[a] ** 2;
    }
  });
  const pooledStd = Math.sqrt(pooled / 50);
  assert.ok(Math.abs(pooledStd / 0.3 - 1) < 0.035, `pooled std ${pooledStd}`);
  let maxNorm = 0;
  for (let i = 0; i < n; i++) maxNorm = Math.max(maxNorm, Math.hypot(far.actions[i * 2]!, far.actions[i * 2 + 1]!));
  let doubled = 0;
  for (let i = 0; i < n; i++) {
    const x = far.actions[i * 2]!;
    const y = far.actions[i * 2 + 1]!;
    assert.is(nearest(x, y, centers), Math.floor(i / 400), `row ${i} in mode order`);
    const norm = Math.hypot(x, y);
    assert.ok(Math.abs(far.rewards[i]! - norm) <= 1e-6 * norm, 'far = |a|');
    assert.ok(Math.abs(near.rewards[i]! - (maxNorm - norm)) <= 1e-6 * maxNorm, 'near = max|a| - |a|');
    const h = x < -7.5 && y > 7.5 ? 2 * norm : norm;
    assert.ok(Math.abs(hard.rewards[i]! - h) <= 1e-6 * h, 'hard doubles the top-left mode');
    assert.ok(Math.abs(gridHardReward(x, y) - h) <= 1e-12 * h);
    if (h !== norm) doubled++;
  }
  assert.is(doubled, 400, 'exactly the top-left mode is doubled');
  assert.ok(near.rewards.every((r) => r >= 0));
  // uneven n: first modes take one more
  const odd = toyDataset('25gaussians-far', 53, 1);
  const counts = perMode(odd, centers).map((s) => s.count);
  assert.equal(counts.slice(0, 4), [3, 3, 3, 2]);
});

t.run();
