// End to end: modules, autograd, the flat parameter group and AdamW together fit a smooth 2-D function.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, rng, freshSeed, randu } from './helpers.ts';
import { backward, noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/host-rng.ts';
import { MLP } from '../engine/nn.ts';
import { square, sub } from '../engine/ops/elementwise.ts';
import { mean } from '../engine/ops/reduce.ts';
import { AdamW } from '../engine/optim.ts';
import { loadModule, saveModule } from '../engine/safetensors.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';

const t = suite('train');
t.before(gpu);

function dataset(n: number, r: () => number): { x: Float32Array; y: Float32Array; variance: number } {
  const x = randu(2 * n, r, -2, 2);
  const y = Float32Array.from({ length: n }, (_, i) => Math.sin(x[2 * i]!) * Math.cos(x[2 * i + 1]!));
  const mu = y.reduce((s, v) => s + v, 0) / n;
  const variance = y.reduce((s, v) => s + (v - mu) ** 2, 0) / n;
  return { x, y, variance };
}

function mse(net: MLP, x: Tensor, y: Tensor): Tensor {
  return mean(square(sub(net.forward(x), y)));
}

t('a 2-64-64-1 Mish MLP fits sin(x0) cos(x1) with AdamW to under 2% of the target variance', async () => {
  const seed = freshSeed();
  const r = rng(seed);
  const n = 512;
  const train = dataset(n, r);
  const test = dataset(256, r);
  const net = new MLP([2, 64, 64, 1], { act: 'mish', rng: new HostRng(seed) });
  const group = net.paramGroup();
  const opt = new AdamW(group, { lr: 3e-3, weightDecay: 0 });
  const xs = tensor(train.x, [n, 2]);
  const ys = tensor(train.y, [n, 1]);
  const xt = tensor(test.x, [256, 2]);
  const yt = tensor(test.y, [256, 1]);
  const testLoss = async () => {
    const l = noGrad(() => tidy(() => mse(net, xt, yt)));
    const v = await l.item();
    l.dispose();
    return v;
  };
  const initial = await testLoss();
  const steps = 300;
  for (let step = 0; step < steps; step++) {
    tidy(() => {
      group.zeroGrad();
      backward(mse(net, xs, ys));
      opt.step();
    });
  }
  const final = await testLoss();
  const msg = `seed ${seed}: test MSE ${initial.toFixed(4)} -> ${final.toExponential(2)}, target variance ${test.variance.toFixed(4)}`;
  assert.ok(Number.isFinite(final), msg);
  assert.ok(final < 0.02 * test.variance, msg);
  assert.ok(final < 0.1 * initial, msg);

  // the trained network survives a checkpoint round trip into a fresh one
  const restored = new MLP([2, 64, 64, 1], { act: 'mish', rng: new HostRng(seed + 1) });
  loadModule(restored, await saveModule(net));
  const a = noGrad(() => tidy(() => net.forward(xt)));
  const b = noGrad(() => tidy(() => restored.forward(xt)));
  assert.equal(await b.read(), await a.read());
  for (const x of [xs, ys, xt, yt, a, b]) x.dispose();
});

t.run();
