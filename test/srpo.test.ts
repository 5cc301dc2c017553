// SRPO: the fused surrogate loss against float64, its gradient by finite differences, and the three phases on
// tiny settings (losses fall, gradients finite, resume reproduces the uninterrupted run), the toy bandit.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { allClose, freshSeed, gpu, gradCheck, poisonNext, randn, randu, rng } from './helpers.ts';
import { backward } from '../engine/autograd.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { srpoSurrogateLoss, SRPO_LOSS_CHUNK, type SrpoWeighting } from '../algorithms/srpo/loss.ts';
import { VPSDE } from '../algorithms/diffusion/schedules.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReplayStore } from '../datasets/replay.ts';
import { NonFiniteLossError } from '../algorithms/common/monitor.ts';
import { loadCheckpoint, readCheckpointInfo } from '../algorithms/common/run-files.ts';
import { actorPhase, actorTraining, behaviorPhase, criticPhase, makeActor, makeBehavior, makeCritic } from '../algorithms/srpo.ts';
import { runPhase, type PhaseRun } from '../algorithms/common/phase.ts';
import { taskConfig, type SrpoConfig } from '../algorithms/srpo/presets.ts';
import type { Module } from '../engine/nn.ts';
import type { ParamGroup } from '../engine/params.ts';
import { recorder, syntheticTransitions } from './offline-fixtures.ts';

const t = suite('srpo');
t.before(gpu);

interface LossCase {
  rows: number;
  dim: number;
  a: Float32Array;
  eps: Float32Array;
  z: Float32Array;
  g: Float32Array;
  alpha: Float32Array;
  sigma: Float32Array;
}

function lossCase(rows: number, dim: number, r: () => number): LossCase {
  const sde = new VPSDE();
  const times = randu(rows, r, 0.02, 0.98);
  return {
    rows,
    dim,
    a: randu(rows * dim, r, -1, 1),
    eps: randn(rows * dim, r),
    z: randn(rows * dim, r),
    g: randn(rows * dim, r, 3),
    alpha: Float32Array.from(times, (tt) => sde.alpha(tt)),
    sigma: Float32Array.from(times, (tt) => sde.sigma(tt)),
  };
}

/** float64 reference: [loss, score term, guide term] and the per-element gradient. */
function lossRef(c: LossCase, a: ArrayLike<number>, beta: number, weighting: SrpoWeighting, baseline: boolean, normalize: boolean) {
  let loss = 0;
  let score = 0;
  let guide = 0;
  const grad = new Float64Array(c.rows * c.dim);
  for (let b = 0; b < c.rows; b++) {
    const s = c.sigma[b]!;
    const w = weighting === 'VDS' ? s * s : weighting === 'stable' ? 1 : c.alpha[b]! / s;
    let sq = 0;
    for (let d = 0; d < c.dim; d++) sq += c.g[b * c.dim + d]! ** 2;
    const inv = normalize ? 1 / Math.sqrt(sq / c.dim) : 1;
    let ea = 0;
    let ga = 0;
    for (let d = 0; d < c.dim; d++) {
      const i = b * c.dim + d;
      const e = c.eps[i]! - (baseline ? c.z[i]! : 0);
      const gq = c.g[i]! * inv;
      ea += e * a[i]!;
      ga += gq * a[i]!;
      grad[i] = (w * e - beta * gq) / c.rows;
    }
    loss += w * ea - beta * ga;
    score += w * ea;
    guide += ga;
  }
  return { values: [loss / c.rows, score / c.rows, guide / c.rows], grad };
}

function upload(c: LossCase) {
  return {
    a: tensor(c.a, [c.rows, c.dim]),
    eps: tensor(c.eps, [c.rows, c.dim]),
    z: tensor(c.z, [c.rows, c.dim]),
    g: tensor(c.g, [c.rows, c.dim]),
    alpha: tensor(c.alpha, [c.rows]),
    sigma: tensor(c.sigma, [c.rows]),
  };
}

t('fused surrogate loss, terms and gradient match float64 for every weighting, baseline and normalisation', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  const shapes: [number, number][] = [[1, 1], [3, 2], [17, 6], [256, 3], [257, 1], [1023, 17], [SRPO_LOSS_CHUNK + 5, 2]];
  let k = 0;
  for (const [rows, dim] of shapes) {
    for (const weighting of ['VDS', 'stable', 'score'] as const) {
      const baseline = k % 2 === 1;
      const normalize = k % 3 === 2;
      k++;
      const c = lossCase(rows, dim, r);
      const beta = 0.05 + r();
      const ref = lossRef(c, c.a, beta, weighting, baseline, normalize);
      const g = upload(c);
      g.a.requiresGrad = true;
      poisonNext([rows, dim]);
      const out = srpoSurrogateLoss(g.a, g.eps, g.g, g.alpha, g.sigma, { beta, weighting, noise: baseline ? g.z : null, normalizeQGrad: normalize });
      const what = `seed ${seed} [${rows}, ${dim}] ${weighting} baseline ${baseline} normalize ${normalize}`;
      backward(out.loss);
      const loss = await out.loss.read();
      const terms = await out.terms.read();
      allClose([loss[0]!, terms[0]!, terms[1]!], ref.values, 1e-4, 1e-5, `${what}: loss and terms`);
      allClose(await g.a.grad!.read(), ref.grad, 1e-4, 1e-7, `${what}: d loss / d a`);
      out.loss.dispose();
      out.terms.dispose();
      g.a.grad!.dispose();
      for (const x of Object.values(g)) x.dispose();
    }
  }
});

t('surrogate loss gradient passes gradCheck (finite differences of the float64 reference)', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  for (const [rows, dim, weighting, baseline, normalize] of [
    [5, 3, 'VDS', false, false],
    [9, 2, 'score', true, true],
  ] as const) {
    const c = lossCase(rows, dim, r);
    const g = upload(c);
    const beta = 0.3;
    await gradCheck(
      (a: Tensor) => srpoSurrogateLoss(a, g.eps, g.g, g.alpha, g.sigma, { beta, weighting, noise: baseline ? g.z : null, normalizeQGrad: normalize }).loss,
      (a: Float64Array) => [lossRef(c, a, beta, weighting, baseline, normalize).values[0]!],
      [{ data: c.a, shape: [rows, dim] }],
      { seed, what: `seed ${seed} ${weighting}` },
    );
    for (const x of Object.values(g)) x.dispose();
  }
});

t('surrogate loss rejects mismatched shapes with the op name', () => {
  tidy(() => {
    const a = tensor(new Float32Array(6), [3, 2]);
    const bad = tensor(new Float32Array(4), [2, 2]);
    const rowsT = tensor(new Float32Array(3), [3]);
    assert.throws(() => srpoSurrogateLoss(a, bad, a, rowsT, rowsT, { beta: 1 }), /srpoSurrogateLoss: eps must be a non-empty f32 \[3, 2\]/);
    assert.throws(() => srpoSurrogateLoss(a, a, a, bad, rowsT, { beta: 1 }), /alpha must be an f32 \[3\]/);
  });
});


// ---------------------------------------------------------------------------------------------------------
// The phases on tiny settings

let scratch = '';
t.before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'wd-srpo-'));
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

function tinyConfig(over: Partial<SrpoConfig> = {}): SrpoConfig {
  return {
    ...taskConfig('pendulum-quick'),
    behaviorHidden: 32,
    behaviorBlocks: 1,
    behaviorBatch: 128,
    behaviorLr: 3e-3,
    criticHidden: [32, 32],
    criticBatch: 128,
    criticLr: 3e-3,
    actorHidden: 32,
    actorBatch: 128,
    actorLr: 3e-3,
    beta: 1,
    logEvery: 10,
    checkpointEvery: 10,
    ...over,
  };
}

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

const series = (records: Record<string, unknown>[], key: string) => records.filter((r) => typeof r[key] === 'number').map((r) => r[key] as number);

t('each phase on tiny settings: losses fall, gradients stay finite, the actor raises Q', async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(2048, obsDim, actDim, 7));
  const cfg = tinyConfig({ behaviorSteps: 120, criticSteps: 120, actorSteps: 80, logEvery: 20, checkpointEvery: 1000 });
  const log = recorder();
  const ctx = { cfg, log, quiet: true, stream: { write: () => true } };

  const behavior = makeBehavior(obsDim, actDim, cfg);
  const b = behaviorPhase(behavior, store, cfg, join(scratch, 'tiny-behavior.safetensors'));
  await runPhase(b, ctx);
  const bl = series(log.records.filter((r) => r['phase'] === 'behavior'), 'loss');
  assert.ok(bl[bl.length - 1]! < 0.8 * bl[0]!, `behaviour loss ${bl.map((x) => x.toFixed(3))}`);
  await allFinite(b.opt.group, 'behaviour');

  const critic = makeCritic(obsDim, actDim, cfg);
  await runPhase(criticPhase(critic, store, cfg, join(scratch, 'tiny-critic.safetensors')), ctx);
  const ql = series(log.records.filter((r) => r['phase'] === 'critic'), 'qLoss');
  assert.ok(ql[ql.length - 1]! < 0.5 * ql[0]!, `critic q loss ${ql.map((x) => x.toFixed(3))}`);
  await allFinite(critic.qOptimizer.group, 'critic Q');
  await allFinite(critic.vOptimizer.group, 'critic V');

  const actor = makeActor(obsDim, actDim, cfg);
  const tr = actorTraining(actor, behavior, critic, cfg);
  const states = store.sample(256, new (await import('../engine/random.ts')).Generator(99)).obs;
  const meanQ = async () => {
    const { noGrad } = await import('../engine/autograd.ts');
    const q = tidy(() => noGrad(() => critic.qTarget.mean(states, actor.forward(states))));
    const v = (await q.read()) as Float32Array;
    q.dispose();
    return v.reduce((x, y) => x + y, 0) / v.length;
  };
  const q0 = await meanQ();
  await runPhase(actorPhase(tr, store, join(scratch, 'tiny-actor.safetensors')), ctx);
  const q1 = await meanQ();
  const al = series(log.records.filter((r) => r['phase'] === 'actor'), 'loss');
  assert.ok(al[al.length - 1]! < al[0]!, `actor loss ${al.map((x) => x.toFixed(4))}`);
  assert.ok(q1 > q0, `Q of the actor's actions ${q0.toFixed(4)} -> ${q1.toFixed(4)}`);
  await allFinite(tr.opt.group, 'actor');
  states.dispose();
  store.dispose();
});

t('a resumed phase takes exactly the steps of an uninterrupted run (behaviour, critic, actor)', async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(1024, obsDim, actDim, 8));
  const cfg = tinyConfig({ behaviorSteps: 6, criticSteps: 6, actorSteps: 6, logEvery: 2, checkpointEvery: 2, seed: 3 });
  const ctx = { cfg, log: null, quiet: true, stream: { write: () => true } };
  // frozen inputs of the actor phase, shared by both runs
  const frozenB = makeBehavior(obsDim, actDim, cfg);
  const frozenC = makeCritic(obsDim, actDim, cfg);
  type Built = { run: PhaseRun; module: Module };
  const builders: Record<string, (path: string) => Built> = {
    behavior: (path) => {
      const b = makeBehavior(obsDim, actDim, cfg);
      return { run: behaviorPhase(b, store, cfg, path), module: b.net };
    },
    critic: (path) => {
      const c = makeCritic(obsDim, actDim, cfg);
      return { run: criticPhase(c, store, cfg, path), module: c.q };
    },
    actor: (path) => {
      const a = makeActor(obsDim, actDim, cfg);
      return { run: actorPhase(actorTraining(a, frozenB, frozenC, cfg), store, path), module: a };
    },
  };
  for (const [phase, build] of Object.entries(builders)) {
    const whole = build(join(scratch, `whole-${phase}.safetensors`));
    await runPhase(whole.run, ctx);
    const path = join(scratch, `part-${phase}.safetensors`);
    const first = build(path);
    await runPhase({ ...first.run, steps: 4 }, ctx);
    assert.is(readCheckpointInfo(path).step, 4);
    const second = build(path);
    const info = loadCheckpoint(path, second.run.parts);
    await runPhase(second.run, ctx, info.step);
    const a = await parameterValues(whole.module);
    const b = await parameterValues(second.module);
    assert.is(a.length, b.length);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    assert.ok(worst <= 1e-6, `${phase}: resumed parameters differ from the uninterrupted run by ${worst}`);
    assert.not.equal(a, await parameterValues(first.module), `${phase}: steps 5-6 changed the parameters`);
  }
  store.dispose();
});

t('replayed phases end with exactly the parameters of eager phases (behaviour, critic, actor)', async () => {
  const obsDim = 3;
  const actDim = 2;
  const store = ReplayStore.fromTransitions(syntheticTransitions(512, obsDim, actDim, 5));
  const cfg = tinyConfig({ behaviorSteps: 5, criticSteps: 5, actorSteps: 5, logEvery: 2, checkpointEvery: 1000, seed: 11 });
  const frozenB = makeBehavior(obsDim, actDim, cfg);
  const frozenC = makeCritic(obsDim, actDim, cfg);
  const build: Record<string, (path: string) => { run: PhaseRun; module: Module }> = {
    behavior: (path) => {
      const b = makeBehavior(obsDim, actDim, cfg);
      return { run: behaviorPhase(b, store, cfg, path), module: b.net };
    },
    critic: (path) => {
      const c = makeCritic(obsDim, actDim, cfg);
      return { run: criticPhase(c, store, cfg, path), module: c.qTarget };
    },
    actor: (path) => {
      const a = makeActor(obsDim, actDim, cfg);
      return { run: actorPhase(actorTraining(a, frozenB, frozenC, cfg), store, path), module: a };
    },
  };
  for (const [phase, make] of Object.entries(build)) {
    const results: number[][] = [];
    for (const eager of [true, false]) {
      const { run, module } = make(join(scratch, `mode-${phase}-${eager}.safetensors`));
      await runPhase(run, { cfg, log: null, quiet: true, stream: { write: () => true }, eager });
      results.push(await parameterValues(module));
    }
    assert.equal(Array.from(results[1]!), Array.from(results[0]!), `${phase}: replayed and eager parameters differ`);
  }
  store.dispose();
});

t('a NaN loss stops the phase naming it and the steps, and keeps the last good checkpoint', async () => {
  const { tensor: mk } = await import('../engine/tensor.ts');
  const actor = makeActor(3, 1, tinyConfig());
  const path = join(scratch, 'nan.safetensors');
  let i = 0;
  const run: PhaseRun = {
    phase: 'actor',
    steps: 10,
    checkpoint: path,
    parts: { modules: { actor } },
    // host-made losses: a step that cannot be recorded runs eagerly
    eager: true,
    step: () => {
      i++;
      return { loss: mk([i === 7 ? Number.NaN : 1 / i]) };
    },
  };
  try {
    await runPhase(run, { cfg: { logEvery: 2, checkpointEvery: 2 }, log: null, quiet: true, stream: { write: () => true } });
    assert.unreachable('no error');
  } catch (e) {
    assert.instance(e, NonFiniteLossError);
    assert.match((e as Error).message, "phase 'actor' in steps 7..8: loss = NaN");
    assert.match((e as Error).message, `last good checkpoint is kept: ${path}`);
  }
  assert.is(readCheckpointInfo(path).step, 6);
  // losses read back while training goes on (log points without a checkpoint) still name the right steps,
  // and the checkpoint written before them is the one kept
  i = 0;
  try {
    await runPhase({ ...run, steps: 20 }, { cfg: { logEvery: 2, checkpointEvery: 4 }, log: null, quiet: true, stream: { write: () => true } });
    assert.unreachable('no error');
  } catch (e) {
    assert.instance(e, NonFiniteLossError);
    assert.match((e as Error).message, "phase 'actor' in steps 7..8: loss = NaN");
  }
  assert.is(readCheckpointInfo(path).step, 4);
});

t('a stop request (Ctrl-C) ends the phase at a checkpoint of the current step', async () => {
  const { tensor: mk } = await import('../engine/tensor.ts');
  const { PhaseInterrupted } = await import('../algorithms/common/phase.ts');
  const actor = makeActor(3, 1, tinyConfig());
  const path = join(scratch, 'stop.safetensors');
  let calls = 0;
  const run: PhaseRun = { phase: 'critic', steps: 100, checkpoint: path, parts: { modules: { actor } }, eager: true, step: () => ({ loss: mk([1]) }) };
  try {
    await runPhase(run, { cfg: { logEvery: 50, checkpointEvery: 50 }, log: null, quiet: true, stream: { write: () => true }, stopRequested: () => ++calls >= 7 });
    assert.unreachable('no error');
  } catch (e) {
    assert.instance(e, PhaseInterrupted);
    assert.match((e as Error).message, "interrupted in phase 'critic' at step 7");
  }
  const info = readCheckpointInfo(path);
  assert.is(info.step, 7);
  assert.is(info.extra['complete'], false);
});

// ---------------------------------------------------------------------------------------------------------
// Toy bandit: Diffusion-QL's four clusters (rewards 3 / 0 / 1.5 / 5), one step (notDone 0). A deterministic actor
// on a constant state yields one action, so 32 states (random, independent of the action) stand in for 32 seeds.
// The score weighting w(t) = alpha_t / sigma_t is used: in [-1, 1] the VP-SDE's unit noise merges the four
// clusters for most t, and the default sigma_t^2 weighting, which favours exactly those t, pulls actions toward
// the data's centre (measured: beta 0 leaves them between clusters, beta >= 0.1 pushes them to the box corner).

t('toy bandit: the actor picks the best cluster (0.8, -0.8); with beta = 0 every action stays on a data cluster', async () => {
  const { toyDataset } = await import('../datasets/toy.ts');
  const { HostRng } = await import('../engine/host-rng.ts');
  const { noGrad } = await import('../engine/autograd.ts');
  const { DeterministicActor } = await import('../algorithms/common/deterministic-actor.ts');
  const toy = toyDataset('dql-bandit', 10_000, 2022);
  const n = 10_000;
  const K = 32;
  const obsDim = 2;
  const hr = new HostRng(5);
  const states = Float32Array.from({ length: K * obsDim }, () => 3 * hr.normal());
  const obs = new Float32Array(n * obsDim);
  for (let i = 0; i < n; i++) obs.set(states.subarray((i % K) * obsDim, ((i % K) + 1) * obsDim), i * obsDim);
  const store = ReplayStore.fromTransitions({ size: n, obsDim, actDim: 2, observations: obs, actions: toy.actions, rewards: toy.rewards, nextObservations: obs, dones: new Float32Array(n).fill(1) });
  const cfg = tinyConfig({
    behaviorHidden: 64, behaviorBlocks: 2, behaviorBatch: 256, behaviorLr: 3e-3, behaviorSteps: 800,
    // one-step problem: the critic regresses Q to the reward; the target follows the online net at once
    criticHidden: [64, 64], criticBatch: 256, criticLr: 3e-3, targetTau: 1, criticSteps: 300,
    actorBatch: 256, actorLr: 5e-3, actorSteps: 400, weighting: 'score', logEvery: 100, checkpointEvery: 100_000,
  });
  const ctx = { cfg, log: null, quiet: true, stream: { write: () => true } };
  const behavior = makeBehavior(obsDim, 2, cfg);
  await runPhase(behaviorPhase(behavior, store, cfg, join(scratch, 'toy-behavior.safetensors')), ctx);
  const critic = makeCritic(obsDim, 2, cfg);
  await runPhase(criticPhase(critic, store, cfg, join(scratch, 'toy-critic.safetensors')), ctx);
  const centers = toy.modes!.centers;
  const results: Record<string, { best: number; onCluster: number; actions: string }> = {};
  for (const beta of [0.05, 0]) {
    const actor = new DeterministicActor(obsDim, 2, { hidden: 64, layers: 2, rng: new HostRng(77) });
    const tr = actorTraining(actor, behavior, critic, { ...cfg, beta });
    await runPhase(actorPhase(tr, store, join(scratch, `toy-actor-${beta}.safetensors`)), ctx);
    const out = tidy(() => noGrad(() => actor.forward(tensor(states, [K, obsDim]))));
    const a = await out.read();
    out.dispose();
    let best = 0;
    let onCluster = 0;
    for (let k = 0; k < K; k++) {
      const x = a[2 * k]!;
      const y = a[2 * k + 1]!;
      if (Math.hypot(x - 0.8, y + 0.8) < 0.2) best++;
      if (centers.some(([cx, cy]) => Math.hypot(x - cx!, y - cy!) < 0.2)) onCluster++;
    }
    results[beta] = { best: best / K, onCluster: onCluster / K, actions: Array.from({ length: 4 }, (_, k) => `(${a[2 * k]!.toFixed(2)}, ${a[2 * k + 1]!.toFixed(2)})`).join(' ') };
    tr.opt.dispose();
  }
  const msg = JSON.stringify(results);
  assert.ok(results['0.05']!.best >= 0.95, `beta 0.05: share of actions within 0.2 of (0.8, -0.8): ${msg}`);
  assert.ok(results['0']!.onCluster >= 0.95, `beta 0: share of actions within 0.2 of a data cluster: ${msg}`);
  critic.dispose();
  store.dispose();
});

t.run();
