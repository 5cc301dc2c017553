// Recorded steps: replaying a recording must give exactly what eager steps give (same parameters, same
// random streams, same optimiser state), with no tensors made per replay; misuse is a clear error.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { freshSeed, gpu, randn, rng } from './helpers.ts';
import { backward } from '../engine/autograd.ts';
import { MLP } from '../engine/nn.ts';
import { AdamW, cosineLR, polyakUpdate } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import { recordStep } from '../engine/record.ts';
import { runtime } from '../engine/runtime.ts';
import { empty, tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { mean } from '../engine/ops/reduce.ts';
import { mul, square, sub } from '../engine/ops/elementwise.ts';
import { dropout } from '../engine/ops/dropout.ts';
import { HostRng } from '../engine/host-rng.ts';
import { ReplayStore } from '../datasets/replay.ts';

const t = suite('record');
t.before(gpu);

interface Setup {
  net: MLP;
  target: MLP;
  opt: AdamW;
  gen: Generator;
  store: ReplayStore;
}

/** A small regression problem touching every kind of per-step value: sampling, noise, dropout, AdamW with a schedule, Polyak. */
function setup(seed: number, n = 37): Setup {
  const r = rng(seed);
  const obsDim = 5;
  const actDim = 3;
  const store = ReplayStore.fromTransitions({
    size: n,
    obsDim,
    actDim,
    observations: randn(n * obsDim, r),
    actions: randn(n * actDim, r),
    rewards: randn(n, r),
    nextObservations: randn(n * obsDim, r),
    dones: new Float32Array(n),
  });
  const net = new MLP([obsDim, 19, actDim], { act: 'relu', rng: new HostRng(seed) });
  const target = new MLP([obsDim, 19, actDim], { act: 'relu', rng: new HostRng(seed + 1) });
  const opt = new AdamW(net.paramGroup(), { lr: 3e-3, weightDecay: 0.01, schedule: cosineLR(3e-3, 50, { warmup: 3 }) });
  return { net, target, opt, gen: new Generator(seed), store };
}

function trainStep(s: Setup): { loss: Tensor } {
  const batch = s.store.sample(11, s.gen);
  const noisy = dropout(batch.obs, 0.25, s.gen);
  const jitter = mul(s.gen.normal([11, 3]), tensorScale);
  const pred = s.net.forward(noisy);
  const loss = mean(square(sub(pred, sub(batch.actions, jitter))));
  s.opt.group.zeroGrad();
  backward(loss);
  s.opt.step();
  polyakUpdate(s.target.paramGroup(), s.net.paramGroup(), 0.1);
  return { loss };
}

let tensorScale: Tensor;

async function params(s: Setup): Promise<ArrayLike<number>[]> {
  return [await s.net.paramGroup().values.read(), await s.target.paramGroup().values.read(), await s.opt.m.read(), await s.opt.v.read()];
}

function dispose(s: Setup): void {
  s.opt.dispose();
  s.store.dispose();
}

t('replayed steps give bit-identical parameters, optimiser state and streams to eager steps', async () => {
  tensorScale = tensor([0.1]);
  const seed = freshSeed();
  const steps = 9;
  const eager = setup(seed);
  const eagerLosses: number[] = [];
  for (let i = 0; i < steps; i++) eagerLosses.push(await tidy(() => trainStep(eager)).loss.item());
  const eagerParams = await params(eager);

  const replayed = setup(seed);
  // first step eager (as training loops do), then record one, then replay the rest in assorted groupings
  tidy(() => trainStep(replayed).loss.dispose());
  const rec = recordStep(() => trainStep(replayed));
  assert.equal(await rec.outputs.loss.item(), eagerLosses[1], 'the recorded step is a real step');
  rec.replay();
  rec.replay(2);
  const [loss5] = await rec.replayAndRead();
  assert.equal(loss5![0], Math.fround(eagerLosses[5]!), 'loss read back after a replay');
  rec.replay(3);
  const replayedParams = await params(replayed);
  for (let i = 0; i < eagerParams.length; i++) {
    assert.equal(Array.from(replayedParams[i]!), Array.from(eagerParams[i]!), `buffer ${i} differs (seed ${seed})`);
  }
  assert.equal(replayed.gen.counter, eager.gen.counter, 'generator counter');
  assert.equal(replayed.opt.stepCount, eager.opt.stepCount, 'optimiser step count');
  assert.ok(rec.perStepCount >= 3, `per-step uniforms: ${rec.perStepCount}`);
  rec.dispose();
  dispose(eager);
  dispose(replayed);
  tensorScale.dispose();
});

t('profiled steps advance exactly as replays do and time every dispatch', async () => {
  tensorScale = tensor([0.1]);
  const seed = freshSeed();
  const profiled = setup(seed);
  tidy(() => trainStep(profiled).loss.dispose());
  const rec = recordStep(() => trainStep(profiled));
  if (!rec.canProfile) {
    let message = '';
    await rec.profile().catch((e: Error) => (message = e.message));
    assert.match(message, /timestamp-query/);
    rec.dispose();
    dispose(profiled);
    tensorScale.dispose();
    return;
  }
  // one step more than a query set can time, so the profile spans two submits
  const steps = Math.floor(4096 / (2 * rec.dispatchCount)) + 1;
  const timings = await rec.profile(steps);
  rec.replay();
  const profiledParams = await params(profiled);

  const eager = setup(seed);
  for (let i = 0; i < steps + 3; i++) tidy(() => trainStep(eager).loss.dispose());
  const eagerParams = await params(eager);
  for (let i = 0; i < eagerParams.length; i++) {
    assert.equal(Array.from(profiledParams[i]!), Array.from(eagerParams[i]!), `buffer ${i} differs (seed ${seed})`);
  }
  const dispatched = rec.kernelNames.filter((n) => n !== 'copy');
  assert.equal(timings.map((x) => x.kernel), Array.from({ length: steps }, () => dispatched).flat(), 'one timing per dispatch, in step order');
  for (const x of timings) assert.ok(Number.isFinite(x.ms) && x.ms >= 0, `${x.kernel}: ${x.ms} ms`);
  assert.ok(timings.some((x) => x.ms > 0), 'some dispatch takes measurable time');
  rec.dispose();
  dispose(eager);
  dispose(profiled);
  tensorScale.dispose();
});

t('a replay makes no tensors, builds no bind groups and submits once', async () => {
  tensorScale = tensor([0.1]);
  const s = setup(freshSeed());
  tidy(() => trainStep(s).loss.dispose());
  const rec = recordStep(() => trainStep(s));
  rec.replay();
  await runtime().sync();
  const rt = runtime();
  const before = { ...rt.stats };
  const probe1 = empty([1]);
  for (let i = 0; i < 5; i++) rec.replay();
  const probe2 = empty([1]);
  assert.is(probe2.id, probe1.id + 1, 'no tensor was created by the replays');
  assert.is(rt.stats.bindGroupsCreated, before.bindGroupsCreated);
  assert.is(rt.stats.buffersCreated, before.buffersCreated);
  assert.is(rt.stats.submits - before.submits, 5);
  assert.is(rt.stats.dispatches - before.dispatches, 5 * rec.dispatchCount);
  probe1.dispose();
  probe2.dispose();
  rec.dispose();
  dispose(s);
  tensorScale.dispose();
});

t('misuse inside a recording is a clear error and leaves the engine usable', async () => {
  const x = tensor([1, 2, 3]);
  assert.throws(() => recordStep(() => ({ y: tensor([1]) })), /host write inside a recorded step/);
  let readError = '';
  try {
    recordStep(() => {
      void x.read().catch((e: Error) => (readError = e.message));
      return { x: mul(x, x) };
    }).dispose();
  } catch {
    // read() fails asynchronously
  }
  await new Promise((r) => setTimeout(r, 10));
  assert.match(readError, /readback inside a recorded step/);
  const gen = new Generator(3);
  assert.throws(
    () =>
      recordStep(() => {
        const out = empty([4]);
        const pos = gen.reserve(4);
        // the position copied into another object can never be refreshed by a replay
        runtime().dispatch(kernelForTest(), { out }, { n: 4, lo: 0, scale: 1, ...pos }, [1]);
        return { out };
      }),
    /per-step value/,
  );
  // a buffer a live recording binds cannot be freed under it
  const input = tensor([1, 2, 3]);
  const rec = recordStep(() => ({ y: mul(input, input) }));
  assert.throws(() => input.dispose(), /recorded step was freed/);
  rec.dispose();
  assert.equal(Array.from(await mul(x, x).read()), [1, 4, 9]);
  x.dispose();
});

import { kernel } from '../engine/kernel.ts';
import { rngFillSource } from '../kernels/rng.ts';
function kernelForTest() {
  return kernel('rng_uniform', () => rngFillSource('uniform'));
}

t.run();
