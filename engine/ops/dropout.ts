// Inverted dropout: in training each element is zeroed with probability p and the survivors are scaled by
// 1/(1-p), so the expected output equals the input and evaluation needs no rescaling.
import { needsGrad, record } from '../autograd.ts';
import { zeros } from '../basic.ts';
import { kernel } from '../kernel.ts';
import type { Generator, PhiloxPosition } from '../random.ts';
import { runtime } from '../runtime.ts';
import { empty, type Tensor } from '../tensor.ts';
import { dropoutSource } from '../../kernels/dropout.ts';
import { flatGrid } from '../../kernels/common.ts';

function applyMask(x: Tensor, p: number, position: PhiloxPosition): Tensor {
  const out = empty(x.shape);
  const blocks = Math.ceil(x.size / 4);
  runtime().dispatch(kernel('dropout', dropoutSource), { x, out }, [{ n: x.size, p, scale: 1 / (1 - p) }, position], flatGrid(blocks));
  return out;
}

/**
 * Zeroes each element with probability p (drawn from the generator, which advances by ceil(n/4) blocks) and
 * scales the rest by 1/(1-p). Always returns a new tensor. The mask is the one `generator.uniform(x.shape)
 * >= p` would give at the same counter.
 */
export function dropout(x: Tensor, p: number, generator: Generator): Tensor {
  if (x.dtype !== 'f32') throw new Error(`dropout: needs an f32 tensor, got ${x.dtype} [${x.shape}]`);
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  if (p === 1) {
    const out = zeros(x.shape);
    record('dropout', [x], [out], () => [zeros(x.shape)]);
    return out;
  }
  const position = generator.reserve(x.size);
  const out = applyMask(x, p, position);
  if (needsGrad(x)) record('dropout', [x], [out], ([g]) => [g ? applyMask(g, p, position) : null]);
  return out;
}
