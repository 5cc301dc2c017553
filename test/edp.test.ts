// EDP: each backbone (TD3, CRR, IQL) on tiny settings (losses fall, gradients finite), the CRR advantage against
// float64, IQL's update order (V, policy, Q), bitwise resume across the target-policy variants, the phase
// runner's per-variant recordings matching eager steps, and the quick preset's per-backbone settings.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu } from './helpers.ts';
import { backward, noGrad } from '../engine/autograd.ts';
import { Generator } from '../engine/random.ts';
import { keep, tidy, type Tensor } from '../engine/tensor.ts';
import { ReplayStore } from '../datasets/replay.ts';
import { loadCheckpoint, readCheckpointInfo } from '../algorithms/common/run-files.ts';
import { runPhase } from '../algorithms/common/phase.ts';
import { trainPhase } from '../algorithms/common/diffusion-policy.ts';
import type { TwinQCritic } from '../algorithms/common/twin-q-critic.ts';
import { zeros } from '../engine/basic.ts';
import { minimum, sub } from '../engine/ops/elementwise.ts';
import { IQLCritic, awrLoss, expectileLoss } from '../algorithms/common/iql.ts';
import { crrAdvantage, makeModels, policyStep, taskConfig, td3Guide, trainStep, type Backbone, type EdpConfig, type EdpModels } from '../algorithms/edp.ts';
import { QUICK_BACKBONE_OVERRIDES } from '../algorithms/edp/presets.ts';
import { allFinite, parameterValues, quietContext, recorder, series, syntheticTransitions } from './offline-fixtures.ts';

const t = suite('edp');
t.before(gpu);

let scratch = '';
t.before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'wd-edp-'));
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

function tinyConfig(backbone: Backbone, over: Partial<EdpConfig> = {}): EdpConfig {
  return {
    ...taskConfig('pendulum-quick', backbone),
    T: 25,
    actorHidden: 32,
    criticHidden: [32, 32],
    batch: 128,
    lr: 3e-3,
    criticLr: 3e-3,
    targetSamplerSteps: 3,
    logEvery: 10,
    checkpointEvery: 1000,
    ...over,
  };
}

t("quick preset: selection at temperature 10 for every backbone, IQL's overrides, the D4RL tasks keep EDP's settings", () => {
  const td3 = taskConfig('pendulum-quick', 'td3');
  for (const backbone of ['td3', 'crr', 'iql'] as const) {
    const cfg = taskConfig('pendulum-quick', backbone);
    assert.is(cfg.backbone, backbone);
    for (const [key, value] of Object.entries(QUICK_BACKBONE_OVERRIDES[backbone] ?? {})) assert.equal(cfg[key as keyof EdpConfig], value, `${backbone} ${key}`);
    assert.is(cfg.selectTemperature, 10);
  }
  const iql = taskConfig('pendulum-quick', 'iql');
  assert.equal([iql.targetTau, iql.guideCoef], [0.1, 0.1]);
  assert.equal([taskConfig('pendulum-quick', 'crr').targetTau, taskConfig('pendulum-quick', 'crr').guideCoef], [td3.targetTau, td3.guideCoef]);
  for (const backbone of ['td3', 'crr', 'iql'] as const) {
    const d4rl = taskConfig('hopper-medium-v2', backbone);
    assert.equal([d4rl.selectTemperature, d4rl.targetTau, d4rl.guideCoef], [undefined, 0.005, 1], `hopper-medium-v2 ${backbone}`);
  }
});

const criticGroups = (m: EdpModels) =>
  m.critic instanceof IQLCritic ? { q: m.critic.qOptimizer.group, v: m.critic.vOptimizer.group } : { q: (m.critic as TwinQCritic).optimizer.group };

for (const backbone of ['td3', 'crr', 'iql'] as const) {
  t(`${backbone}: on tiny settings the diffusion and critic losses fall and gradients are finite`, async () => {
    const obsDim = 3;
    const actDim = 2;
    const store = ReplayStore.fromTransitions(syntheticTransitions(2048, obsDim, actDim, 7, 10));
    const cfg = tinyConfig(backbone, { trainSteps: 100, logEvery: 20, emaStart: 40 });
    const log = recorder();
    const m = makeModels(obsDim, actDim, cfg);
    await runPhase(trainPhase(m, cfg, store, join(scratch, `tiny-${backbone}.safetensors`)), quietContext(cfg, log));
    const dl = series(log.records, 'train', 'diffLoss');
    const ql = series(log.records, 'train', 'qLoss');
    const guide = series(log.records, 'train', 'guide');
    assert.ok(dl[dl.length - 1]! < 0.8 * dl[0]!, `diffusion loss ${dl.map((x) => x.toFixed(3))}`);
    assert.ok(ql[ql.length - 1]! < 0.8 * ql[0]!, `critic loss ${ql.map((x) => x.toFixed(4))}`);
    assert.ok(guide.every(Number.isFinite), `guide ${guide}`);
    // (the TD3 guide's value and direction have their own test below)
    if (backbone !== 'td3') assert.ok(guide[guide.length - 1]! < guide[0]!, `weighted likelihood guide falls: ${guide.map((x) => x.toFixed(3))}`);
    await allFinite(m.actor.optimizer.group, `${backbone}: policy`);
    for (const [name, g] of Object.entries(criticGroups(m))) await allFinite(g, `${backbone}: ${name}`);
    m.dispose();
    store.dispose();
  });
}

t('CRR advantage: min Q(s, a_data) minus the mean min Q over samples around a0Hat, against float64 from the same draws', async () => {
  const obsDim = 2;
  const actDim = 2;
  const cfg = tinyConfig('crr', { crrSamples: 4 });
  const m = makeModels(obsDim, actDim, cfg);
  const critic = m.critic as TwinQCritic;
  const store = ReplayStore.fromTransitions(syntheticTransitions(64, obsDim, actDim, 5));
  const batch = store.sample(5, new Generator(1));
  const a0Hat = new Generator(2).uniform([5, actDim], -1, 1);
  const adv = tidy(() => crrAdvantage(critic, cfg, batch, a0Hat, new Generator(3)));
  // the same draws by hand: noise is the layout of normal([B * n, D]) at the generator's start
  const noise = await new Generator(3).normal([5 * 4, actDim]).read();
  const [obs, acts, a0] = await Promise.all([batch.obs.read(), batch.actions.read(), a0Hat.read()]);
  const qMin = async (o: number[], a: number[], rows: number) => {
    const { tensor } = await import('../engine/tensor.ts');
    const q = tidy(() => noGrad(() => critic.q.min(tensor(o, [rows, obsDim]), tensor(a, [rows, actDim]))));
    const v = Array.from(await q.read());
    q.dispose();
    return v;
  };
  const qData = await qMin(Array.from(obs), Array.from(acts), 5);
  const repObs: number[] = [];
  const around: number[] = [];
  for (let b = 0; b < 5; b++) for (let j = 0; j < 4; j++) {
    for (let d = 0; d < obsDim; d++) repObs.push(obs[b * obsDim + d]!);
    for (let d = 0; d < actDim; d++) around.push(a0[b * actDim + d]! + noise[(b * 4 + j) * actDim + d]!);
  }
  const qAround = await qMin(repObs, around, 20);
  const got = await adv.read();
  for (let b = 0; b < 5; b++) {
    let s = 0;
    for (let j = 0; j < 4; j++) s += qAround[b * 4 + j]!;
    const want = qData[b]! - s / 4;
    assert.ok(Math.abs(got[b]! - want) < 1e-5 + 1e-4 * Math.abs(want), `row ${b}: ${got[b]} vs ${want}`);
  }
  adv.dispose();
  a0Hat.dispose();
  m.dispose();
  store.dispose();
});

t('a resumed TD3 run takes exactly the steps of an uninterrupted one (target copy and EMA variants, gradient clip)', async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(1024, obsDim, actDim, 8));
  const cfg = tinyConfig('td3', { trainSteps: 7, logEvery: 2, checkpointEvery: 2, seed: 3, emaEvery: 2, emaStart: 3, gradClip: 1 });
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
  await runPhase(second.run, quietContext(cfg), loadCheckpoint(path, second.run.parts).step);
  const modules = (m: EdpModels) => [m.actor.model.net, m.actor.target!.net, (m.critic as TwinQCritic).q, (m.critic as TwinQCritic).qTarget];
  for (let k = 0; k < 4; k++) {
    const a = await parameterValues(modules(whole.m)[k]!);
    assert.equal(a, await parameterValues(modules(second.m)[k]!), `module ${k}: resumed equals uninterrupted bitwise`);
    assert.not.equal(a, await parameterValues(modules(first.m)[k]!), `steps 5-7 changed module ${k}`);
  }
  for (const b of [whole, first, second]) b.m.dispose();
  store.dispose();
});

t('runPhase with step variants: recorded and replayed per variant, bit-identical to eager steps', async () => {
  const obsDim = 3;
  const actDim = 1;
  const store = ReplayStore.fromTransitions(syntheticTransitions(1024, obsDim, actDim, 9));
  const cfg = tinyConfig('td3', { trainSteps: 12, logEvery: 3, emaEvery: 3, emaStart: 5 });
  const result: number[][][] = [];
  for (const eager of [false, true]) {
    const m = makeModels(obsDim, actDim, cfg);
    const run = trainPhase(m, cfg, store, join(scratch, `variants-${eager}.safetensors`));
    const seen: number[] = [];
    const variant = run.variant!;
    await runPhase({ ...run, variant: (i) => (seen.push(variant(i)), variant(i)) }, { ...quietContext(cfg), eager });
    assert.equal(seen, [1, 0, 0, 1, 0, 0, 2, 0, 0, 2, 0, 0], 'variants by step');
    result.push([await parameterValues(m.actor.model.net), await parameterValues(m.actor.target!.net), await parameterValues((m.critic as TwinQCritic).q)]);
    m.dispose();
  }
  for (let k = 0; k < 3; k++) assert.equal(result[0]![k], result[1]![k], `module ${k}: replayed equals eager`);
  store.dispose();
});

t("IQL in EDP's order: V steps first and the policy's weights use the updated V", async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(256, obsDim, actDim, 11, 10));
  const cfg = tinyConfig('iql', { seed: 4 });
  const batch = store.sample(64, new Generator(6));
  const zeroLogStd = keep(zeros([actDim]));
  const stepped = makeModels(obsDim, actDim, cfg);
  const terms = tidy(() => (trainStep(stepped, zeroLogStd, batch, new Generator(7), 0).terms as [Tensor, string[]])[0]);
  const [, guide] = await terms.read();
  // the same step by hand on an identical copy: V's step, then the guide at the policy's draws with V after
  // and before that step
  const byHand = makeModels(obsDim, actDim, cfg);
  const critic = byHand.critic as IQLCritic;
  const guides = tidy(() => {
    const awr = (a0Hat: Tensor, adv: Tensor) => awrLoss(a0Hat, batch.actions, adv, { beta: cfg.awrTemperature, maxWeight: cfg.awrMaxWeight, logStd: zeroLogStd });
    const qMin = noGrad(() => minimum(...critic.qTarget.forward(batch.obs, batch.actions)));
    const before = noGrad(() => sub(qMin, critic.v.forward(batch.obs)));
    const vLoss = expectileLoss(critic.v.forward(batch.obs), qMin, cfg.expectile);
    critic.vOptimizer.group.zeroGrad();
    backward(vLoss);
    critic.vOptimizer.step();
    const after = noGrad(() => sub(qMin, critic.v.forward(batch.obs)));
    const { a0Hat } = noGrad(() => byHand.actor.diffusion.actionApproximation(batch.actions, batch.obs, new Generator(7)));
    return noGrad(() => [awr(a0Hat, after), awr(a0Hat, before)]);
  });
  const read = await Promise.all(guides.map((g) => g.read()));
  const want = read[0]![0]!;
  const stale = read[1]![0]!;
  const tol = 1e-5 * Math.abs(want);
  assert.ok(Math.abs(guide! - want) <= tol, `guide ${guide} vs ${want} with the updated V`);
  assert.ok(Math.abs(stale - want) > 100 * tol, `the V step changes the weights (${stale} vs ${want})`);
  for (const m of [stepped, byHand]) m.dispose();
  for (const x of [terms, ...guides, zeroLogStd]) x.dispose();
  store.dispose();
});

t('the TD3 guide is an ascent on Q: one guide-only policy step raises Q at the same action approximation', async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(512, obsDim, actDim, 11));
  const cfg = tinyConfig('td3', { diffCoef: 0, lr: 1e-3, gradClip: 0 });
  const m = makeModels(obsDim, actDim, cfg);
  const critic = m.critic as TwinQCritic;
  // equal heads, so the guide's random head and the scoring min are one function (the copy goes through the
  // host: both heads live in one flat buffer)
  const heads = [critic.q.q1.parameters(), critic.q.q2.parameters()];
  for (let i = 0; i < heads[0]!.length; i++) heads[1]![i]!.set(await heads[0]![i]!.read());
  const batch = store.sample(256, new Generator(4));
  const meanQ = async () => {
    const q = await tidy(() => noGrad(() => critic.q.min(batch.obs, m.actor.diffusion.actionApproximation(batch.actions, batch.obs, new Generator(21)).a0Hat))).read();
    return Array.from(q).reduce((x, y) => x + y, 0) / q.length;
  };
  const before = await meanQ();
  // its value: -alpha mean Q_j / mean |Q_j| at the action approximation
  const [guideT, qT] = tidy(() => noGrad(() => {
    const { a0Hat } = m.actor.diffusion.actionApproximation(batch.actions, batch.obs, new Generator(21));
    return [td3Guide(critic, cfg, batch.obs, a0Hat, new Generator(22)), critic.q.forward(batch.obs, a0Hat)[0]];
  }));
  const guideValue = (await guideT.read())[0]!;
  const q = Array.from(await qT.read());
  guideT.dispose();
  qT.dispose();
  const want = (-cfg.alpha * q.reduce((x, y) => x + y, 0)) / q.reduce((x, y) => x + Math.abs(y), 0);
  assert.ok(Math.abs(guideValue - want) < 1e-4 * Math.max(1, Math.abs(want)), `guide ${guideValue} against ${want}`);
  tidy(() => {
    const { loss: diff, a0Hat } = m.actor.diffusion.actionApproximation(batch.actions, batch.obs, new Generator(21));
    policyStep(m.actor, cfg, diff, td3Guide(critic, cfg, batch.obs, a0Hat, new Generator(22)));
  });
  const after = await meanQ();
  assert.ok(after > before, `mean Q at the same a0Hat: ${before} before the step, ${after} after`);
  m.dispose();
  store.dispose();
});

t.run();
