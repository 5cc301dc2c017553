// Elementwise programs generated from one WGSL expression over named operands: a map that writes one output
// element per broadcast index, and a reduce that sums the expression over broadcast axes (the backward of a
// broadcasting op). Operands are tensors (read through per-dimension strides, 0 on broadcast axes) or scalars
// held in the uniform struct. Shapes and strides are uniforms, so a program serves every shape; only the
// expression, the operand names and kinds, and the index variant are baked into the code.
import { ACTIVATION_HELPERS } from './common.ts';

/** Dimensions an elementwise program indexes after adjacent compatible dimensions are merged. */
export const EW_RANK = 4;
export const MAP_WG = 256;
/**
 * Elements per invocation of a map: amortises launch and index setup. On lavapipe, 1M-element maps ran
 * several times faster with 16 per invocation than with 1 (broadcasting ones the most).
 */
export const MAP_PER_THREAD = 16;
export const REDUCE_WG = 64;

export type OperandKind = 'tensor' | 'scalar';

export interface OperandSpec {
  /** The WGSL identifier the expression uses for this operand's value. */
  name: string;
  kind: OperandKind;
}

/**
 * How a map computes each operand's index: `flat` when every tensor operand is either contiguous with the
 * output or a single element (index = e * stride), `nd` otherwise (the flat index is split into EW_RANK
 * coordinates).
 */
export type MapVariant = 'flat' | 'nd';

/** Helper functions the operator expressions may call, beyond the activations. */
const EXTRA_HELPERS = /* wgsl */ `
fn wd_pow(x: f32, e: f32) -> f32 {
  if (x == 0.0) { return select(0.0, 1.0, e == 0.0); }
  let m = pow(abs(x), e);
  // a negative base keeps its sign under an odd integer exponent
  if (x < 0.0 && fract(e * 0.5) != 0.0) { return -m; }
  return m;
}
`;

// Identifiers the generated code declares itself; an operand may not take one of these names.
const RESERVED = new Set(['p', 'out', 'main', 'wid', 'lid', 'nwg', 'gid', 'first', 'e', 'q', 't', 'part', 'j', 'start', 'end', 'acc', 'r', 'c0', 'c1', 'c2', 'c3', 'kc0', 'kc1', 'kc2', 'kc3', 'rc0', 'rc1', 'rc2', 'rc3']);

function checkNames(operands: readonly OperandSpec[]): void {
  for (const o of operands) {
    if (!/^[a-z][a-z0-9]*$/.test(o.name) || RESERVED.has(o.name)) throw new Error(`elementwise operand name '${o.name}' is not usable in generated WGSL`);
  }
}

function uniformFields(fields: [string, 'u32' | 'f32'][]): string {
  return `struct Params {\n${fields.map(([n, t]) => `  ${n}: ${t},`).join('\n')}\n}`;
}

function bindings(operands: readonly OperandSpec[]): string {
  let b = 1;
  const lines = ['@group(0) @binding(0) var<uniform> p: Params;'];
  for (const o of operands) {
    if (o.kind === 'tensor') lines.push(`@group(0) @binding(${b++}) var<storage, read> x_${o.name}: array<f32>;`);
  }
  lines.push(`@group(0) @binding(${b}) var<storage, read_write> out: array<f32>;`);
  return lines.join('\n');
}

function strideFields(operands: readonly OperandSpec[], perDim: boolean): [string, 'u32' | 'f32'][] {
  const f: [string, 'u32' | 'f32'][] = [];
  for (const o of operands) {
    if (o.kind === 'tensor') {
      if (perDim) for (let d = 0; d < EW_RANK; d++) f.push([`${o.name}_s${d}`, 'u32']);
      else f.push([`${o.name}_s`, 'u32']);
    } else f.push([`${o.name}_v`, 'f32']);
  }
  return f;
}

/** WGSL `let` bindings of every operand's value; `coord(d)` is the expression for coordinate d. */
function loads(operands: readonly OperandSpec[], coord: ((d: number) => string) | null, flatIndex: string): string {
  return operands
    .map((o) => {
      if (o.kind === 'scalar') return `    let ${o.name} = p.${o.name}_v;`;
      if (!coord) return `    let ${o.name} = x_${o.name}[${flatIndex} * p.${o.name}_s];`;
      const idx = Array.from({ length: EW_RANK }, (_, d) => `${coord(d)} * p.${o.name}_s${d}`).join(' + ');
      return `    let ${o.name} = x_${o.name}[${idx}];`;
    })
    .join('\n');
}

/**
 * out[e] = expr for every output element e < n. In the `nd` variant the output's (merged) shape is
 * [*, d1, d2, d3] and operand k is read at sum_d c_d * k_s{d}.
 */
export function mapSource(expr: string, operands: readonly OperandSpec[], variant: MapVariant): string {
  checkNames(operands);
  return variant === 'flat' ? flatMapSource(expr, operands) : ndMapSource(expr, operands);
}

const ENTRY = (wg: number) => `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {`;

function preamble(fields: [string, 'u32' | 'f32'][], operands: readonly OperandSpec[]): string {
  return `${uniformFields(fields)}\n${bindings(operands)}\n${ACTIVATION_HELPERS}\n${EXTRA_HELPERS}`;
}

// Neighbouring lanes take neighbouring elements, so loads and stores stay contiguous across a SIMD row.
function flatMapSource(expr: string, operands: readonly OperandSpec[]): string {
  const block = MAP_WG * MAP_PER_THREAD;
  return /* wgsl */ `
${preamble([['n', 'u32'], ...strideFields(operands, false)], operands)}
${ENTRY(MAP_WG)}
  let start = (wid.x + wid.y * nwg.x) * ${block}u;
  // a bound that depends on n keeps the compiler from unrolling the loop, which multiplied build times
  let end = min(p.n, start + ${block}u);
  for (var e = start + lid; e < end; e += ${MAP_WG}u) {
${loads(operands, null, 'e')}
    out[e] = ${expr};
  }
}`;
}

// Each invocation takes a run of consecutive elements and steps its coordinates like an odometer: integer
// division is costly on CPU adapters, so it is paid once per run rather than per element.
function ndMapSource(expr: string, operands: readonly OperandSpec[]): string {
  const dims: [string, 'u32' | 'f32'][] = Array.from({ length: EW_RANK - 1 }, (_, d) => [`d${d + 1}`, 'u32']);
  return /* wgsl */ `
${preamble([['n', 'u32'], ...dims, ...strideFields(operands, true)], operands)}
${ENTRY(MAP_WG)}
  let first = ((wid.x + wid.y * nwg.x) * ${MAP_WG}u + lid) * ${MAP_PER_THREAD}u;
  if (first >= p.n) { return; }
  let end = min(p.n, first + ${MAP_PER_THREAD}u);
  var c3 = first % p.d3;
  var q = first / p.d3;
  var c2 = q % p.d2;
  q = q / p.d2;
  var c1 = q % p.d1;
  var c0 = q / p.d1;
  for (var e = first; e < end; e++) {
${loads(operands, (d) => `c${d}`, '')}
    out[e] = ${expr};
${odometer('c', 'p.d')}
  }
}`;
}

/** WGSL that advances coordinates {v}0..{v}3 by one step within extents {ext}1..{ext}3. */
function odometer(v: string, ext: string): string {
  return `    ${v}3 += 1u;
    if (${v}3 == ${ext}3) {
      ${v}3 = 0u;
      ${v}2 += 1u;
      if (${v}2 == ${ext}2) {
        ${v}2 = 0u;
        ${v}1 += 1u;
        if (${v}1 == ${ext}1) {
          ${v}1 = 0u;
          ${v}0 += 1u;
        }
      }
    }`;
}

function reduceFields(operands: readonly OperandSpec[]): [string, 'u32' | 'f32'][] {
  const f: [string, 'u32' | 'f32'][] = [['kept', 'u32'], ['total', 'u32'], ['reduced', 'u32'], ['chunk', 'u32']];
  for (let d = 1; d < EW_RANK; d++) f.push([`kd${d}`, 'u32']);
  for (let d = 1; d < EW_RANK; d++) f.push([`rd${d}`, 'u32']);
  return [...f, ...strideFields(operands, true)];
}

/**
 * Sums expr over the reduced axes. Every (merged) axis d is either kept (extent kd{d}, rd{d} = 1) or reduced
 * (extent rd{d}, kd{d} = 1), so its coordinate is kc{d} + rc{d}. Invocation t handles kept element
 * j = t % kept and the t / kept-th chunk of `chunk` reduction steps, writing out[t]; with more than one chunk
 * the caller sums the partial rows in a second pass. Partial sums keep f32 error small and give a GPU
 * parallelism when few elements are kept. No workgroup memory or barriers (slow on software adapters).
 */
export function reduceSource(expr: string, operands: readonly OperandSpec[]): string {
  checkNames(operands);
  return /* wgsl */ `
${preamble(reduceFields(operands), operands)}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * ${REDUCE_WG}u;
  if (t >= p.total) { return; }
  let part = t / p.kept;
  let j = t - part * p.kept;
  let kc3 = j % p.kd3;
  var q = j / p.kd3;
  let kc2 = q % p.kd2;
  q = q / p.kd2;
  let kc1 = q % p.kd1;
  let kc0 = q / p.kd1;
  let start = part * p.chunk;
  let end = min(p.reduced, start + p.chunk);
  var rc3 = start % p.rd3;
  q = start / p.rd3;
  var rc2 = q % p.rd2;
  q = q / p.rd2;
  var rc1 = q % p.rd1;
  var rc0 = q / p.rd1;
  var acc = 0.0;
  for (var r = start; r < end; r++) {
    let c0 = kc0 + rc0;
    let c1 = kc1 + rc1;
    let c2 = kc2 + rc2;
    let c3 = kc3 + rc3;
${loads(operands, (d) => `c${d}`, '')}
    acc += ${expr};
${odometer('rc', 'p.rd')}
  }
  out[t] = acc;
}`;
}
