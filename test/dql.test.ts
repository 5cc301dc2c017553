// Diffusion-QL: the policy gradient through the reverse chain against an unrolled autograd reference and
// finite differences, training on tiny settings (losses fall, gradients finite), and bitwise resume across the
// EMA step variants.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allClose, freshSeed, gpu, randn, rng } from './helpers.ts';
import { backward, noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/host-rng.ts';
import { add, clamp, mul, scale, sub } from '../engine/ops/elementwise.ts';
import { sum } from '../engine/ops/reduce.ts';
import { Generator } from '../engine/random.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { ReplayStore } from '../datasets/replay.ts';
import { DiscreteDiffusion } from '../algorithms/diffusion/models.ts';
import { DQLNoiseNet } from '../algorithms/diffusion/networks.ts';
import { ddpmSample } from '../algorithms/diffusion/samplers.ts';
import { DiscreteSchedule } from '../algorithms/diffusion/schedules.ts';
import { loadCheckpoint, readCheckpointInfo } from '../algorithms/common/run-files.ts';
import { runPhase } from '../algorithms/common/phase.ts';
import { selectAction, trainPhase, type TargetCritic } from '../algorithms/common/diffusion-policy.ts';
import type { BehaviorModel } from '../algorithms/diffusion/behavior.ts';
import { makeModels, taskConfig, type DqlConfig, type DqlModels } from '../algorithms/dql.ts';
import { allFinite, parameterValues, quietContext, recorder, series, syntheticTransitions } from './offline-fixtures.ts';

const t = suite('dql');
t.before(gpu);

let scratch = '';
t.before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'wd-dql-'));
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

function tinyConfig(over: Partial<DqlConfig> = {}): DqlConfig {
  return { ...taskConfig('pendulum-quick'), actorHidden: 32, criticHidden: [32, 32], batch: 128, lr: 3e-3, criticLr: 3e-3, logEvery: 10, checkpointEvery: 1000, ...over };
}

/** The chain unrolled with elementwise ops (clamp, scale, add) drawing the same noise as ddpmSample. */
function unrolledChain(d: DiscreteDiffusion, obs: Tensor, rows: number, actDim: number, gen: Generator): Tensor {
  const s = d.schedule;
  const logVar = s.posteriorLogVariance('dql');
  let x = gen.normal([rows, actDim]);
  for (let k = s.steps - 1; k >= 0; k--) {
    const eps = d.epsAtStep(x, k, obs);
    let a0 = sub(scale(x, 1 / s.sqrtAlphaBars[k]!), scale(eps, s.sqrtOneMinusAlphaBars[k]! / s.sqrtAlphaBars[k]!));
    if (d.maxAction !== null) a0 = clamp(a0, -d.maxAction, d.maxAction);
    const mean = add(scale(a0, s.posteriorMeanCoef1[k]!), scale(x, s.posteriorMeanCoef2[k]!));
    x = k > 0 ? add(mean, scale(gen.normal([rows, actDim]), Math.exp(0.5 * logVar[k]!))) : mean;
  }
  return x;
}

t('the policy gradient through the reverse chain equals the unrolled chain\'s autograd and finite differences', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  for (const [rows, obsDim, actDim, T, maxAction] of [[5, 3, 2, 5, 1], [17, 2, 3, 3, 1], [4, 2, 1, 7, null]] as const) {
    const net = new DQLNoiseNet(obsDim, actDim, { hidden: 8, depth: 2, rng: new HostRng(seed) });
    const d = new DiscreteDiffusion(net, DiscreteSchedule.vp(T), { maxAction, logVarMode: 'dql' });
    const group = net.paramGroup();
    const obs = tensor(randn(rows * obsDim, r), [rows, obsDim]);
    const w = tensor(randn(rows * actDim, r), [rows, actDim]);
    const objective = (chain: (gen: Generator) => Tensor) => {
      group.zeroGrad();
      const out = tidy(() => {
        const a = chain(new Generator(seed + 1));
        const f = sum(mul(a, w));
        backward(f);
        return { a, f };
      });
      return out;
    };
    const fused = objective((gen) => ddpmSample(d, obs, { batch: rows, actionDim: actDim, generator: gen, logVarMode: 'dql', withGrad: true }));
    const gFused = await group.grads.read();
    const ref = objective((gen) => unrolledChain(d, obs, rows, actDim, gen));
    const gRef = await group.grads.read();
    const what = `seed ${seed} rows ${rows} act ${actDim} T ${T} max ${maxAction}`;
    allClose(await fused.a.read(), await ref.a.read(), 1e-5, 1e-6, `${what}: samples`);
    allClose(gFused, gRef, 1e-4, 1e-5, `${what}: gradients`);
    assert.ok(gFused.some((g) => g !== 0), `${what}: some gradient`);
    // central differences of the f32 objective on a few parameters (tolerance for f32 rounding)
    if (maxAction === null) {
      const values = await group.values.read();
      const f = async (v: Float32Array) => {
        group.values.set(v);
        const out = tidy(() => noGrad(() => sum(mul(ddpmSample(d, obs, { batch: rows, actionDim: actDim, generator: new Generator(seed + 1), logVarMode: 'dql' }), w))));
        const x = (await out.read())[0]!;
        out.dispose();
        return x;
      };
      const idx = group.entries.flatMap((e, i) => [group.offsets[i]!, group.offsets[i]! + e.tensor.size - 1]).slice(0, 8);
      for (const i of idx) {
        const h = 1e-2;
        const plus = Float32Array.from(values);
        plus[i]! += h;
        const minus = Float32Array.from(values);
        minus[i]! -= h;
        const fd = ((await f(plus)) - (await f(minus))) / (2 * h);
        assert.ok(Math.abs(fd - gFused[i]!) <= 2e-3 + 2e-2 * Math.abs(fd), `${what}: parameter ${i}: chain gradient ${gFused[i]} vs finite difference ${fd}`);
      }
      group.values.set(values);
    }
    for (const x of [fused.a, fused.f, ref.a, ref.f, obs, w]) x.dispose();
  }
});

t('training on tiny settings: critic and behaviour-cloning losses fall, gradients finite, Q of the policy rises', async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(2048, obsDim, actDim, 7, 10));
  const cfg = tinyConfig({ trainSteps: 120, logEvery: 20, emaStart: 40 });
  const log = recorder();
  const m = makeModels(obsDim, actDim, cfg);
  const states = store.sample(128, new Generator(99)).obs;
  const meanQ = async () => {
    const q = tidy(() => noGrad(() => m.critic.q.min(states, m.actor.model.sample(states, 1, new Generator(3), { sampler: 'ddpm' }))));
    const v = Array.from(await q.read());
    q.dispose();
    return v.reduce((x, y) => x + y, 0) / v.length;
  };
  await runPhase(trainPhase(m, cfg, store, join(scratch, 'tiny.safetensors')), quietContext(cfg, log));
  const bc = series(log.records, 'train', 'bcLoss');
  const ql = series(log.records, 'train', 'qLoss');
  assert.ok(bc[bc.length - 1]! < 0.8 * bc[0]!, `bc loss ${bc.map((x) => x.toFixed(3))}`);
  assert.ok(ql[ql.length - 1]! < 0.8 * ql[0]!, `critic loss ${ql.map((x) => x.toFixed(3))}`);
  await allFinite(m.actor.optimizer.group, 'policy');
  await allFinite(m.critic.optimizer.group, 'critic');
  // the policy's samples score higher under the trained critic than the data's actions on average
  const q = await meanQ();
  const qData = tidy(() => noGrad(() => m.critic.q.min(states, store.sample(128, new Generator(99)).actions)));
  const qd = Array.from(await qData.read());
  qData.dispose();
  const mqData = qd.reduce((x, y) => x + y, 0) / qd.length;
  assert.ok(q > mqData, `Q of policy samples ${q.toFixed(4)} vs data actions ${mqData.toFixed(4)}`);
  states.dispose();
  m.dispose();
  store.dispose();
});

t('a resumed run takes exactly the steps of an uninterrupted one (EMA copy and update variants, max-Q backup)', async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(1024, obsDim, actDim, 8));
  const cfg = tinyConfig({ trainSteps: 7, logEvery: 2, checkpointEvery: 2, seed: 3, emaEvery: 2, emaStart: 3, maxQBackup: true, maxQSamples: 3, gradClip: 1 });
  const build = (path: string) => {
    const m = makeModels(obsDim, actDim, cfg);
    return { m, run: trainPhase(m, cfg, store, path) };
  };
  const whole = build(join(scratch, 'whole.safetensors'));
  await runPhase(whole.run, quietContext(cfg));
  const path = join(scratch, 'part.safetensors');
  const first = build(path);
  await runPhase({ ...first.run, steps: 4 }, quietContext(cfg));
  assert.is(readCheckpointInfo(path).step, 4);
  const second = build(path);
  const info = loadCheckpoint(path, second.run.parts);
  await runPhase(second.run, quietContext(cfg), info.step);
  const modules = (m: DqlModels) => [m.actor.model.net, m.actor.target!.net, m.critic.q, m.critic.qTarget];
  for (let k = 0; k < 4; k++) {
    const a = await parameterValues(modules(whole.m)[k]!);
    assert.equal(a, await parameterValues(modules(second.m)[k]!), `module ${k} of the resumed run equals the uninterrupted run bitwise`);
    assert.not.equal(a, await parameterValues(modules(first.m)[k]!), `steps 5-7 changed module ${k}`);
  }
  for (const b of [whole, first, second]) b.m.dispose();
  store.dispose();
});

t('the deployed policy picks by the target critic: among the candidates, the one with the highest Q', async () => {
  const S = 16;
  const n = 6;
  // candidate j of state i is the action (j - 2.5) * 0.3 (+ a per-state shift); Q = 100 a favours the largest
  const candidates = Float32Array.from({ length: S * n }, (_, r) => ((r % n) - 2.5) * 0.3 + 0.01 * Math.floor(r / n));
  const shuffled = Float32Array.from(candidates, (_, r) => candidates[Math.floor(r / n) * n + ((r % n) * 5) % n]!);
  const policy = { sample: () => tensor(shuffled, [S * n, 1]) } as unknown as BehaviorModel;
  const critic = { qTarget: { min: (_s: Tensor, a: Tensor) => scale(a, 100) } } as unknown as TargetCritic;
  const picked = await tidy(() => selectAction(policy, critic, tensor(new Float32Array(S * 2), [S, 2]), new Generator(3), { candidates: n, sampler: 'ddpm', steps: 5 })).read();
  for (let i = 0; i < S; i++) assert.ok(Math.abs(picked[i]! - (2.5 * 0.3 + 0.01 * i)) < 1e-6, `state ${i}: picked ${picked[i]}`);
});

t.run();
