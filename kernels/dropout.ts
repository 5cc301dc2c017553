// Dropout with its mask drawn inline from the Philox stream instead of stored: element i keeps its value when
// the uniform number of word i % 4 of block base + i / 4 (the layout of Generator.uniform) is >= p. The
// backward pass runs the same kernel on the output gradient with the same stream position, so it applies
// exactly the forward mask without keeping it in memory.
import { flatEntry } from './common.ts';
import { PHILOX_WGSL } from './rng.ts';

/** out[i] = keep(i) ? x[i] * scale : 0; one invocation per Philox block (four elements). */
export function dropoutSource(): string {
  return /* wgsl */ `
struct Params { n: u32, key_lo: u32, key_hi: u32, base_lo: u32, base_hi: u32, p: f32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${PHILOX_WGSL}
fn dropped(word: u32, value: f32) -> f32 {
  return select(0.0, value * p.scale, philox_unit(word) >= p.p);
}
${flatEntry()}
  let first = i * 4u;
  if (first >= p.n) { return; }
  let r = philox_block(vec2<u32>(p.key_lo, p.key_hi), p.base_lo, p.base_hi, i);
  out[first] = dropped(r.x, x[first]);
  if (first + 1u < p.n) { out[first + 1u] = dropped(r.y, x[first + 1u]); }
  if (first + 2u < p.n) { out[first + 2u] = dropped(r.z, x[first + 2u]); }
  if (first + 3u < p.n) { out[first + 3u] = dropped(r.w, x[first + 3u]); }
}`;
}
