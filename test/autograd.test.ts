import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, allClose, rng, freshSeed, randn } from './helpers.ts';
import { tensor, tidy } from '../engine/tensor.ts';
import { backward, detach, grad, noGrad, tapeLength } from '../engine/autograd.ts';
import { add, mul, exp } from '../engine/ops/elementwise.ts';
import { sum } from '../engine/ops/reduce.ts';
import { parameter, ParamGroup } from '../engine/params.ts';

const t = suite('autograd');
t.before(gpu);

t('gradients written straight into zeroed parameter slots equal the accumulating path (a layer used twice)', async () => {
  const { Linear } = await import('../engine/nn.ts');
  const { HostRng } = await import('../engine/host-rng.ts');
  const { square } = await import('../engine/ops/elementwise.ts');
  const seed = freshSeed();
  const layer = new Linear(4, 4, { act: 'tanh', rng: new HostRng(seed) });
  const group = layer.paramGroup();
  const x = tensor(randn(3 * 4, rng(seed)), [3, 4]);
  const loss = () => sum(square(layer.forward(layer.forward(x))));
  // reference: grad() never touches the slots
  const [gw, gb] = tidy(() => grad([loss()], [layer.weight, layer.bias!], undefined, { clear: true })).map((g) => g);
  const want = [Array.from(await gw!.read()), Array.from(await gb!.read())];
  group.zeroGrad();
  tidy(() => backward(loss()));
  allClose(await layer.weight.grad!.read(), want[0]!, 1e-5, 1e-6, `weight slot (seed ${seed})`);
  allClose(await layer.bias!.grad!.read(), want[1]!, 1e-5, 1e-6, `bias slot (seed ${seed})`);
  // without zeroGrad a second backward adds to what is there
  tidy(() => backward(loss()));
  allClose(await layer.weight.grad!.read(), want[0]!.map((v) => 2 * v), 1e-5, 1e-6, 'weight slot after a second backward');
  gw!.dispose();
  gb!.dispose();
  x.dispose();
});

t('a tensor used twice accumulates both gradients', async () => {
  const r = rng(freshSeed());
  const xs = randn(17, r);
  const x = tensor(xs);
  x.requiresGrad = true;
  tidy(() => backward(sum(add(mul(x, x), exp(x))))); // d/dx = 2x + e^x
  allClose(await x.grad!.read(), Array.from(xs, (v) => 2 * v + Math.exp(v)), 1e-5, 1e-6, 'x*x + exp(x)');
  // a second backward adds to .grad
  tidy(() => backward(sum(mul(x, 3))));
  allClose(await x.grad!.read(), Array.from(xs, (v) => 2 * v + Math.exp(v) + 3), 1e-5, 1e-6, 'accumulated');
  assert.is(tapeLength(), 0, 'backward clears the tape');
  x.grad!.dispose();
  x.dispose();
});

t('a gradient shared by two inputs is not changed by accumulating into one of them', async () => {
  const x = tensor([1, 2]);
  const y = tensor([10, 20]);
  x.requiresGrad = true;
  y.requiresGrad = true;
  // recorded as x*x, then x+y: walking back, the x+y node hands one gradient tensor to both x and y, and only
  // afterwards does x receive its second contribution (2x)
  tidy(() => backward(sum(add(mul(x, x), add(x, y)))));
  assert.equal([...(await x.grad!.read())], [3, 5]);
  assert.equal([...(await y.grad!.read())], [1, 1]);
  for (const v of [x, y]) { v.grad!.dispose(); v.dispose(); }
});

t('noGrad and detach cut the tape', async () => {
  const x = tensor([1, 2, 3]);
  x.requiresGrad = true;
  const y = noGrad(() => mul(x, x));
  assert.is(y.requiresGrad, false);
  assert.is(tapeLength(), 0);
  tidy(() => backward(sum(mul(detach(mul(x, x)), x)))); // d/dx of stop(x^2) * x = x^2
  assert.equal([...(await x.grad!.read())], [1, 4, 9]);
  x.grad!.dispose();
  x.dispose();
  y.dispose();
});

t('grad() differentiates with respect to a non-parameter input and leaves .grad alone', async () => {
  const w = parameter([0.5, -1, 2], [3], 'w');
  const a = tensor([1, 2, 3]);
  a.requiresGrad = true;
  const [ga] = tidy(() => grad([sum(mul(mul(a, a), w))], [a], undefined, { clear: true })); // 2 a w
  assert.equal([...(await ga!.read())], [1, -4, 12]);
  assert.is(w.grad, null);
  assert.is(a.grad, null);
  ga!.dispose();
});

t('parameters of a flat group accumulate into their gradient slots', async () => {
  const p = parameter([1, 2], [2], 'p');
  const q = parameter([3], [1], 'q');
  const group = new ParamGroup([{ name: 'p', tensor: p }, { name: 'q', tensor: q }]);
  // q*q is broadcast into both elements of the sum: dp = q, dq = sum(p) + 2 * 2q
  tidy(() => backward(sum(add(mul(p, q), mul(q, q)))));
  assert.equal([...(await p.grad!.read())], [3, 3]);
  assert.equal([...(await q.grad!.read())], [15]);
  assert.ok(p.grad === p.gradSlot);
  group.zeroGrad();
  assert.equal([...(await group.grads.read())].every((v) => v === 0), true);
  assert.equal([...(await p.read())], [1, 2], 'values moved into the group unchanged');
});

t.run();
