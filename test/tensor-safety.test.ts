// A tensor's data can be reached only while it lives: reading or writing a disposed tensor (by dispose() or by
// the tidy scope that made it) throws instead of returning whatever its pooled buffer holds by then, and a
// tensor no kernel could bind is refused when it is made, before any work.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu } from './helpers.ts';
import { GPUEngineError } from '../engine/device.ts';
import { runtime } from '../engine/runtime.ts';
import { empty, tensor, tidy } from '../engine/tensor.ts';
import { add } from '../engine/ops/elementwise.ts';

const t = suite('tensor-safety');
t.before(gpu);

async function rejects(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable('expected a rejection');
}

t('reading or writing a disposed tensor throws, also after another tensor took its buffer', async () => {
  const a = tensor([1, 2, 3, 4]);
  a.dispose();
  const b = tensor([5, 6, 7, 8]);
  await rejects(a.read(), /read after dispose/);
  assert.throws(() => a.set([0, 0, 0, 0]), /written after dispose/);
  assert.equal([...(await b.read())], [5, 6, 7, 8], 'the tensor now holding the buffer is untouched');
  b.dispose();
});

t('a tensor freed by its tidy scope cannot be read', async () => {
  let inner = tensor([0]);
  const kept = tidy(() => {
    inner = add(tensor([1, 2]), 1);
    return add(inner, 1);
  });
  assert.ok(inner.isDisposed);
  await rejects(inner.read(), /read after dispose/);
  assert.equal([...(await kept.read())], [3, 4]);
  kept.dispose();
});

t('a tensor over the binding limit is refused when made, and the engine goes on', async () => {
  const limit = runtime().device.limits.maxStorageBufferBindingSize;
  const rows = Math.floor(limit / 4 / 16) + 1;
  assert.throws(() => empty([rows, 16]), (e: unknown) => e instanceof GPUEngineError && /maxStorageBufferBindingSize/.test((e as Error).message));
  const x = tidy(() => add(tensor([1, 2, 3]), 1));
  assert.equal([...(await x.read())], [2, 3, 4]);
  x.dispose();
});

t.run();
