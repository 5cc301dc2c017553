import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { gpu } from './helpers.ts';
import { kernel } from '../engine/kernel.ts';
import { runtime } from '../engine/runtime.ts';
import { empty, tensor } from '../engine/tensor.ts';
import { fill_ } from '../engine/basic.ts';
import { NO_ADAPTER_MESSAGE } from '../engine/device.ts';

const t = suite('runtime');
t.before(gpu);

const root = fileURLToPath(new URL('..', import.meta.url));

t('without an adapter the engine says how to get one', () => {
  const r = spawnSync(process.execPath, ['scripts/adapter.ts'], {
    cwd: root,
    env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent-icd.json', VK_DRIVER_FILES: '/nonexistent-icd.json' },
    encoding: 'utf8',
  });
  assert.is(r.status, 1);
  assert.ok(r.stderr.includes(NO_ADAPTER_MESSAGE), r.stderr);
  assert.match(NO_ADAPTER_MESSAGE, /mesa-vulkan-drivers/);
});

t('the engine runs on a device handed in by another program and leaves it usable', () => {
  const r = spawnSync(process.execPath, ['test/fixtures/embed.ts'], { cwd: root, encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(out, { values: [3.5, 3.5, 3.5, 3.5, 3.5], sameDevice: true, stillUsable: true });
});

t('a kernel that fails to compile is named in the error', async () => {
  const bad = kernel('deliberately_broken', () => `
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1) fn main() { out[0] = undefined_symbol; }`);
  const out = empty([1]);
  runtime().dispatch(bad, { out }, null, [1]);
  let message = '';
  try {
    await runtime().sync();
  } catch (e) {
    message = (e as Error).message;
  }
  assert.match(message, /deliberately_broken/);
  out.dispose();
});

t('missing bindings and oversized grids are rejected before encoding', () => {
  const k = kernel('two_buffers', () => `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@compute @workgroup_size(1) fn main() { b[0] = a[0]; }`);
  const a = tensor([1]);
  assert.throws(() => runtime().dispatch(k, { a }, null, [1]), /two_buffers: no buffer given for binding b/);
  const b = empty([1]);
  assert.throws(() => runtime().dispatch(k, { a, b }, null, [1e6]), /exceeds the device limit/);
  a.dispose();
  b.dispose();
});

t('uniforms are packed by name from the reflected layout', async () => {
  const k = kernel('uniform_pack', () => `
struct P { n: u32, scale: f32, shift: i32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1) fn main() { out[0] = f32(p.n) * p.scale + f32(p.shift); }`);
  assert.equal(k.uniform?.fields.map((f) => [f.name, f.offset, f.type]), [['n', 0, 'u32'], ['scale', 4, 'f32'], ['shift', 8, 'i32']]);
  const out = empty([1]);
  runtime().dispatch(k, { out }, { n: 7, scale: 0.5, shift: -3 }, [1]);
  assert.is(await out.item(), 0.5);
  assert.throws(() => runtime().dispatch(k, { out }, { n: 7, scale: 0.5 }, [1]), /uniform field shift not given/);
  out.dispose();
});

t('a repeated dispatch reuses its bind group, and evicted uniforms are never bound again', async () => {
  const rt = runtime();
  const out = empty([3]);
  fill_(out, 1.25);
  await rt.sync();
  const created = rt.stats.bindGroupsCreated;
  for (let i = 0; i < 10; i++) fill_(out, 1.25);
  assert.is(rt.stats.bindGroupsCreated, created, 'no bind group built for an identical dispatch');
  // more distinct uniform contents than the cache holds: the first value's buffer is evicted and destroyed
  for (let i = 0; i < 8300; i++) fill_(out, 1000 + i);
  await rt.sync();
  fill_(out, 1.25);
  assert.equal([...(await out.read())], [1.25, 1.25, 1.25]);
  await rt.sync();
  out.dispose();
});

t.run();
