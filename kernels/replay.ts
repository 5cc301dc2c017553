// Replay sampling: draw minibatch indices with Philox inline and gather every field of the chosen rows in
// one dispatch. The store keeps each transition as one packed row
//   [obs (obsDim) | action (actDim) | reward | next obs (obsDim) | not-done]
// so a single read binding serves all five outputs.
import { flatEntry } from './common.ts';
import { PHILOX_WGSL } from './rng.ts';

/**
 * One invocation per (sample b, packed column c). Sample b's index is word b % 4 of Philox block b / 4
 * mapped into [0, high) by multiply-shift: exactly the value Generator.randint would give element b of a
 * draw at the same stream position. Rows are read from one chunk of the store, rows [lo, hi); a sample whose
 * index falls in another chunk is written by that chunk's dispatch.
 */
export function replaySampleSource(): string {
  return /* wgsl */ `
struct Params {
  batch: u32, high: u32, obsDim: u32, actDim: u32, width: u32, lo: u32, hi: u32,
  key_lo: u32, key_hi: u32, base_lo: u32, base_hi: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rows: array<f32>;
@group(0) @binding(2) var<storage, read_write> obs: array<f32>;
@group(0) @binding(3) var<storage, read_write> actions: array<f32>;
@group(0) @binding(4) var<storage, read_write> rewards: array<f32>;
@group(0) @binding(5) var<storage, read_write> nextObs: array<f32>;
@group(0) @binding(6) var<storage, read_write> notDone: array<f32>;
${PHILOX_WGSL}
${flatEntry()}
  if (i >= p.batch * p.width) { return; }
  let b = i / p.width;
  var c = i - b * p.width;
  var words = philox_block(vec2<u32>(p.key_lo, p.key_hi), p.base_lo, p.base_hi, b / 4u);
  let j = philox_below(words[b & 3u], p.high);
  if (j < p.lo || j >= p.hi) { return; }
  let v = rows[(j - p.lo) * p.width + c];
  if (c < p.obsDim) { obs[b * p.obsDim + c] = v; return; }
  c = c - p.obsDim;
  if (c < p.actDim) { actions[b * p.actDim + c] = v; return; }
  c = c - p.actDim;
  if (c == 0u) { rewards[b] = v; return; }
  c = c - 1u;
  if (c < p.obsDim) { nextObs[b * p.obsDim + c] = v; return; }
  notDone[b] = v;
}`;
}
