import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, poison, randn, rng, freshSeed, allClose } from './helpers.ts';
import { tensor, empty, tidy } from '../engine/tensor.ts';
import { axpy_, clone, copy_, full } from '../engine/basic.ts';
import { runtime } from '../engine/runtime.ts';

const t = suite('basic');
t.before(gpu);

t('fill, copy and axpy over awkward sizes', async () => {
  const r = rng(freshSeed());
  for (const n of [1, 3, 17, 255, 257, 1023, 70000]) {
    const a = randn(n, r);
    const b = randn(n, r);
    tidy(() => undefined);
    const ta = tensor(a);
    const tb = tensor(b);
    const out = poison(empty([n]));
    copy_(out, ta);
    axpy_(out, tb, -0.5);
    const got = await out.read();
    const ref = Array.from(a, (x, i) => x - 0.5 * b[i]!);
    allClose(got, ref, 1e-6, 1e-6, `axpy n=${n}`);
    const f = await full([n], 2.5).read();
    assert.ok(f.every((v) => v === 2.5), `fill n=${n}`);
    const c = await clone(ta).read();
    assert.equal(c, a);
    ta.dispose(); tb.dispose(); out.dispose();
  }
});

t('tidy returns buffers to the pool for reuse', async () => {
  const rt = runtime();
  tidy(() => { full([1000], 1); full([1000], 2); });
  await rt.sync();
  const before = rt.stats.buffersCreated;
  tidy(() => { full([1000], 1); full([1000], 2); });
  await rt.sync();
  assert.is(rt.stats.buffersCreated, before);
});

t.run();
