// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) in WGSL, and the
// fill kernels built on it. Philox is a keyed bijection on 128-bit counters, so any element's random bits are a
// pure function of (key, counter): kernels need no state, and other kernels can call the same WGSL helpers to
// draw noise inline.
//
// Stream layout shared by every kernel here (and by engine/random.ts):
//   key     = (seed_lo, seed_hi)                       the generator's seed as two 32-bit words
//   counter = (lo32(base + b), hi32(base + b), 0, 0)   block b of a draw whose first block is `base`
//   element i of a draw uses block b = i / 4:
//     bits, randint, uniform: word i % 4 of the block
//     normal: words (0, 1) give elements 4b, 4b+1 (cos, sin of one Box-Muller pair); words (2, 3) give 4b+2, 4b+3
// A draw of n elements therefore consumes ceil(n / 4) blocks.
import { flatEntry } from './common.ts';

export type RngDistribution = 'bits' | 'randint' | 'uniform' | 'normal';

/** WGSL: Philox 4x32-10 and the conversions from random words to floats. */
export const PHILOX_WGSL = /* wgsl */ `
const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// High 32 bits of the 64-bit product a*b, from 16-bit halves (WGSL has no 64-bit integers).
fn philox_mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let ll = al * bl;
  let lh = al * bh;
  let hl = ah * bl;
  let hh = ah * bh;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var round = 0u; round < 10u; round++) {
    if (round > 0u) {
      k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
    }
    let hi0 = philox_mulhi(PHILOX_M0, c.x);
    let lo0 = PHILOX_M0 * c.x;
    let hi1 = philox_mulhi(PHILOX_M1, c.z);
    let lo1 = PHILOX_M1 * c.z;
    c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}

// Block number (base_hi:base_lo) + index of the stream keyed by key (64-bit block numbers).
fn philox_block(key: vec2<u32>, base_lo: u32, base_hi: u32, index: u32) -> vec4<u32> {
  let lo = base_lo + index;
  let hi = base_hi + select(0u, 1u, lo < base_lo);
  return philox4x32_10(vec4<u32>(lo, hi, 0u, 0u), key);
}

// [0, 1) from the top 24 bits: every value is exact in f32 and the largest is 1 - 2^-24, never 1.
fn philox_unit(x: u32) -> f32 {
  return f32(x >> 8u) * 5.9604644775390625e-8;
}

// -ln(u) for u = ((x >> 8) + 0.5) / 2^24, an open (0, 1) variate, so log never sees 0, with small relative
// error everywhere. WGSL only bounds log's absolute error near 1 (2^-21), which would make the Box-Muller
// radius coarse exactly where it is small, and f32 cannot hold u exactly above 0.5; there the distance
// e = 1 - u is formed exactly from the bits and -ln(u) = 2 atanh(s), s = e / (2 - e) <= 1/7, is summed.
fn philox_neg_log_open(x: u32) -> f32 {
  let m = x >> 8u;
  if (m < 0xC00000u) {
    return -log((f32(m) + 0.5) * 5.9604644775390625e-8);
  }
  let e = (f32(0xFFFFFFu - m) + 0.5) * 5.9604644775390625e-8;
  let s = e / (2.0 - e);
  let s2 = s * s;
  return 2.0 * s * (1.0 + s2 * (0.3333333333 + s2 * (0.2 + s2 * (0.1428571429 + s2 * (0.1111111111 + s2 * 0.0909090909)))));
}

// Two independent N(0, 1) values from two random words (Box-Muller). The angle is taken in [-pi, pi), where
// WGSL's sin and cos are accurate.
fn philox_box_muller(x: u32, y: u32) -> vec2<f32> {
  let r = sqrt(2.0 * philox_neg_log_open(x));
  let theta = 6.283185307179586 * (philox_unit(y) - 0.5);
  return vec2<f32>(r * cos(theta), r * sin(theta));
}

// Lemire's multiply-shift: floor(x * high / 2^32), in [0, high); bias at most high / 2^32.
fn philox_below(x: u32, high: u32) -> u32 {
  return philox_mulhi(x, high);
}
`;

function outputType(dist: RngDistribution): string {
  return dist === 'bits' || dist === 'randint' ? 'u32' : 'f32';
}

function paramsFor(dist: RngDistribution): string {
  const common = 'n: u32, key_lo: u32, key_hi: u32, base_lo: u32, base_hi: u32';
  switch (dist) {
    case 'bits':
      return common;
    case 'randint':
      return `${common}, high: u32`;
    case 'uniform':
      return `${common}, lo: f32, scale: f32`;
    case 'normal':
      return `${common}, mean: f32, stddev: f32`;
  }
}

function blockValues(dist: RngDistribution): string {
  switch (dist) {
    case 'bits':
      return 'let v = r;';
    case 'randint':
      return 'let v = vec4<u32>(philox_below(r.x, p.high), philox_below(r.y, p.high), philox_below(r.z, p.high), philox_below(r.w, p.high));';
    case 'uniform':
      return 'let v = p.lo + p.scale * vec4<f32>(philox_unit(r.x), philox_unit(r.y), philox_unit(r.z), philox_unit(r.w));';
    case 'normal':
      return 'let v = p.mean + p.stddev * vec4<f32>(philox_box_muller(r.x, r.y), philox_box_muller(r.z, r.w));';
  }
}

/** Fills out[0..n) with one distribution; one invocation per Philox block (four elements). */
export function rngFillSource(dist: RngDistribution): string {
  return /* wgsl */ `
struct Params { ${paramsFor(dist)} }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<${outputType(dist)}>;
${PHILOX_WGSL}
${flatEntry()}
  let first = i * 4u;
  if (first >= p.n) { return; }
  let r = philox_block(vec2<u32>(p.key_lo, p.key_hi), p.base_lo, p.base_hi, i);
  ${blockValues(dist)}
  out[first] = v.x;
  if (first + 1u < p.n) { out[first + 1u] = v.y; }
  if (first + 2u < p.n) { out[first + 2u] = v.z; }
  if (first + 3u < p.n) { out[first + 3u] = v.w; }
}`;
}
