import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { allClose, freshSeed, gpu, gradCheck, randn, randu, rng } from './helpers.ts';
import { noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/host-rng.ts';
import { Module } from '../engine/nn.ts';
import { add, mul, scale } from '../engine/ops/elementwise.ts';
import { reshape, slice } from '../engine/ops/shape.ts';
import { recordStep, type RecordedStep } from '../engine/record.ts';
import { Generator } from '../engine/random.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { ReplayStore } from '../datasets/replay.ts';
import { TwinQ } from '../algorithms/common/critic-nets.ts';
import { DiscreteDiffusion, type NoiseNet } from '../algorithms/diffusion/models.ts';
import { DiscreteSchedule } from '../algorithms/diffusion/schedules.ts';
import {
  SDACAgent, SDAC_PAPER_AGENT, Temperature, energyWeights, entropyEstimate, linearDecayLR, reverseSamples, sampleActions, sdacUpdateVariant,
  temperatureLoss, weightedScoreLoss, type SDACAgentConfig,
} from '../algorithms/sdac/agent.ts';
import { sdacPreset } from '../algorithms/sdac/presets.ts';
import { onlineComparison, readOnlineRun } from '../scripts/online-curves.ts';
import { SDACChainModel, SDACNoiseNet, chainFirstLayer } from '../algorithms/sdac/networks.ts';

const t = suite('sdac');
t.before(gpu);

const clip1 = (v: number) => Math.min(1, Math.max(-1, v));

t('reverse samples: a~ = sqrt(abar_k) a + sqrt(1 - abar_k) n1 and a0_j = clip(a~/sqrt(abar_k) - sqrt(1/abar_k - 1) n_j) in float64', async () => {
  const r = rng(freshSeed());
  const schedule = DiscreteSchedule.sdac(20, 0.8);
  for (const [B, A, M] of [[1, 1, 1], [3, 2, 5], [17, 3, 64], [2, 6, 7]] as const) {
    const a = randu(B * A, r, -1, 1);
    const gen = new Generator(Math.floor(r() * 1e9));
    const rs = reverseSamples(tensor(a, [B, A]), schedule, gen, M);
    const read = async (x: Tensor) => (await x.read()) as Float32Array;
    const [noisy, n1, time, n2, a0, alpha, sigma] = [
      await read(rs.noisy), await read(rs.forwardNoise), await read(rs.time), await read(rs.noise), await read(rs.actions), await read(rs.alpha), await read(rs.sigma),
    ];
    const wantNoisy: number[] = [];
    const wantA0: number[] = [];
    for (let b = 0; b < B; b++) {
      const k = time[b]!;
      assert.ok(Number.isInteger(k) && k >= 0 && k < 20, `step ${k}`);
      const sa = schedule.sqrtAlphaBars[k]!;
      const ss = schedule.sqrtOneMinusAlphaBars[k]!;
      allClose([alpha[b]!, sigma[b]!], [sa, ss], 1e-6, 1e-7, 'schedule entries');
      for (let d = 0; d < A; d++) wantNoisy.push(sa * a[b * A + d]! + ss * n1[b * A + d]!);
      for (let j = 0; j < M; j++) {
        for (let d = 0; d < A; d++) {
          const x = wantNoisy[b * A + d]!;
          const abar = schedule.alphaBars[k]!;
          wantA0.push(clip1(x / Math.sqrt(abar) - Math.sqrt(1 / abar - 1) * n2[(b * M + j) * A + d]!));
        }
      }
    }
    allClose(noisy, wantNoisy, 1e-5, 1e-6, `a~ B=${B} A=${A}`);
    allClose(a0, wantA0, 1e-4, 1e-5, `a0 B=${B} A=${A} M=${M}`);
    assert.ok(a0.some((v) => Math.abs(v) === 1) || B * M * A < 20, 'some a0 clipped');
    for (const x of Object.values(rs)) x.dispose();
  }
});

t('energy weights: softmax over each state\'s M candidates of min Q * energy; weighted score loss and its gradient', async () => {
  const r = rng(freshSeed());
  for (const [B, A, M] of [[1, 1, 1], [3, 2, 5], [17, 3, 64], [5, 1, 33]] as const) {
    const q = randn(B * M, r, 3);
    const energy = 5 / 1.7;
    const w = await tidy(() => energyWeights(tensor(q, [B * M, 1]), M, tensor([energy], [1]))).read();
    const want: number[] = [];
    for (let b = 0; b < B; b++) {
      const logits = Array.from({ length: M }, (_, j) => q[b * M + j]! * energy);
      const top = Math.max(...logits);
      const e = logits.map((l) => Math.exp(l - top));
      const total = e.reduce((s, v) => s + v, 0);
      want.push(...e.map((v) => v / total));
    }
    allClose(w, want, 1e-5, 1e-7, `weights B=${B} M=${M}`);

    const eps = randn(B * A, r);
    const noise = randn(B * M * A, r);
    const weights = Float32Array.from(want);
    const ref = (e: ArrayLike<number>) => {
      let s = 0;
      for (let b = 0; b < B; b++) for (let j = 0; j < M; j++) for (let d = 0; d < A; d++) s += weights[b * M + j]! * (e[b * A + d]! - noise[(b * M + j) * A + d]!) ** 2;
      return [s / (B * M * A)];
    };
    const loss = await tidy(() => weightedScoreLoss(tensor(eps, [B, A]), tensor(noise, [B * M, A]), tensor(weights, [B * M, 1]), M)).read();
    allClose(loss, ref(eps), 1e-5, 1e-7, `loss B=${B} A=${A} M=${M}`);
    await gradCheck(
      (e) => weightedScoreLoss(e, tensor(noise, [B * M, A]), tensor(weights, [B * M, 1]), M),
      (e) => ref(e),
      [{ data: eps, shape: [B, A] }],
      { what: `weightedScoreLoss B=${B} M=${M}` },
    );
  }
});

t('entropy estimate and temperature step: H = d/2 ln(2 pi e (0.1 alpha)^2), one Adam step of -log alpha (-H + target)', async () => {
  for (const [alpha0, d] of [[5, 1], [0.3, 6], [1.7, 3]] as const) {
    const temp = new Temperature(alpha0);
    const target = -0.9 * d;
    const h = await tidy(() => entropyEstimate(temp.logAlpha, d, 0.1)).read();
    const wantH = 0.5 * d * Math.log(2 * Math.PI * Math.E * (0.1 * alpha0) ** 2);
    allClose(h, [wantH], 1e-5, 1e-6, 'entropy');
    const { AdamW } = await import('../engine/optim.ts');
    const opt = new AdamW(temp.paramGroup(), { lr: 7e-3 });
    const { backward } = await import('../engine/autograd.ts');
    const lossValue = await tidy(() => {
      const { loss } = temperatureLoss(temp.logAlpha, d, 0.1, target);
      opt.group.zeroGrad();
      backward(loss);
      opt.step();
      return noGrad(() => scale(loss, 1));
    }).read();
    const g = wantH - target;
    allClose(lossValue, [Math.log(alpha0) * g], 1e-5, 1e-6, 'loss');
    allClose(await temp.logAlpha.grad!.read(), [g], 1e-5, 1e-6, 'gradient H - target');
    // the first Adam step moves by lr g / (|g| + eps)
    allClose(await temp.logAlpha.read(), [Math.log(alpha0) - (7e-3 * g) / (Math.abs(g) + 1e-8)], 1e-6, 1e-7, 'log alpha after one step');
    opt.dispose();
  }
});

/** eps = 0.3 x + 0.05 k + 0.2 s_0, so the host can run the same chain in float64. */
class LinearNoiseNet extends Module implements NoiseNet {
  forward(x: Tensor, time: Tensor, cond: Tensor | null): Tensor {
    const rows = x.shape[0]!;
    return add(add(scale(x, 0.3), scale(reshape(time, [rows, 1]), 0.05)), scale(slice(cond!, 0, 1, 1), 0.2));
  }
}

t('sampler: 0.5 N(0, I) start, DDPM steps with the data prediction clipped at every step, best particle by min Q, exploration noise', async () => {
  const r = rng(freshSeed());
  const T = 20;
  const schedule = DiscreteSchedule.sdac(T, 0.8);
  const model = new DiscreteDiffusion(new LinearNoiseNet(), schedule, { maxAction: 1, logVarMode: 'dql' });
  const logVar = schedule.posteriorLogVariance('dql');
  for (const [B, S, A, P, noiseStd] of [[1, 1, 1, 1, 0], [3, 4, 2, 5, 0.37], [17, 3, 3, 4, 0]] as const) {
    const obs = randn(B * S, r);
    const critic = new TwinQ(S, A, { hidden: [16, 16], act: 'mish', rng: new HostRng(Math.floor(r() * 1e9)) });
    const seed = Math.floor(r() * 1e9);
    const gen = new Generator(seed);
    gen.counter = 7;
    const got = await tidy(() => sampleActions(() => model, critic, tensor(obs, [B, S]), gen, P, noiseStd > 0 ? tensor([noiseStd], [1]) : null)).read();
    // the same draws, in the sampler's order
    const draws = new Generator(seed);
    draws.counter = 7;
    const R = B * P;
    const start = await draws.normal([R, A], 0, 0.5).read();
    const z: Float32Array[] = [];
    for (let k = T - 1; k >= 1; k--) z.push((await draws.normal([R, A]).read()) as Float32Array);
    const x = Float64Array.from(start);
    let clipped = 0;
    for (let k = T - 1, zi = 0; k >= 0; k--) {
      const abar = schedule.alphaBars[k]!;
      for (let i = 0; i < R; i++) {
        const s0 = obs[Math.floor(i / P) * S]!;
        for (let d = 0; d < A; d++) {
          const xi = x[i * A + d]!;
          const eps = 0.3 * xi + 0.05 * k + 0.2 * s0;
          const raw = xi / Math.sqrt(abar) - Math.sqrt(1 / abar - 1) * eps;
          if (Math.abs(raw) > 1) clipped++;
          const mean = schedule.posteriorMeanCoef1[k]! * clip1(raw) + schedule.posteriorMeanCoef2[k]! * xi;
          x[i * A + d] = mean + (k > 0 ? Math.exp(0.5 * logVar[k]!) * z[zi]![i * A + d]! : 0);
        }
      }
      if (k > 0) zi++;
    }
    assert.ok(clipped > 0, 'the chain clips some data predictions');
    let want: number[] = Array.from(x);
    if (P > 1) {
      const states = Float32Array.from({ length: R * S }, (_, i) => obs[Math.floor(i / S / P) * S + (i % S)]!);
      const q = await tidy(() => noGrad(() => critic.min(tensor(states, [R, S]), tensor(Float32Array.from(x), [R, A])))).read();
      want = [];
      for (let b = 0; b < B; b++) {
        let best = 0;
        for (let j = 1; j < P; j++) if (q[b * P + j]! > q[b * P + best]!) best = j;
        want.push(...Array.from(x.subarray((b * P + best) * A, (b * P + best + 1) * A)));
      }
      // the argmax draws nothing; the exploration noise comes next
    }
    if (noiseStd > 0) {
      const n = await draws.normal([B, A]).read();
      want = want.map((v, i) => v + noiseStd * n[i]!);
    }
    allClose(got, want, 1e-4, 1e-5, `B=${B} A=${A} P=${P}`);
  }
});

t('chain first layer: mish(base + stepShare[k] + x W[:, off:off+A]^T) against float64; the chain model equals the network', async () => {
  const r = rng(freshSeed());
  const mish = (z: number) => z * Math.tanh(Math.log1p(Math.exp(-Math.abs(z))) + Math.max(z, 0));
  for (const [R, A, H, S, T] of [[1, 1, 1, 1, 1], [3, 2, 5, 4, 3], [17, 6, 64, 11, 20], [257, 3, 33, 17, 5], [257, 3, 36, 17, 5], [1, 1, 4, 1, 1]] as const) {
    const inF = S + A + 16;
    const x = randn(R * A, r);
    const w = randn(H * inF, r, 0.5);
    const base = randn(R * H, r);
    const share = randn(T * H, r);
    const k = T - 1;
    const got = await tidy(() => chainFirstLayer(tensor(x, [R, A]), tensor(w, [H, inF]), tensor(base, [R, H]), tensor(share, [T, H]), k, S)).read();
    const want: number[] = [];
    for (let i = 0; i < R; i++) {
      for (let h = 0; h < H; h++) {
        let z = base[i * H + h]! + share[k * H + h]!;
        for (let d = 0; d < A; d++) z += x[i * A + d]! * w[h * inF + S + d]!;
        want.push(mish(z));
      }
    }
    allClose(got, want, 1e-5, 1e-6, `R=${R} A=${A} H=${H}`);
  }
  const schedule = DiscreteSchedule.sdac(20, 0.8);
  for (const [R, S, A] of [[1, 1, 1], [7, 11, 3]] as const) {
    const net = new SDACNoiseNet(S, A, { hidden: 32, depth: 3, rng: new HostRng(Math.floor(r() * 1e9)) });
    const cond = tensor(randn(R * S, r), [R, S]);
    const times = tensor(Float32Array.from({ length: 20 }, (_, i) => i), [20]);
    const chain = new SDACChainModel(net, schedule, 1, cond, times);
    const x = tensor(randn(R * A, r), [R, A]);
    for (const k of [0, 7, 19]) {
      const got = await tidy(() => chain.epsAtStep(x, k, cond)).read();
      const want = await tidy(() => noGrad(() => net.forward(x, tensor(new Float32Array(R).fill(k), [R]), cond))).read();
      allClose(got, want, 1e-4, 1e-5, `chain vs network R=${R} k=${k}`);
    }
  }
});

t('update variants follow the code\'s delays; the policy lr follows optax.linear_schedule', () => {
  const cfg = { delay: 2, alphaEvery: 250 };
  assert.equal([0, 1, 2, 3, 248, 249, 250, 251, 500].map((u) => sdacUpdateVariant(cfg, u)), [2, 0, 1, 0, 1, 0, 2, 0, 2]);
  const lr = linearDecayLR(3e-4, 3e-5, 25_000, 50_000);
  allClose([0, 25_000, 50_000, 75_000, 1e6].map(lr), [3e-4, 3e-4, 1.65e-4, 3e-5, 3e-5], 1e-9, 1e-12, 'schedule');
  const hopper = sdacPreset('hopper', 'default');
  assert.is(hopper.particles, 32);
  assert.is(hopper.reverseSamples, 64);
  assert.is(hopper.updatesPerStep, 0.2);
  assert.is(hopper.numEnvs, 5);
  assert.is(hopper.warmupSteps, 30_000);
});

const TINY: SDACAgentConfig = {
  ...SDAC_PAPER_AGENT,
  seed: 3,
  batch: 5,
  T: 4,
  actorHidden: 8,
  actorDepth: 2,
  criticHidden: [8, 8],
  particles: 3,
  reverseSamples: 5,
  alphaEvery: 4,
  lrDecayBegin: 2,
  lrDecaySteps: 4,
};

function filledStore(obsDim: number, actDim: number, n: number, seed: number): ReplayStore {
  const r = rng(seed);
  const store = ReplayStore.empty(64, obsDim, actDim);
  store.add({
    observations: randn(n * obsDim, r), actions: randu(n * actDim, r, -1, 1), rewards: randn(n, r),
    nextObservations: randn(n * obsDim, r), dones: Float32Array.from({ length: n }, () => (r() < 0.2 ? 1 : 0)),
  });
  return store;
}

async function allParameters(agent: SDACAgent): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const m of Object.values(agent.parts.modules)) for (const e of m.namedTensors()) out.push((await e.tensor.read()) as Float32Array);
  for (const opt of Object.values(agent.parts.optimizers!)) out.push((await opt.m.read()) as Float32Array, (await opt.v.read()) as Float32Array);
  return out;
}

t('replayed updates (every variant) leave bit-identical parameters, optimiser states and losses to eager ones', async () => {
  const obsDim = 3;
  const actDim = 2;
  const eager = new SDACAgent(obsDim, actDim, TINY);
  const replayed = new SDACAgent(obsDim, actDim, TINY);
  const storeA = filledStore(obsDim, actDim, 40, 11);
  const storeB = filledStore(obsDim, actDim, 40, 11);
  const updates = 13;
  const lossesA: number[][] = [];
  for (let u = 0; u < updates; u++) {
    const v = eager.updateVariant(u);
    const vals = await tidy(() => {
      const out = eager.update(storeA, v);
      return Promise.all(Object.values(out).map((x) => x.read()));
    });
    lossesA.push(vals.map((x) => x[0]!));
  }
  const seen = new Set<number>();
  const recs = new Map<number, RecordedStep<Record<string, Tensor>>>();
  const lossesB: number[][] = [];
  for (let u = 0; u < updates; u++) {
    const v = replayed.updateVariant(u);
    let vals: Float32Array[];
    if (!seen.has(v)) {
      seen.add(v);
      vals = await tidy(() => Promise.all(Object.values(replayed.update(storeB, v)).map((x) => x.read()))) as Float32Array[];
    } else if (!recs.has(v)) {
      const rec = recordStep(() => replayed.update(storeB, v));
      recs.set(v, rec);
      vals = await Promise.all(Object.values(rec.outputs).map((x) => x.read())) as Float32Array[];
    } else {
      vals = await recs.get(v)!.replayAndRead();
    }
    lossesB.push(vals.map((x) => x[0]!));
  }
  assert.equal(recs.size, 3, 'every variant was replayed');
  assert.equal(lossesB, lossesA, 'losses');
  const [pa, pb] = [await allParameters(eager), await allParameters(replayed)];
  assert.is(pa.length, pb.length);
  pa.forEach((a, i) => assert.equal(Array.from(pb[i]!), Array.from(a), `tensor ${i}`));
  assert.is(replayed.policyOpt.stepCount, eager.policyOpt.stepCount);
  assert.is(eager.policyOpt.stepCount, 7);
  assert.is(eager.temperatureOpt.stepCount, 4);
  const stats = await eager.stats();
  assert.ok(stats.alpha! < 5, `alpha moved down from 5 (${stats.alpha})`);
  for (const r of recs.values()) r.dispose();
  storeA.dispose();
  storeB.dispose();
  eager.dispose();
  replayed.dispose();
});

t('act: actions in [-1, 1] when exploring, deterministic policy without noise', async () => {
  const agent = new SDACAgent(3, 2, TINY);
  const obs = tensor(randn(6, rng(freshSeed())), [2, 3]);
  const a = await tidy(() => agent.act(obs, true)).read();
  assert.is(a.length, 4);
  assert.ok(a.every((v) => v >= -1 && v <= 1));
  const b = await tidy(() => agent.act(obs, false)).read();
  assert.ok(b.every((v) => Number.isFinite(v) && v >= -1 && v <= 1));
  agent.dispose();
});

t('learns a contextual bandit: the deterministic policy moves to argmax_a r(s, a) = 0.6 tanh(2 s_0), which the energy weights do', async () => {
  const best = (s0: number) => 0.6 * Math.tanh(2 * s0);
  const r = rng(12345);
  const n = 2048;
  const obs = randn(n * 2, r);
  const actions = randu(n, r, -1, 1);
  const rewards = Float32Array.from({ length: n }, (_, i) => -5 * (actions[i]! - best(obs[2 * i]!)) ** 2);
  const store = ReplayStore.empty(n, 2, 1);
  store.add({ observations: obs, actions, rewards, nextObservations: obs, dones: new Float32Array(n).fill(1) });
  const probe = randn(64 * 2, r);
  // mean |a - a*| of the deterministic policy before and after 400 updates
  const train = async (energyScale: number, particles: number) => {
    const cfg: SDACAgentConfig = {
      ...TINY, seed: 5, batch: 64, T: 10, actorHidden: 32, actorDepth: 2, criticHidden: [32, 32], particles, reverseSamples: 16,
      actorLr: 3e-3, actorLrEnd: 3e-3, criticLr: 3e-3, alphaEvery: 2, alphaLr: 0.05, energyScale,
    };
    const agent = new SDACAgent(2, 1, cfg);
    const error = async () => {
      const a = await tidy(() => agent.act(tensor(probe, [64, 2]), false)).read();
      let e = 0;
      for (let i = 0; i < 64; i++) e += Math.abs(a[i]! - best(probe[2 * i]!));
      return e / 64;
    };
    const before = await error();
    const recs = new Map<number, RecordedStep<Record<string, Tensor>>>();
    for (let u = 0; u < 400; u++) {
      const v = agent.updateVariant(u);
      const rec = recs.get(v);
      if (rec) rec.replay();
      else if (u < 2) tidy(() => void agent.update(store, v));
      else recs.set(v, recordStep(() => agent.update(store, v)));
    }
    const after = await error();
    const { alpha } = await agent.stats();
    for (const rec of recs.values()) rec.dispose();
    agent.dispose();
    return { before, after, alpha: alpha! };
  };
  const weighted = await train(TINY.energyScale, 4);
  const single = await train(TINY.energyScale, 1);
  const uniform = await train(0, 1);
  const report = `mean |a - a*|: before ${weighted.before.toFixed(3)}, after ${weighted.after.toFixed(3)} (alpha ${weighted.alpha.toFixed(2)}); ` +
    `one particle: ${single.after.toFixed(3)}, and with uniform weights (energy scale 0) ${uniform.after.toFixed(3)}`;
  assert.ok(weighted.after < 0.45 && weighted.after < weighted.before / 2, report);
  // with one particle the energy weights are the only Q guidance: without them the policy stays nearer the data's
  assert.ok(single.after < 0.9 * uniform.after, report);
  store.dispose();
});

t('online curves: evaluation records of two logs side by side at equal env steps', () => {
  const log = (pts: [number, number][]) =>
    pts.map(([step, mean]) => JSON.stringify({ phase: 'x', step, updates: 1, eval: { mean, std: 1, returns: [mean] } })).join('\n') + '\n{"phase":"x","step":5,"critic":1}\n{"partial';
  const a = readOnlineRun(log([[1000, -1200], [2000, -300]]), { config: JSON.stringify({ algorithm: 'sac', env: 'pendulum', preset: 'default' }) });
  const b = readOnlineRun(log([[2000, -900], [1000, -1300], [3000, -500]]), { summary: JSON.stringify({ references: { 'uniform random': -1366 } }), fallback: 'b' });
  assert.is(a.name, 'SAC pendulum default');
  assert.equal(b.evals.map((e) => e.envSteps), [1000, 2000, 3000]);
  const all = onlineComparison([a, b]);
  assert.equal(all.rows.map((r) => r[0]), [1000, 2000, 3000]);
  assert.equal(all.rows[1], [2000, -300, -900]);
  assert.ok(Number.isNaN(all.rows[2]![1]!));
  assert.ok(all.svg.startsWith('<svg') && all.svg.includes('uniform random'));
  assert.equal(onlineComparison([a, b], { equalSteps: true }).rows.map((r) => r[0]), [1000, 2000]);
});

t.run();
