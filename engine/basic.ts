// Creation and copying on the GPU: fills, clones and the in-place accumulate.
import { kernel } from './kernel.ts';
import { runtime } from './runtime.ts';
import { empty, Tensor, type DType } from './tensor.ts';
import { axpySource, copySource, fillSource } from '../kernels/basic.ts';
import { flatGrid } from '../kernels/common.ts';

export function fill_(t: Tensor, value: number): Tensor {
  const k = kernel(`fill_${t.dtype}`, () => fillSource(t.dtype));
  runtime().dispatch(k, { out: t }, { n: t.size, value }, flatGrid(t.size));
  return t;
}

export function full(shape: readonly number[], value: number, dtype: DType = 'f32'): Tensor {
  return fill_(empty(shape, dtype), value);
}

export function zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  return full(shape, 0, dtype);
}

export function ones(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  return full(shape, 1, dtype);
}

/** dst += alpha * src, in place (no gradient is recorded). */
export function axpy_(dst: Tensor, src: Tensor, alpha = 1): Tensor {
  if (dst.size !== src.size) throw new Error(`axpy_: sizes differ (${dst.size} vs ${src.size})`);
  runtime().dispatch(kernel('axpy', axpySource), { src, dst }, { n: dst.size, alpha }, flatGrid(dst.size));
  return dst;
}

/** dst = src, in place. */
export function copy_(dst: Tensor, src: Tensor): Tensor {
  if (dst.size !== src.size) throw new Error(`copy_: sizes differ (${dst.size} vs ${src.size})`);
  runtime().dispatch(kernel('copy', copySource), { src, out: dst }, { n: dst.size }, flatGrid(dst.size));
  return dst;
}

/** A new tensor with the same contents (no gradient is recorded). */
export function clone(t: Tensor): Tensor {
  return copy_(empty(t.shape, t.dtype), t);
}
