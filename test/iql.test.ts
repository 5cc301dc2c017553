// IQL: the fused losses against float64 references and finite differences; the critic against known answers
// (a one-step bandit, a small chain MDP), its step order and targets, the Polyak update, the target-Q action
// gradient; the AWR actor's fixed point; and a short run on the Hopper fixture.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { allClose, freshSeed, gpu, gradCheck, poisonNext, randn, randu, rng, settle } from './helpers.ts';
import { backward, noGrad, tapeLength } from '../engine/autograd.ts';
import { mul } from '../engine/ops/elementwise.ts';
import { reduceTuning, sum } from '../engine/ops/reduce.ts';
import { parameter } from '../engine/params.ts';
import { Generator } from '../engine/random.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { AWRActor, IQL_DTQL, IQL_LOSS_CHUNK, IQLCritic, awrLoss, expectileLoss, twinTdLoss, type IQLConfig } from '../algorithms/common/iql.ts';
import { TwinQ, ValueNet } from '../algorithms/common/critic-nets.ts';
import { qlearningDataset, readD4RL } from '../datasets/d4rl.ts';
import { normalizeTransitions, observationStats } from '../datasets/presets.ts';
import { ReplayStore } from '../datasets/replay.ts';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'hopper-expert-v4.hdf5');

const t = suite('iql');
t.before(gpu);
t.after.each(() => {
  reduceTuning.rowThreads = 'auto';
});

async function read(x: Tensor): Promise<Float32Array> {
  return (await x.read()) as Float32Array;
}

/** Builds tensors (intermediates freed), reads them back and frees them. */
async function compute<const T extends readonly Tensor[]>(fn: () => T): Promise<{ [K in keyof T]: Float32Array }> {
  const ts = tidy(fn);
  const out = await readAll(ts);
  for (const x of ts) x.dispose();
  return out;
}

async function computeOne(fn: () => Tensor): Promise<Float32Array> {
  return (await compute(() => [fn()] as const))[0];
}

async function readAll<const T extends readonly Tensor[]>(ts: T): Promise<{ [K in keyof T]: Float32Array }> {
  const out: Float32Array[] = [];
  for (const x of ts) out.push(await read(x));
  return out as { [K in keyof T]: Float32Array };
}

// ---- float64 references ----

function expectileRef(pred: ArrayLike<number>, target: ArrayLike<number>, tau: number): number {
  let s = 0;
  for (let i = 0; i < pred.length; i++) {
    const u = target[i]! - pred[i]!;
    s += (u < 0 ? 1 - tau : tau) * u * u;
  }
  return s / pred.length;
}

function twinTdRef(q1: ArrayLike<number>, q2: ArrayLike<number>, r: ArrayLike<number>, nd: ArrayLike<number>, nv: ArrayLike<number>, discount: number): number {
  let s = 0;
  for (let b = 0; b < q1.length; b++) {
    const y = r[b]! + discount * nd[b]! * nv[b]!;
    s += (q1[b]! - y) ** 2 + (q2[b]! - y) ** 2;
  }
  return (0.5 * s) / q1.length;
}

interface AWRRef {
  beta: number;
  maxWeight: number;
  logStdMin: number;
  logStdMax: number;
}

function awrRef(pred: ArrayLike<number>, actions: ArrayLike<number>, adv: ArrayLike<number>, logStd: ArrayLike<number> | null, dim: number, o: AWRRef): number {
  const rows = adv.length;
  let s = 0;
  for (let b = 0; b < rows; b++) {
    const w = Math.min(Math.exp(o.beta * adv[b]!), o.maxWeight);
    let term = 0;
    for (let d = 0; d < dim; d++) {
      const diff = actions[b * dim + d]! - pred[b * dim + d]!;
      if (logStd) {
        const ls = Math.min(Math.max(logStd[d]!, o.logStdMin), o.logStdMax);
        const z = diff / Math.exp(ls);
        term += 0.5 * z * z + ls + 0.5 * Math.log(2 * Math.PI);
      } else {
        term += diff * diff;
      }
    }
    s += w * term;
  }
  return s / rows;
}

/** The tau-expectile of a weighted sample: the root of sum_i w_i |tau - 1(x_i < m)| (x_i - m), by bisection. */
function expectileOf(values: number[], weights: number[], tau: number): number {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  for (let it = 0; it < 200; it++) {
    const m = (lo + hi) / 2;
    let g = 0;
    values.forEach((x, i) => (g += weights[i]! * (x < m ? 1 - tau : tau) * (x - m)));
    if (g > 0) lo = m;
    else hi = m;
  }
  return (lo + hi) / 2;
}

// ---- losses ----

const LOSS_ROWS = [1, 3, 17, 255, 257, 1023, IQL_LOSS_CHUNK + 808];

t('expectileLoss matches float64 on awkward sizes, one invocation or a workgroup per chunk', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  for (const threads of ['auto', 64] as const) {
    reduceTuning.rowThreads = threads;
    for (const rows of LOSS_ROWS) {
      for (const cols of [1, 3]) {
        const n = rows * cols;
        const tau = [0.7, 0.9, 0.5, 0.1][rows % 4]!;
        const pred = randn(n, r);
        const target = randn(n, r, 2);
        poisonNext([Math.ceil(n / IQL_LOSS_CHUNK)]);
        const got = await computeOne(() => expectileLoss(tensor(pred, [rows, cols]), tensor(target, [rows, cols]), tau));
        assert.is(got.length, 1);
        allClose(got, [expectileRef(pred, target, tau)], 2e-5, 1e-7, `expectile [${rows}, ${cols}] tau ${tau} threads ${threads} seed ${seed}`);
      }
    }
  }
});

t('expectileLoss gradients in pred and target (gradCheck), and in pred alone', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  for (const [rows, tau] of [[1, 0.7], [17, 0.9], [257, 0.7], [1023, 0.3]] as const) {
    const pred = randn(rows, r);
    const target = randn(rows, r);
    await gradCheck((p, q) => expectileLoss(p, q, tau), (p, q) => [expectileRef(p, q, tau)], [
      { data: pred, shape: [rows, 1] },
      { data: target, shape: [rows, 1] },
    ], { seed, what: `expectile grad rows ${rows} seed ${seed}` });
  }
  // a constant target: only pred's gradient is formed
  const rows = 33;
  const pred = randn(rows, r);
  const target = randn(rows, r);
  const p = tensor(pred, [rows, 1]);
  p.requiresGrad = true;
  const q = tensor(target, [rows, 1]);
  tidy(() => backward(expectileLoss(p, q, 0.8)));
  const g = await read(p.grad!);
  const ref = pred.map((x, i) => {
    const u = target[i]! - x;
    return (-2 * (u < 0 ? 0.2 : 0.8) * u) / rows;
  });
  allClose(g, ref, 1e-5, 1e-7, `expectile dpred seed ${seed}`);
  assert.is(q.grad, null);
  p.grad!.dispose();
  p.dispose();
  q.dispose();
});

t('twinTdLoss matches float64 and its head gradients pass gradCheck; rejects mismatched shapes', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  for (const rows of LOSS_ROWS) {
    const [q1, q2, rw, nv] = [randn(rows, r), randn(rows, r), randn(rows, r), randn(rows, r, 3)];
    const nd = randu(rows, r, 0, 1).map((x) => (x < 0.2 ? 0 : 1));
    const discount = 0.99;
    poisonNext([Math.ceil(rows / IQL_LOSS_CHUNK)]);
    const got = await computeOne(() =>
      // mixed [B] and [B, 1] columns
      twinTdLoss(tensor(q1, [rows, 1]), tensor(q2, [rows, 1]), tensor(rw, [rows]), tensor(nd, [rows, 1]), tensor(nv, [rows]), discount),
    );
    allClose(got, [twinTdRef(q1, q2, rw, nd, nv, discount)], 2e-5, 1e-7, `twinTd rows ${rows} seed ${seed}`);
    const summed = await computeOne(() =>
      twinTdLoss(tensor(q1, [rows]), tensor(q2, [rows]), tensor(rw, [rows]), tensor(nd, [rows]), tensor(nv, [rows]), discount, 'sum'),
    );
    allClose(summed, [2 * twinTdRef(q1, q2, rw, nd, nv, discount)], 2e-5, 1e-7, `twinTd heads 'sum' rows ${rows} seed ${seed}`);
    if (rows > 300 && rows < 2000) {
      const consts = [tensor(rw, [rows, 1]), tensor(nd, [rows, 1]), tensor(nv, [rows, 1])] as const;
      await gradCheck((a, b) => twinTdLoss(a, b, consts[0], consts[1], consts[2], discount), (a, b) => [twinTdRef(a, b, rw, nd, nv, discount)], [
        { data: q1, shape: [rows, 1] },
        { data: q2, shape: [rows, 1] },
      ], { seed, what: `twinTd grad seed ${seed}` });
      await gradCheck((a, b) => twinTdLoss(a, b, consts[0], consts[1], consts[2], discount, 'sum'), (a, b) => [2 * twinTdRef(a, b, rw, nd, nv, discount)], [
        { data: q1, shape: [rows, 1] },
        { data: q2, shape: [rows, 1] },
      ], { seed, what: `twinTd 'sum' grad seed ${seed}` });
      for (const c of consts) c.dispose();
    }
  }
  tidy(() => {
    assert.throws(() => twinTdLoss(tensor([1, 2], [2, 1]), tensor([1, 2], [2, 1]), tensor([1], [1, 1]), tensor([1, 1], [2, 1]), tensor([1, 1], [2, 1]), 0.9), /reward must be an f32 \[2\]/);
    assert.throws(() => twinTdLoss(tensor([1, 2], [1, 2]), tensor([1, 2], [2, 1]), tensor([1, 1], [2]), tensor([1, 1], [2]), tensor([1, 1], [2]), 0.9), /q1/);
  });
});

t('awrLoss (deterministic and Gaussian, clipped weights, clamped log-std) matches float64 and gradCheck', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  const shapes: [number, number][] = [[1, 1], [3, 2], [17, 3], [257, 6], [1023, 1], [3000, 3]];
  for (const threads of ['auto', 64] as const) {
    reduceTuning.rowThreads = threads;
    for (const [rows, dim] of shapes) {
      const pred = randu(rows * dim, r, -0.9, 0.9);
      const actions = randu(rows * dim, r, -1, 1);
      // beta 3: advantages above ln(100) / 3 = 1.54 hit the weight clip
      const adv = randu(rows, r, -1, 2);
      const logStd = randu(dim, r, -1, 1);
      const o: AWRRef = { beta: 3, maxWeight: 100, logStdMin: -0.5, logStdMax: 2 };
      // a log-std within a probe step (1e-4) of logStdMin makes the central difference straddle the clamp and
      // disagree with the gradient: about 1e-4 per drawn value, 9e-4 per run; keep them 1e-2 away
      for (let d = 0; d < dim; d++) while (Math.abs(logStd[d]! - o.logStdMin) < 1e-2) logStd[d] = randu(1, r, -1, 1)[0]!;
      if (dim > 1) logStd[0] = -0.8; // below logStdMin: clamped
      for (const gaussian of [false, true]) {
        const what = `awr ${gaussian ? 'gaussian' : 'deterministic'} [${rows}, ${dim}] threads ${threads} seed ${seed}`;
        const got = await computeOne(() =>
          awrLoss(tensor(pred, [rows, dim]), tensor(actions, [rows, dim]), tensor(adv, [rows, 1]), { ...o, logStd: gaussian ? tensor(logStd, [dim]) : null }),
        );
        allClose(got, [awrRef(pred, actions, adv, gaussian ? logStd : null, dim, o)], 2e-5, 1e-6, what);
        if (threads === 'auto' && rows <= 257) {
          const a = tensor(actions, [rows, dim]);
          const w = tensor(adv, [rows]);
          if (gaussian) {
            await gradCheck((p, ls) => awrLoss(p, a, w, { ...o, logStd: ls }), (p, ls) => [awrRef(p, actions, adv, ls, dim, o)], [
              { data: pred, shape: [rows, dim] },
              { data: logStd, shape: [dim] },
            ], { seed, what: `${what} grad` });
          } else {
            await gradCheck((p) => awrLoss(p, a, w, o), (p) => [awrRef(p, actions, adv, null, dim, o)], [{ data: pred, shape: [rows, dim] }], { seed, what: `${what} grad` });
          }
          a.dispose();
          w.dispose();
        }
      }
    }
  }
});

// ---- networks ----

t('TwinQ: independent heads on concat(s, a) (or (a, s)), min and mean; ValueNet; LayerNorm variant; shape errors', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  const [B, S, A] = [5, 4, 2];
  const obs = randn(B * S, r);
  const act = randn(B * A, r);
  const net = new TwinQ(S, A, { hidden: [8, 8], layerNorm: true, act: 'mish' });
  const swapped = new TwinQ(S, A, { hidden: [8, 8], layerNorm: true, act: 'mish', inputOrder: 'as' });
  swapped.copyFrom(net);
  assert.equal(net.namedParameters().map((e) => e.name).slice(0, 2), ['q1.layers.0.weight', 'q1.layers.0.bias']);
  assert.ok(net.namedParameters().some((e) => e.name === 'q1.norms.0.weight'), 'LayerNorm parameters present');
  const [q1, q2, mn, me, j, js, s1, s2] = await compute(() => {
    const o = tensor(obs, [B, S]);
    const a = tensor(act, [B, A]);
    const [h1, h2] = net.forward(o, a);
    const [g1, g2] = swapped.forward(o, a);
    return [h1, h2, net.min(o, a), net.mean(o, a), net.join(o, a), swapped.join(o, a), g1, g2] as const;
  });
  assert.ok(q1.some((x, i) => Math.abs(x - q2[i]!) > 1e-4), 'the heads differ');
  allClose(mn, q1.map((x, i) => Math.min(x, q2[i]!)), 0, 0, 'min');
  allClose(me, q1.map((x, i) => (x + q2[i]!) / 2), 1e-6, 1e-7, 'mean');
  const joined = Array.from({ length: B }, (_, b) => [...obs.slice(b * S, b * S + S), ...act.slice(b * A, b * A + A)]).flat();
  allClose(j, joined, 0, 0, 'concat(s, a)');
  allClose(js, Array.from({ length: B }, (_, b) => [...act.slice(b * A, b * A + A), ...obs.slice(b * S, b * S + S)]).flat(), 0, 0, 'concat(a, s)');
  // the swapped net sees the same numbers in other columns, so its outputs differ
  assert.ok(s1.some((x, i) => Math.abs(x - q1[i]!) > 1e-5) || s2.some((x, i) => Math.abs(x - q2[i]!) > 1e-5));
  const v = new ValueNet(S, { hidden: [7] });
  assert.equal(v.namedParameters().map((e) => [e.name, e.tensor.shape.join('x')]), [
    ['net.layers.0.weight', '7x4'],
    ['net.layers.0.bias', '7'],
    ['net.layers.1.weight', '1x7'],
    ['net.layers.1.bias', '1'],
  ]);
  tidy(() => {
    assert.throws(() => net.forward(tensor(obs, [B, S]), tensor(act.slice(0, 2 * (B - 1)), [B - 1, A])), /actions must be \[5, 2\]/);
    assert.throws(() => v.forward(tensor(act, [B, A])), /obs must be \[B, 4\]/);
  });
  assert.throws(() => new TwinQ(S, A, { hidden: [] }), /hidden widths/);
});

// ---- the critic ----

interface HostBatch {
  obs: number[];
  actions: number[];
  rewards: number[];
  nextObs: number[];
  notDone: number[];
  obsDim: number;
  actDim: number;
}

function upload(b: HostBatch) {
  const n = b.rewards.length;
  return {
    obs: tensor(b.obs, [n, b.obsDim]),
    actions: tensor(b.actions, [n, b.actDim]),
    rewards: tensor(b.rewards, [n, 1]),
    nextObs: tensor(b.nextObs, [n, b.obsDim]),
    notDone: tensor(b.notDone, [n, 1]),
  };
}

function disposeBatch(b: Record<string, Tensor>): void {
  for (const x of Object.values(b)) x.dispose();
}

async function train(critic: IQLCritic, batch: ReturnType<typeof upload>, steps: number): Promise<void> {
  for (let s = 0; s < steps; s++) {
    const { vLoss, qLoss } = critic.update(batch);
    vLoss.dispose();
    qLoss.dispose();
    // surface GPU errors near their cause
    if (s % 100 === 99) await settle();
  }
}

t('one-step bandit: Q converges to the rewards, V to the expectile of Q over the data actions per state', async () => {
  // three states; each has a few (action, reward) pairs, some repeated to skew the data distribution
  const states = [[1, 0, 0, 0.5], [0, 1, 0, -0.5], [0, 0, 1, 0.2]];
  const table: [number, number, number, number][][] = [
    [[0.5, -0.5, 1.0, 2], [-0.3, 0.2, 0.2, 1], [0.1, 0.9, -0.5, 1]],
    [[0.7, 0.1, 0.3, 1], [-0.8, -0.2, 0.8, 1], [0.0, 0.5, -1.0, 3], [0.4, -0.9, 0.0, 1]],
    [[0.2, 0.2, 2.0, 1], [-0.5, 0.6, 1.0, 1]],
  ];
  const host: HostBatch = { obs: [], actions: [], rewards: [], nextObs: [], notDone: [], obsDim: 4, actDim: 2 };
  const stateRow: number[] = [];
  table.forEach((rows, k) =>
    rows.forEach(([a0, a1, rew, count]) => {
      for (let c = 0; c < count; c++) {
        stateRow.push(k);
        host.obs.push(...states[k]!);
        host.nextObs.push(...states[k]!);
        host.actions.push(a0, a1);
        host.rewards.push(rew);
        host.notDone.push(0);
      }
    }),
  );
  const batch = upload(host);
  // expectile 0.7 here; the chain test below uses 0.9
  for (const expectile of [0.7]) {
    const critic = new IQLCritic(4, 2, { hidden: [32, 32], lr: 3e-3, tau: 0.1, expectile }, { seed: 3 });
    await train(critic, batch, 300);
    const [q, v] = await compute(() => noGrad(() => [critic.q.min(batch.obs, batch.actions), critic.v.forward(batch.obs)] as const));
    allClose(q, host.rewards, 0, 1e-3, `Q = r (expectile ${expectile})`);
    const want = stateRow.map((k) => expectileOf(table[k]!.map((e) => e[2]), table[k]!.map((e) => e[3]), expectile));
    allClose(v, want, 0, 2e-3, `V = expectile of Q per state (expectile ${expectile})`);
    critic.dispose();
  }
  disposeBatch(batch);
});

t('chain MDP with discount 0.8: Q reaches the fixed point of Q = r + gamma notDone V(s\'), V = expectile of Q', async () => {
  const N = 4;
  const gamma = 0.8;
  const expectile = 0.9;
  const reward = [[0.1, -0.2, 0.0], [0.0, 0.3, -0.1], [-0.2, 0.1, 0.2], [0.0, 0.5, 1.0]];
  // (s, a in {-1, 0, 1}, r, s' = clamp(s + a), notDone, count); moving right from the last state terminates
  const rows: { s: number; a: number; r: number; next: number; notDone: number; count: number }[] = [];
  for (let s = 0; s < N; s++) {
    for (const a of [-1, 0, 1]) {
      rows.push({ s, a, r: reward[s]![a + 1]!, next: Math.min(N - 1, Math.max(0, s + a)), notDone: s === N - 1 && a === 1 ? 0 : 1, count: a === 0 ? 2 : 1 });
    }
  }
  // the fixed point in float64 by iterating the two equations
  let V = new Float64Array(N);
  let Q = rows.map(() => 0);
  for (let it = 0; it < 500; it++) {
    Q = rows.map((e) => e.r + gamma * e.notDone * V[e.next]!);
    V = Float64Array.from({ length: N }, (_, s) => {
      const mine = rows.map((e, i) => [e, Q[i]!] as const).filter(([e]) => e.s === s);
      return expectileOf(mine.map(([, q]) => q), mine.map(([e]) => e.count), expectile);
    });
  }
  const oneHot = (s: number) => Array.from({ length: N }, (_, i) => (i === s ? 1 : 0));
  const host: HostBatch = { obs: [], actions: [], rewards: [], nextObs: [], notDone: [], obsDim: N, actDim: 1 };
  const rowOf: number[] = [];
  rows.forEach((e, i) => {
    for (let c = 0; c < e.count; c++) {
      rowOf.push(i);
      host.obs.push(...oneHot(e.s));
      host.nextObs.push(...oneHot(e.next));
      host.actions.push(e.a);
      host.rewards.push(e.r);
      host.notDone.push(e.notDone);
    }
  });
  const batch = upload(host);
  const critic = new IQLCritic(N, 1, { hidden: [32, 32], lr: 2e-3, tau: 0.2, expectile, discount: gamma }, { seed: 5 });
  await train(critic, batch, 600);
  const [q, v] = await compute(() =>
    noGrad(() => [critic.q.min(batch.obs, batch.actions), critic.v.forward(tensor(Array.from({ length: N }, (_, s) => oneHot(s)).flat(), [N, N]))] as const),
  );
  allClose(q, rowOf.map((i) => Q[i]!), 0, 2e-3, 'Q at the fixed point');
  allClose(v, V, 0, 2e-3, 'V at the fixed point');
  // the answer depends on bootstrapping: without discount it would be the rewards
  assert.ok(Math.max(...V) > 1.5, 'fixed point is far from the one-step values');
  critic.dispose();
  disposeBatch(batch);
});

async function snapshot(critic: IQLCritic, b: ReturnType<typeof upload>) {
  return compute(() =>
    noGrad(() => {
      const [t1, t2] = critic.qTarget.forward(b.obs, b.actions);
      const [q1, q2] = critic.q.forward(b.obs, b.actions);
      return [t1, t2, q1, q2, critic.v.forward(b.obs), critic.v.forward(b.nextObs)] as const;
    }),
  );
}

function randomHostBatch(r: () => number, rows: number, obsDim: number, actDim: number): HostBatch {
  return {
    obs: [...randn(rows * obsDim, r)],
    actions: [...randu(rows * actDim, r, -1, 1)],
    rewards: [...randn(rows, r)],
    nextObs: [...randn(rows * obsDim, r)],
    notDone: [...randu(rows, r, 0, 1)].map((x) => (x < 0.25 ? 0 : 1)),
    obsDim,
    actDim,
  };
}

t('update: V regresses to min of the target heads, Q to r + gamma notDone V(s\') with V before its step; advantage', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  const host = randomHostBatch(r, 37, 5, 2);
  const batch = upload(host);
  for (const valueTarget of ['target', 'online'] as const) {
    // a large learning rate makes V's step visible in V(s'), so the wrong order would be detected
    // 'online' as DTQL: the Q loss sums the heads' MSEs
    const heads = valueTarget === 'online' ? 'sum' : 'mean';
    const config: Partial<IQLConfig> = { hidden: [16, 16], lr: 0.05, discount: 0.9, expectile: 0.8, valueTarget, qLossHeads: heads, layerNorm: valueTarget === 'online' };
    const headScale = heads === 'sum' ? 2 : 1;
    const critic = new IQLCritic(5, 2, config, { seed: seed & 0xffff });
    // drive the target away from the online heads first
    await train(critic, upload(randomHostBatch(r, 37, 5, 2)), 3);
    const [t1, t2, q1, q2, v, nextV] = await snapshot(critic, batch);
    const { vLoss, qLoss, advantage } = critic.update(batch, { advantage: true });
    const [gotV, gotQ, gotAdv] = await readAll([vLoss, qLoss, advantage!]);
    const after = await snapshot(critic, batch);
    const pessimistic = valueTarget === 'target' ? t1.map((x, i) => Math.min(x, t2[i]!)) : q1.map((x, i) => Math.min(x, q2[i]!));
    const what = `${valueTarget} seed ${seed}`;
    allClose(gotV, [expectileRef(v, pessimistic, 0.8)], 1e-5, 1e-7, `vLoss ${what}`);
    allClose(gotQ, [headScale * twinTdRef(q1, q2, host.rewards, host.notDone, nextV, 0.9)], 1e-5, 1e-7, `qLoss ${what}`);
    allClose(gotAdv, pessimistic.map((x, i) => x - v[i]!), 1e-5, 1e-6, `advantage ${what}`);
    // the check can fail: V's step moves V(s'), so targets taken after it differ. (Comparing the two scalar
    // Q losses instead is not reliable: their difference is a sum of terms of either sign, and it came
    // within 1e-4 relative in one of about 15 fresh runs.) The largest move over the batch was 0.048-0.35 in
    // 12 checks; 3e-3 moves a target by far more than the loss check's tolerance.
    const moved = Math.max(...after[5].map((x, i) => Math.abs(x - nextV[i]!)));
    assert.ok(moved > 3e-3, `V's step moves V(s') by up to ${moved} (${what})`);
    // both networks stepped
    assert.ok(after[4].some((x, i) => Math.abs(x - v[i]!) > 1e-4) && after[2].some((x, i) => Math.abs(x - q1[i]!) > 1e-4), `V and Q changed (${what})`);
    for (const x of [vLoss, qLoss, advantage!]) x.dispose();
    critic.dispose();
  }
  disposeBatch(batch);
});

t('Polyak: after one step the target is exactly (1 - tau) old target + tau new Q; starts as a copy of Q', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  const critic = new IQLCritic(3, 2, { hidden: [8, 8], tau: 0.3, lr: 0.01 }, { seed: seed & 0xffff });
  const qParams = critic.q.parameters();
  const tParams = critic.qTarget.parameters();
  assert.equal(critic.qTarget.namedParameters().map((e) => e.name), critic.q.namedParameters().map((e) => e.name));
  const flat = async (ps: Tensor[]) => Float64Array.from((await readAll(ps)).flatMap((x) => [...x]));
  const q0 = await flat(qParams);
  allClose(await flat(tParams), q0, 0, 0, 'target starts as a copy');
  const batch = upload(randomHostBatch(r, 9, 3, 2));
  await train(critic, batch, 2);
  const before = await flat(tParams);
  await train(critic, batch, 1);
  const q1 = await flat(qParams);
  const after = await flat(tParams);
  assert.ok(q1.some((x, i) => Math.abs(x - q0[i]!) > 1e-4), 'Q moved');
  allClose(after, before.map((x, i) => 0.7 * x + 0.3 * q1[i]!), 1e-6, 1e-7, `Polyak seed ${seed}`);
  // the same seed builds the same networks
  const twin = new IQLCritic(3, 2, { hidden: [8, 8] }, { seed: seed & 0xffff });
  allClose(await flat(twin.q.parameters()), q0, 0, 0, 'seeded construction');
  critic.dispose();
  twin.dispose();
  disposeBatch(batch);
});

t('targetQGrad: d/da of the mean of the target heads against finite differences; tape left as found', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  const [B, S, A] = [17, 5, 3];
  const critic = new IQLCritic(S, A, { hidden: [16, 16], act: 'mish', tau: 0.5, lr: 0.02 }, { seed: seed & 0xffff });
  await train(critic, upload(randomHostBatch(r, 23, S, A)), 4);
  const obsData = randn(B * S, r);
  const actData = randu(B * A, r, -1, 1);
  const obs = tensor(obsData, [B, S]);
  const actions = tensor(actData, [B, A]);
  assert.is(tapeLength(), 0);
  const g = critic.targetQGrad(obs, actions);
  assert.is(tapeLength(), 0, 'an empty tape stays empty');
  assert.equal(g.shape, [B, A]);
  assert.is(g.requiresGrad, false);
  const got = await read(g);
  // central differences of (Q1' + Q2') / 2, one action column at a time (rows are independent)
  const h = 1e-2;
  const meanAt = (net: TwinQ, shifted: Float32Array) => computeOne(() => noGrad(() => net.mean(obs, tensor(shifted, [B, A]))));
  const fd = async (net: TwinQ) => {
    const out = new Float64Array(B * A);
    for (let j = 0; j < A; j++) {
      const plus = actData.slice();
      const minus = actData.slice();
      for (let b = 0; b < B; b++) {
        plus[b * A + j] = actData[b * A + j]! + h;
        minus[b * A + j] = actData[b * A + j]! - h;
      }
      const [fp, fm] = [await meanAt(net, plus), await meanAt(net, minus)];
      for (let b = 0; b < B; b++) out[b * A + j] = (fp[b]! - fm[b]!) / (2 * h);
    }
    return out;
  };
  const want = await fd(critic.qTarget);
  allClose(got, want, 2e-2, 3e-4, `targetQGrad seed ${seed}`);
  const online = await fd(critic.q);
  assert.ok(online.some((x, i) => Math.abs(x - want[i]!) > 1e-3), 'the online heads would give another gradient');
  // inside a caller's recording: its own gradients are unaffected
  const x = parameter([1, 2, 3], [3]);
  tidy(() => {
    const y = mul(x, 2);
    critic.targetQGrad(obs, actions).dispose();
    backward(sum(y));
  });
  allClose(await read(x.grad!), [2, 2, 2], 0, 0, 'caller gradient');
  assert.is(tapeLength(), 0);
  assert.throws(() => noGrad(() => critic.targetQGrad(obs, actions)), /inside noGrad/);
  for (const z of [g, obs, actions, x, x.grad!]) z.dispose();
  critic.dispose();
});

t('gradClip scales the gradients Adam sees: a tiny clip norm leaves the first step far below lr', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  const batch = upload(randomHostBatch(r, 16, 3, 2));
  const moved: number[] = [];
  for (const gradClip of [null, 1e-12]) {
    const critic = new IQLCritic(3, 2, { hidden: [8], lr: 0.01, gradClip }, { seed: 4 });
    const params = [...critic.q.parameters(), ...critic.v.parameters()];
    const before = await readAll(params);
    await train(critic, batch, 1);
    const after = await readAll(params);
    moved.push(Math.max(...after.map((a, k) => Math.max(...a.map((x, i) => Math.abs(x - before[k]![i]!))))));
    critic.dispose();
  }
  // Adam's first step is lr sign(g) for |g| >> eps; a gradient norm of 1e-12 drowns in eps = 1e-8
  assert.ok(moved[0]! > 0.5 * 0.01 && moved[1]! < 1e-5, `largest parameter change without / with clip: ${moved}`);
  disposeBatch(batch);
});

t('modules() names the networks for checkpoints; config validation', () => {
  const critic = new IQLCritic(3, 2, { hidden: [4] }, { seed: 1 });
  assert.equal(Object.keys(critic.modules()), ['q', 'qTarget', 'v']);
  assert.equal(critic.config.discount, 0.99);
  assert.equal(critic.config.expectile, 0.7);
  assert.equal(critic.config.tau, 0.005);
  assert.throws(() => new IQLCritic(3, 2, { expectile: 1 }), /expectile must be in \(0, 1\)/);
  assert.throws(() => new IQLCritic(3, 2, { gradClip: 0 }), /gradClip/);
  const dtql = new IQLCritic(3, 2, { ...IQL_DTQL, hidden: [4] }, { seed: 1 });
  assert.ok(dtql.q.namedParameters().some((e) => e.name === 'q1.norms.0.weight'), 'DTQL Q has LayerNorm');
  assert.not.ok(dtql.v.namedParameters().some((e) => e.name.includes('norms')), 'DTQL V has none');
  dtql.setLR(1e-4);
  assert.is(dtql.qOptimizer.lr, 1e-4);
  assert.is(dtql.vOptimizer.lr, 1e-4);
  dtql.dispose();
  critic.dispose();
});

// ---- the AWR actor ----

t('AWR actor: deterministic action -> weighted mean of the data actions; Gaussian mean and log-std likewise', async () => {
  const states = [[1, 0], [0, 1]];
  // per state: (action, advantage); weights min(exp(3 adv), 100)
  const data: [number, number][][] = [
    [[0.5, 0.2], [-0.2, -0.4], [0.1, 0.0]],
    [[-0.6, 0.1], [0.3, 0.0], [0.8, -1.0], [-0.1, 2.0]],
  ];
  const obs: number[] = [];
  const act: number[] = [];
  const adv: number[] = [];
  const stateOf: number[] = [];
  data.forEach((rows, k) =>
    rows.forEach(([a, w]) => {
      obs.push(...states[k]!);
      act.push(a);
      adv.push(w);
      stateOf.push(k);
    }),
  );
  const B = adv.length;
  const weight = adv.map((x) => Math.min(Math.exp(3 * x), 100));
  const means = data.map((_, k) => {
    let sw = 0;
    let sa = 0;
    stateOf.forEach((s, i) => {
      if (s !== k) return;
      sw += weight[i]!;
      sa += weight[i]! * act[i]!;
    });
    return sa / sw;
  });
  const [o, a, w] = [tensor(obs, [B, 2]), tensor(act, [B, 1]), tensor(adv, [B, 1])];
  for (const policy of ['deterministic', 'gaussian'] as const) {
    const actor = new AWRActor(2, 1, { policy, hidden: [16], lr: 1e-2 }, { seed: 9 });
    for (let s = 0; s < 400; s++) actor.update(o, a, w).dispose();
    const got = await computeOne(() => actor.act(o));
    allClose(got, stateOf.map((k) => means[k]!), 0, 3e-3, `${policy} action = weighted mean`);
    if (policy === 'gaussian') {
      // the shared log-std's optimum: half the log of the weighted mean squared deviation from each state's mean
      let sw = 0;
      let sd = 0;
      stateOf.forEach((k, i) => {
        sw += weight[i]!;
        sd += weight[i]! * (act[i]! - means[k]!) ** 2;
      });
      const logStd = await read(actor.policy.logStd!);
      // the log-std learns more slowly than the mean (Adam steps of ~lr)
      allClose(logStd, [0.5 * Math.log(sd / sw)], 0, 0.05, 'log-std');
      assert.equal(Object.keys(actor.modules()), ['actor']);
    }
    actor.dispose();
  }
  for (const x of [o, a, w]) x.dispose();
});

// ---- data ----

t('Hopper fixture: 200 steps of a small critic from the replay store keep losses finite; the Q loss falls', async () => {
  const data = await readD4RL(FIXTURE, { expect: { obsDim: 11, actDim: 3 } });
  const raw = qlearningDataset(data);
  const transitions = normalizeTransitions(raw, observationStats(raw.observations, raw.obsDim));
  const store = ReplayStore.fromTransitions(transitions);
  const gen = new Generator(7);
  const critic = new IQLCritic(11, 3, { hidden: [64, 64] }, { seed: 2 });
  const vLosses: number[] = [];
  const qLosses: number[] = [];
  for (let step = 1; step <= 200; step++) {
    const { vLoss, qLoss } = tidy(() => critic.update(store.sample(256, gen)));
    if (step % 25 === 0) {
      vLosses.push(await vLoss.item());
      qLosses.push(await qLoss.item());
    }
    vLoss.dispose();
    qLoss.dispose();
  }
  assert.ok([...vLosses, ...qLosses].every(Number.isFinite), `finite losses: v ${vLosses} q ${qLosses}`);
  const early = qLosses[0]!;
  const late = (qLosses.at(-1)! + qLosses.at(-2)!) / 2;
  assert.ok(late < 0.1 * early, `Q loss falls: ${qLosses.map((x) => x.toPrecision(3)).join(' ')}`);
  // V follows the growing Q: its loss stays small relative to the Q scale
  assert.ok(Math.max(...vLosses) < 0.1, `V loss ${vLosses.map((x) => x.toPrecision(3)).join(' ')}`);
  critic.dispose();
  store.dispose();
});

t.run();
