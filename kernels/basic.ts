// Whole-tensor fills and copies, and the in-place accumulate the autograd uses to sum gradients.
import { flatEntry } from './common.ts';

export function fillSource(dtype: 'f32' | 'u32' | 'i32'): string {
  return /* wgsl */ `
struct Params { n: u32, value: ${dtype} }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<${dtype}>;
${flatEntry()}
  if (i >= p.n) { return; }
  out[i] = p.value;
}`;
}

/** dst = dst + alpha * src */
export function axpySource(): string {
  return /* wgsl */ `
struct Params { n: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
${flatEntry()}
  if (i >= p.n) { return; }
  dst[i] = dst[i] + p.alpha * src[i];
}`;
}

/** out = src, element by element (any 32-bit dtype: the bits are moved unchanged) */
export function copySource(): string {
  return /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
${flatEntry()}
  if (i >= p.n) { return; }
  out[i] = src[i];
}`;
}
