// bench/step-profile.ts's arithmetic on made-up timings: families, per-step sums and medians.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatProfile, kernelFamily, profileStep } from '../bench/step-profile.ts';

const t = suite('step-profile');

t('a family is the kernel name up to its first underscore', () => {
  assert.is(kernelFamily('matmul_register-shared-r32-c1_s8_nA_nB'), 'matmul');
  assert.is(kernelFamily('matmulColumnSum_plain_s'), 'matmulColumnSum');
  assert.is(kernelFamily('polyak'), 'polyak');
});

t('each family gets its dispatches per step and the median of its per-step sums', async () => {
  const kernels = ['matmul_a', 'adamw_w4', 'matmul_b'];
  // per step: matmul = first + third, adamw = second; the first profiled call is discarded
  const steps = [
    [1, 0.5, 2],
    [10, 0.1, 0],
    [2, 0.25, 2],
  ];
  const calls: number[] = [];
  const rec = {
    dispatchCount: kernels.length,
    canProfile: true,
    async profile(n = 1) {
      calls.push(n);
      if (calls.length === 1) return kernels.map((kernel) => ({ kernel, ms: 1000 }));
      return steps.flatMap((ms) => ms.map((x, i) => ({ kernel: kernels[i]!, ms: x })));
    },
  };
  const p = (await profileStep(rec, 3))!;
  assert.equal(calls, [1, 3]);
  assert.is(p.dispatches, 3);
  assert.is(p.profiledSteps, 3);
  assert.equal(p.families.map((f) => [f.family, f.dispatches, f.ms]), [['matmul', 2, 4], ['adamw', 1, 0.25]]);
  assert.is(p.gpuMs, 4.25);
  const text = formatProfile('step', p, 5, 0.1, 1);
  assert.match(text, /3 dispatches, GPU 4\.25 ms\/step/);
  assert.match(text, /\(1 more families\)\s+1 disp\s+0\.25 ms/);
});

t('a device without timestamps gives no profile', async () => {
  const rec = { dispatchCount: 1, canProfile: false, profile: async () => [] };
  assert.is(await profileStep(rec, 3), null);
});

t.run();
