// DTQL: the Gaussian-tanh actor's log-likelihood against float64, both phases on tiny settings (losses fall,
// gradients finite), the trust-region step reaching only the policy, bitwise resume, and the toy bandit.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allClose, freshSeed, gpu, randn, randu, rng } from './helpers.ts';
import { backward, noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/host-rng.ts';
import type { Module } from '../engine/nn.ts';
import type { ParamGroup } from '../engine/params.ts';
import { Generator } from '../engine/random.ts';
import { tensor, tidy } from '../engine/tensor.ts';
import { sum } from '../engine/ops/reduce.ts';
import { ReplayStore } from '../datasets/replay.ts';
import { loadCheckpoint, readCheckpointInfo } from '../algorithms/common/run-files.ts';
import { runPhase } from '../algorithms/common/phase.ts';
import { GaussianTanhActor, LOG_STD_MAX, LOG_STD_MIN } from '../algorithms/common/gaussian-actor.ts';
import { actorStep, disposeModels, makeModels, pretrainPhase, taskConfig, trainPhase, type DtqlConfig, type DtqlModels } from '../algorithms/dtql.ts';
import { runToyBandit, toyConfig } from '../scripts/dtql-toy.ts';
import { recorder, syntheticTransitions } from './offline-fixtures.ts';

const t = suite('dtql');
t.before(gpu);

let scratch = '';
t.before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'wd-dtql-'));
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

function tinyConfig(over: Partial<DtqlConfig> = {}): DtqlConfig {
  return {
    ...taskConfig('pendulum-quick'),
    behaviorHidden: 32,
    actorHidden: 32,
    actorLayers: 2,
    criticHidden: [32, 32],
    batch: 128,
    lr: 3e-3,
    criticLr: 3e-3,
    logEvery: 10,
    checkpointEvery: 10,
    ...over,
  };
}

const series = (records: Record<string, unknown>[], phase: string, key: string) =>
  records.filter((r) => r['phase'] === phase && typeof r[key] === 'number').map((r) => r[key] as number);

async function allFinite(group: ParamGroup, what: string): Promise<void> {
  const g = await group.grads.read();
  assert.ok(g.every((x) => Number.isFinite(x)), `${what}: gradients finite`);
  assert.ok(g.some((x) => x !== 0), `${what}: gradients not all zero`);
}

async function parameterValues(m: Module): Promise<number[]> {
  const out: number[] = [];
  for (const p of m.parameters()) out.push(...(await p.read()));
  return out;
}

const behaviorNet = (m: DtqlModels) => m.behavior.net;

t('actor log-likelihood matches float64 (atanh of a / (max + 1e-3), no Jacobian) and its gradient flows', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  for (const [rows, obsDim, actDim, maxAction] of [[1, 3, 1, 1], [17, 5, 3, 2], [257, 2, 6, 1]] as const) {
    const actor = new GaussianTanhActor(obsDim, actDim, { hidden: 16, layers: 2, maxAction, rng: new HostRng(seed) });
    const obs = randn(rows * obsDim, r, 2);
    const actions = randu(rows * actDim, r, -maxAction, maxAction);
    actions[0] = maxAction; // on the bound: finite thanks to the margin
    const group = actor.paramGroup();
    group.zeroGrad();
    const { out, raw } = tidy(() => {
      const o = tensor(obs, [rows, obsDim]);
      const lp = actor.logProb(o, tensor(actions, [rows, actDim]));
      backward(sum(lp));
      return { out: lp, raw: noGrad(() => actor.net.forward(o)) };
    });
    const head = await raw.read();
    const want = new Float64Array(rows);
    for (let b = 0; b < rows; b++) {
      let s = 0;
      for (let d = 0; d < actDim; d++) {
        const mu = head[b * 2 * actDim + d]!;
        const ls = Math.min(LOG_STD_MAX, Math.max(LOG_STD_MIN, head[b * 2 * actDim + actDim + d]!));
        const pre = Math.atanh(actions[b * actDim + d]! / (maxAction + 1e-3));
        s += -0.5 * ((pre - mu) / Math.exp(ls)) ** 2 - ls - 0.5 * Math.log(2 * Math.PI);
      }
      want[b] = s;
    }
    assert.equal(out.shape, [rows, 1]);
    allClose(await out.read(), want, 1e-4, 1e-4, `seed ${seed} [${rows}, ${actDim}] max ${maxAction}`);
    raw.dispose();
    out.dispose();
    await allFinite(group, 'logProb');
  }
});

t('pretraining and training on tiny settings: losses fall, gradients finite, the policy raises Q', async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(2048, obsDim, actDim, 7));
  const cfg = tinyConfig({ pretrainSteps: 120, trainSteps: 80, logEvery: 20, checkpointEvery: 1000 });
  const log = recorder();
  const ctx = { cfg, log, quiet: true, stream: { write: () => true } };
  const m = makeModels(obsDim, actDim, cfg);

  await runPhase(pretrainPhase(m, store, join(scratch, 'tiny-pretrain.safetensors')), ctx);
  const bl = series(log.records, 'pretrain', 'bcLoss');
  const ql = series(log.records, 'pretrain', 'qLoss');
  assert.ok(bl[bl.length - 1]! < 0.8 * bl[0]!, `behaviour loss ${bl.map((x) => x.toFixed(3))}`);
  assert.ok(ql[ql.length - 1]! < 0.5 * ql[0]!, `critic q loss ${ql.map((x) => x.toFixed(3))}`);
  await allFinite(m.behaviorOpt.group, 'behaviour');
  await allFinite(m.critic.qOptimizer.group, 'critic Q');
  await allFinite(m.critic.vOptimizer.group, 'critic V');

  const states = store.sample(256, new Generator(99)).obs;
  const meanQ = async () => {
    const q = tidy(() => noGrad(() => m.critic.q.min(states, m.actor.meanAction(states))));
    const v = Array.from(await q.read());
    q.dispose();
    return v.reduce((x, y) => x + y, 0) / v.length;
  };
  const q0 = await meanQ();
  await runPhase(trainPhase(m, store, join(scratch, 'tiny-train.safetensors')), ctx);
  const q1 = await meanQ();
  const al = series(log.records, 'train', 'actorLoss');
  const tl = series(log.records, 'train', 'trustRegion');
  assert.ok(al[al.length - 1]! < al[0]!, `actor loss ${al.map((x) => x.toFixed(4))}`);
  assert.ok(tl[tl.length - 1]! < tl[0]!, `trust-region loss ${tl.map((x) => x.toFixed(4))}`);
  assert.ok(q1 > q0, `Q of the policy's mean actions ${q0.toFixed(4)} -> ${q1.toFixed(4)}`);
  await allFinite(m.actorOpt.group, 'actor');
  await allFinite(m.behaviorOpt.group, 'behaviour (training)');
  states.dispose();
  disposeModels(m);
  store.dispose();
});

t('the actor step (trust region + Q + likelihood) changes only the policy: behaviour and critic keep weights and gradients', async () => {
  const obsDim = 4;
  const actDim = 3;
  const store = ReplayStore.fromTransitions(syntheticTransitions(512, obsDim, actDim, 11));
  for (const [alpha, gamma] of [[1, 0], [5, 1]] as const) {
    const m = makeModels(obsDim, actDim, tinyConfig({ alpha, gamma }));
    const sentinel = (g: ParamGroup) => g.grads.set(new Float32Array(g.length).fill(7));
    const groups = { behaviour: m.behaviorOpt.group, q: m.critic.qOptimizer.group, v: m.critic.vOptimizer.group };
    for (const g of Object.values(groups)) sentinel(g);
    const before = { behaviour: await parameterValues(behaviorNet(m)), q: await parameterValues(m.critic.q), actor: await parameterValues(m.actor) };
    const gen = new Generator(5);
    tidy(() => void actorStep(m, store.sample(64, gen), gen));
    for (const [name, g] of Object.entries(groups)) {
      const grads = await g.grads.read();
      assert.ok(grads.every((x) => x === 7), `alpha ${alpha} gamma ${gamma}: ${name} gradients were written by the actor step`);
    }
    assert.equal(await parameterValues(behaviorNet(m)), before.behaviour, 'behaviour weights unchanged');
    assert.equal(await parameterValues(m.critic.q), before.q, 'critic weights unchanged');
    assert.not.equal(await parameterValues(m.actor), before.actor, 'actor weights changed');
    await allFinite(m.actorOpt.group, `alpha ${alpha} gamma ${gamma}: actor`);
    // requiresGrad is restored: the behaviour model still trains afterwards
    assert.ok(behaviorNet(m).parameters().every((p) => p.requiresGrad) && m.critic.q.parameters().every((p) => p.requiresGrad));
    disposeModels(m);
  }
  store.dispose();
});

t('a resumed phase takes exactly the steps of an uninterrupted run (pretrain, train with lr decay)', async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(1024, obsDim, actDim, 8));
  const cfg = tinyConfig({ pretrainSteps: 6, trainSteps: 6, logEvery: 2, checkpointEvery: 2, seed: 3, gamma: 1, lrDecay: true });
  const ctx = { cfg, log: null, quiet: true, stream: { write: () => true } };
  for (const phase of ['pretrain', 'train'] as const) {
    const build = (path: string) => {
      const m = makeModels(obsDim, actDim, cfg);
      return { m, run: phase === 'pretrain' ? pretrainPhase(m, store, path) : trainPhase(m, store, path) };
    };
    const whole = build(join(scratch, `whole-${phase}.safetensors`));
    await runPhase(whole.run, ctx);
    const path = join(scratch, `part-${phase}.safetensors`);
    const first = build(path);
    await runPhase({ ...first.run, steps: 4 }, ctx);
    assert.is(readCheckpointInfo(path).step, 4);
    const second = build(path);
    const info = loadCheckpoint(path, second.run.parts);
    await runPhase(second.run, ctx, info.step);
    const modules = (b: typeof whole) => (phase === 'pretrain' ? [behaviorNet(b.m), b.m.critic.q, b.m.critic.v] : [behaviorNet(b.m), b.m.critic.q, b.m.actor]);
    for (let k = 0; k < 3; k++) {
      const a = await parameterValues(modules(whole)[k]!);
      const b = await parameterValues(modules(second)[k]!);
      assert.equal(a, b, `${phase}: module ${k} of the resumed run equals the uninterrupted run bitwise`);
      assert.not.equal(a, await parameterValues(modules(first)[k]!), `${phase}: steps 5-6 changed module ${k}`);
    }
    for (const b of [whole, first, second]) disposeModels(b.m);
  }
  store.dispose();
});

// Diffusion-QL's four-cluster bandit, one step (notDone 0): the policy's own samples (no critic selection) must
// land on the best cluster. Settings and a sweep: scripts/dtql-toy.ts.
t('toy bandit: >= 95% of the one-step policy\'s samples lie within 0.2 of the best cluster (0.8, -0.8)', async () => {
  const r = await runToyBandit(toyConfig(), scratch);
  assert.ok(r.best >= 0.95, `share within 0.2 of (0.8, -0.8): ${JSON.stringify(r)}`);
});

t('the trust region pulls the policy to the behaviour model: with a flat critic, one actor step lowers L_TR at the same draws', async () => {
  const obsDim = 4;
  const actDim = 3;
  const store = ReplayStore.fromTransitions(syntheticTransitions(512, obsDim, actDim, 11));
  const m = makeModels(obsDim, actDim, tinyConfig({ alpha: 1, gamma: 0, lr: 1e-3 }));
  // the heads' last layers zeroed: Q is a constant, so the trust region alone moves the policy
  for (const head of [m.critic.q.q1, m.critic.q.q2]) {
    const params = head.parameters();
    const lastWeight = params[params.length - 2]!;
    lastWeight.set(new Float32Array(lastWeight.size));
  }
  const batch = store.sample(128, new Generator(4));
  const trustRegion = async () => {
    const gen = new Generator(21);
    return (await tidy(() => noGrad(() => m.diffusion.trustRegionLoss(m.actor.sample(batch.obs, gen), batch.obs, gen))).read())[0]!;
  };
  const before = await trustRegion();
  tidy(() => void actorStep(m, batch, new Generator(21)));
  const after = await trustRegion();
  assert.ok(after < before, `L_TR at the same draws: ${before} before the step, ${after} after`);
  disposeModels(m);
  store.dispose();
});

t.run();
