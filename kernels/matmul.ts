// Matrix products C = op(A) op(B) in two families, with a fused epilogue (bias, activation, saved
// pre-activation) and an optional fused prologue on A (A = dY * act'(Z), the gradient through an activation).
//
// 'register' (software adapters): no workgroup memory and no barriers. Every lane owns four adjacent output
// columns; lanes that share a subgroup load disjoint parts of the A block and pass values to each other with
// subgroupBroadcast, so every element of A and B is read once per subgroup tile. Software rasterisers turn
// each per-lane storage read into a scalar loop with a bounds check, so fewer reads beat everything else there.
// Without subgroups, each invocation reads its own rows.
//
// 'tiled' (GPUs): square output tiles in workgroup memory (32x32 by default), each invocation 4 (or 8) rows
// x 4 columns, K in slices of 32, vec4 reads where the contiguous axis allows.
//
// Tile sizes are parameters (RegisterConfig, TiledConfig) so that engine/tune.ts can pick them per adapter;
// MATMUL_KERNELS_VERSION names the generated code, so tuning results from older kernels are not reused.
//
// Shapes travel in the uniform (M, N, K); the layout of each operand (transposed, vec4-readable) is baked in.
import { ACTIVATION_HELPERS, actForward, flatEntry, type Activation } from './common.ts';

export interface MatmulSpec {
  transA: boolean;
  transB: boolean;
  /** A's contiguous axis (K, or M when transposed) is a multiple of 4: A is read as vec4. */
  vecA: boolean;
  /** B's contiguous axis (N, or K when transposed) is a multiple of 4. */
  vecB: boolean;
  /** N is a multiple of 4: C, bias and the pre-activation are read and written as vec4. */
  vecC: boolean;
  bias: boolean;
  act: Activation;
  /** Also write act's input (for a backward that needs it). */
  writePre: boolean;
  /**
   * A is the gradient dY of an activation's output; the product uses dY * act'(.) with act' taken from `az`
   * (the saved pre-activation for 'pre', the activation's output for 'out'), laid out like A.
   */
  gradAct: Activation | null;
  gradFrom: 'pre' | 'out';
}

/** Launch geometry of one generated program: output rows and columns covered by one workgroup. */
export interface MatmulTile {
  rows: number;
  cols: number;
}

/** Bumped whenever the generated products change in a way that can change their speed. */
export const MATMUL_KERNELS_VERSION = 3;

export interface RegisterConfig {
  /** Subgroup size to share loads across (a power of two >= 4), or null to read per invocation. */
  subgroup: number | null;
  /**
   * Rows per subgroup tile when sharing (rounded to a multiple of the subgroup size), rows per invocation
   * without (a multiple of 4).
   */
  rows?: number;
  /** Groups of four columns per lane. */
  colGroups?: number;
}

export interface TiledConfig {
  /** Edge of the square output tile one workgroup computes: 16, 32 or 64. */
  tile: number;
  /** Output rows per invocation (times 4 columns): 4 or 8, at most the tile edge. */
  rowsPerThread: number;
}

export function specKey(s: MatmulSpec): string {
  return [
    s.transA ? 'tA' : 'nA',
    s.transB ? 'tB' : 'nB',
    s.vecA ? 'vA' : 'sA',
    s.vecB ? 'vB' : 'sB',
    s.vecC ? 'vC' : 'sC',
    s.bias ? 'bias' : 'nobias',
    s.act,
    s.writePre ? 'pre' : 'nopre',
    s.gradAct ? `g${s.gradAct}-${s.gradFrom}` : 'plain',
  ].join('_');
}

/** Rows per invocation of the register family without sharing, and invocations per workgroup. */
const SOLO_ROWS = 8;
const SOLO_WG: [number, number] = [8, 8];
/** Target rows per subgroup tile when loads are shared: large enough to amortise B, small enough to fit. */
const SHARED_ROWS = 32;
const COL_GROUPS = 1;

function sharedLoads(cfg: RegisterConfig): number {
  return Math.max(1, Math.round((cfg.rows ?? SHARED_ROWS) / cfg.subgroup!));
}

/** Output rows each lane accumulates. */
function registerRows(cfg: RegisterConfig): number {
  return cfg.subgroup ? cfg.subgroup * sharedLoads(cfg) : (cfg.rows ?? SOLO_ROWS);
}

export function registerTile(cfg: RegisterConfig): MatmulTile {
  const RN = cfg.colGroups ?? COL_GROUPS;
  if (cfg.subgroup) return { rows: registerRows(cfg), cols: 4 * cfg.subgroup * RN };
  return { rows: registerRows(cfg) * SOLO_WG[1], cols: 4 * SOLO_WG[0] * RN };
}

export const DEFAULT_TILED: TiledConfig = { tile: 32, rowsPerThread: 4 };

export function tiledTile(cfg: TiledConfig): MatmulTile {
  return { rows: cfg.tile, cols: cfg.tile };
}

// ---- shared WGSL pieces ----

/** act'(y) written in terms of the activation's output, for the activations where that is exact. */
export function actDerivativeFromOutput(act: Activation, y: string): string {
  switch (act) {
    case 'identity':
      return '1.0';
    case 'relu':
      return `select(0.0, 1.0, (${y}) > 0.0)`;
    case 'sigmoid':
      return `((${y}) * (1.0 - (${y})))`;
    case 'tanh':
      return `(1.0 - (${y}) * (${y}))`;
    default:
      throw new Error(`act'(y) is not a function of the output for ${act}`);
  }
}

/** Whether a backward through act needs the pre-activation (otherwise the output or nothing suffices). */
export function needsPreActivation(act: Activation): boolean {
  return act === 'silu' || act === 'mish';
}

function derivExpr(act: Activation, from: 'pre' | 'out', v: string): string {
  if (from === 'out') return actDerivativeFromOutput(act, v);
  switch (act) {
    case 'identity':
      return '1.0';
    case 'relu':
      return `select(0.0, 1.0, (${v}) > 0.0)`;
    case 'sigmoid':
      return `wd_dsigmoid(${v})`;
    case 'tanh':
      return `wd_dtanh(${v})`;
    case 'silu':
      return `wd_dsilu(${v})`;
    case 'mish':
      return `wd_dmish(${v})`;
  }
}

function vec4Map(v: string, f: (c: string) => string): string {
  return `vec4<f32>(${['x', 'y', 'z', 'w'].map((c) => f(`${v}.${c}`)).join(', ')})`;
}

function actVec4(act: Activation, v: string): string {
  if (act === 'identity') return v;
  if (act === 'relu') return `max(${v}, vec4<f32>(0.0))`;
  return vec4Map(v, (c) => actForward(act, c));
}

/** Declarations, scalar/vec4 accessors for A and B and the epilogue writer, common to both families. */
function preamble(s: MatmulSpec, extraEnable: string): string {
  const L: string[] = [];
  if (extraEnable) L.push(extraEnable);
  L.push('struct Params { M: u32, N: u32, K: u32 }');
  let n = 0;
  const decl = (name: string, vec: boolean, rw = false) =>
    L.push(`@group(0) @binding(${n++}) var<${rw ? 'storage, read_write' : 'storage, read'}> ${name}: array<${vec ? 'vec4<f32>' : 'f32'}>;`);
  L.push(`@group(0) @binding(${n++}) var<uniform> p: Params;`);
  decl('a', s.vecA);
  if (s.gradAct) decl('az', s.vecA);
  decl('b', s.vecB);
  if (s.bias) decl('bias', s.vecC);
  decl('out', s.vecC, true);
  if (s.writePre) decl('pre', s.vecC, true);
  const needsHelpers = s.act !== 'identity' && s.act !== 'relu';
  const gradHelpers = s.gradAct !== null && s.gradFrom === 'pre' && s.gradAct !== 'identity' && s.gradAct !== 'relu';
  if (needsHelpers || gradHelpers) L.push(ACTIVATION_HELPERS);

  // A element i of the flat storage, and the vec4 starting at element 4*i4 (only when vecA).
  const scalarA = s.vecA ? (i: string, arr: string) => `${arr}[(${i}) >> 2u][(${i}) & 3u]` : (i: string, arr: string) => `${arr}[${i}]`;
  if (s.gradAct) {
    const g = s.gradAct;
    L.push(`fn ldA(i: u32) -> f32 {
  let z = ${scalarA('i', 'az')};
  return ${scalarA('i', 'a')} * ${derivExpr(g, s.gradFrom, 'z')};
}`);
    if (s.vecA) {
      L.push(`fn ldA4(i4: u32) -> vec4<f32> {
  let z = az[i4];
  return a[i4] * ${g === 'identity' ? 'vec4<f32>(1.0)' : vec4Map('z', (c) => derivExpr(g, s.gradFrom, c))};
}`);
    }
  } else {
    L.push(`fn ldA(i: u32) -> f32 { return ${scalarA('i', 'a')}; }`);
    if (s.vecA) L.push('fn ldA4(i4: u32) -> vec4<f32> { return a[i4]; }');
  }
  L.push(`fn ldB(i: u32) -> f32 { return ${s.vecB ? 'b[i >> 2u][i & 3u]' : 'b[i]'}; }`);

  // Writes the four columns col..col+3 of one row (the ones inside N).
  const W: string[] = [];
  W.push('fn emit(row: u32, col: u32, acc: vec4<f32>) {');
  W.push('  let N = p.N;');
  W.push('  if (row >= p.M || col >= N) { return; }');
  if (s.bias) {
    if (s.vecC) W.push('  let z = acc + bias[col >> 2u];');
    else W.push('  let z = acc + vec4<f32>(bias[col], bias[min(col + 1u, N - 1u)], bias[min(col + 2u, N - 1u)], bias[min(col + 3u, N - 1u)]);');
  } else {
    W.push('  let z = acc;');
  }
  W.push(`  let y = ${actVec4(s.act, 'z')};`);
  if (s.vecC) {
    W.push('  let o = (row * N + col) >> 2u;');
    W.push('  out[o] = y;');
    if (s.writePre) W.push('  pre[o] = z;');
  } else {
    W.push('  let o = row * N + col;');
    W.push('  out[o] = y.x;');
    if (s.writePre) W.push('  pre[o] = z.x;');
    for (let c = 1; c < 4; c++) {
      const comp = 'xyzw'[c];
      W.push(`  if (col + ${c}u < N) { out[o + ${c}u] = y.${comp};${s.writePre ? ` pre[o + ${c}u] = z.${comp};` : ''} }`);
    }
  }
  W.push('}');
  L.push(W.join('\n'));
  return L.join('\n');
}

// ---- register family ----

/**
 * The register-blocked program. Each lane accumulates TM rows x 4 columns (per column group). With a
 * subgroup of S lanes the workgroup is one subgroup covering TM = S*RA rows and 4S columns: per step of four
 * k, lane l reads RA vec4s of the A block (block slots q = l + S*r) and its own 4 columns of B; A values
 * reach the other lanes by subgroupBroadcast with constant lane indices. Without subgroups a lane reads all
 * TM slots itself (workgroups of 8x8 such lanes).
 */
export function registerMatmulSource(s: MatmulSpec, cfg: RegisterConfig): string {
  const S = cfg.subgroup ?? SOLO_WG[0];
  const shared = cfg.subgroup !== null;
  const RA = shared ? sharedLoads(cfg) : 0;
  const TM = registerRows(cfg);
  if (TM % 4 !== 0 || TM < 4) throw new Error(`register matmul: ${TM} rows per tile is not a positive multiple of 4`);
  const RN = cfg.colGroups ?? COL_GROUPS;
  if (!Number.isInteger(RN) || RN < 1) throw new Error(`register matmul: ${RN} column groups`);
  const WY = shared ? 1 : SOLO_WG[1];
  const L: string[] = [];
  L.push(preamble(s, shared ? 'enable subgroups;' : ''));
  L.push(`@compute @workgroup_size(${S}, ${WY})`);
  L.push(
    `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>${shared ? ', @builtin(subgroup_invocation_id) sgl: u32' : ''}) {`,
  );
  L.push('  let M = p.M; let N = p.N; let K = p.K;');
  L.push(`  let lane = ${shared ? 'sgl' : 'lid.x'};`);
  L.push(`  let row0 = ${shared ? `wid.y * ${TM}u` : `(wid.y * ${WY}u + lid.y) * ${TM}u`};`);
  // Column group j of this lane starts at col{j}; across lanes each group is one contiguous run.
  for (let j = 0; j < RN; j++) L.push(`  let col${j} = (wid.x * ${S * RN}u + ${j * S}u + lane) * 4u;`);
  L.push('  let K4 = K / 4u;');
  // Every quad of k is read whole when K % 4 == 0 is implied by the layout; otherwise reads past K are
  // clamped into range and zeroed, so the last quad needs no separate loop.
  const kExact = (!s.transA && s.vecA) || (s.transB && s.vecB);
  const kq = kExact ? 'K4' : '(K + 3u) / 4u';
  const zeroPast = (v: string, k: string, zero: string) => (kExact ? v : `select(${zero}, ${v}, ${k} < K)`);
  const kClamp = (k: string) => (kExact ? `(${k})` : `min(${k}, K - 1u)`);

  // A block slots loaded by this lane: q = lane + S*r (shared) or q = r (solo), r < nLoads.
  const nLoads = shared ? RA : TM;
  const slot = (r: number) => (shared ? `(lane + ${S * r}u)` : `${r}u`);
  const aTransVec = s.transA && s.vecA;
  // Per-slot address terms, fixed for the whole K loop.
  for (let r = 0; r < nLoads; r++) {
    if (!s.transA) {
      // slot = row within the tile; quad k4 is the vec4 at (row*K)/4 + k4, or four scalars from row*K + 4k4.
      L.push(`  let aoff${r} = min(row0 + ${slot(r)}, M - 1u) * ${s.vecA ? 'K4' : 'K'};`);
    } else if (aTransVec) {
      // slot q -> (kk = q / (TM/4), row group q % (TM/4)): the vec4 of 4 rows at k = 4k4 + kk.
      L.push(`  let aq${r} = ${slot(r)};`);
      L.push(`  let akk${r} = aq${r} / ${TM / 4}u;`);
      L.push(`  let arg${r} = min((row0 >> 2u) + aq${r} % ${TM / 4}u, (M >> 2u) - 1u);`);
    } else {
      L.push(`  let arow${r} = min(row0 + ${slot(r)}, M - 1u);`);
    }
  }
  // The lane's four columns, clamped so reads stay inside B (results for columns past N are not written).
  for (let j = 0; j < RN; j++) {
    if (!s.transB && s.vecB) L.push(`  let bcol4_${j} = min(col${j} >> 2u, (N >> 2u) - 1u);`);
    else for (let c = 0; c < 4; c++) L.push(`  let bc${c}_${j} = min(col${j} + ${c}u, N - 1u);`);
    if (s.transB && s.vecB) for (let c = 0; c < 4; c++) L.push(`  let boff${c}_${j} = bc${c}_${j} * K4;`);
  }
  for (let i = 0; i < TM; i++) for (let j = 0; j < RN; j++) L.push(`  var acc${i}_${j} = vec4<f32>();`);

  // value of A at (tile row i, k = 4k4 + kk): a slot register and component
  const aValue = (i: number, kk: number): string => {
    let q: number;
    let comp: number;
    if (aTransVec) {
      q = kk * (TM / 4) + Math.floor(i / 4);
      comp = i % 4;
    } else {
      q = i;
      comp = kk;
    }
    const reg = shared ? `av${Math.floor(q / S)}` : `av${q}`;
    return shared ? `subgroupBroadcast(${reg}[${comp}], ${q % S}u)` : `${reg}[${comp}]`;
  };

  L.push(`  for (var k4 = 0u; k4 < ${kq}; k4++) {`);
  L.push('    let k = k4 * 4u;');
  const kAt = (c: string) => kClamp(`k + ${c}`);
  const zp = (v: string, c: string, zero: string) => zeroPast(v, `k + ${c}`, zero);
  const quadA = (idx: (c: number) => string) => `vec4<f32>(${[0, 1, 2, 3].map((c) => zp(`ldA(${idx(c)})`, `${c}u`, '0.0')).join(', ')})`;
  for (let r = 0; r < nLoads; r++) {
    let v: string;
    if (!s.transA) v = s.vecA ? `ldA4(aoff${r} + k4)` : quadA((c) => `aoff${r} + ${kAt(`${c}u`)}`);
    else if (aTransVec) v = zp(`ldA4(${kAt(`akk${r}`)} * (M >> 2u) + arg${r})`, `akk${r}`, 'vec4<f32>()');
    else v = quadA((c) => `${kAt(`${c}u`)} * M + arow${r}`);
    L.push(`    let av${r} = ${v};`);
  }
  // Per column group: its four B rows, then row by row, four k each, so an accumulator is loaded and stored
  // once per quad even when spilled (measured much faster on software adapters than k-outer order, and
  // than two quads per iteration).
  for (let j = 0; j < RN; j++) {
    if (s.transB && s.vecB) for (let c = 0; c < 4; c++) L.push(`    let bt${c}_${j} = b[boff${c}_${j} + k4];`);
    for (let kk = 0; kk < 4; kk++) {
      let bv: string;
      if (!s.transB && s.vecB) bv = zp(`b[${kAt(`${kk}u`)} * (N >> 2u) + bcol4_${j}]`, `${kk}u`, 'vec4<f32>()');
      else if (!s.transB) bv = `vec4<f32>(${[0, 1, 2, 3].map((c) => zp(`b[${kAt(`${kk}u`)} * N + bc${c}_${j}]`, `${kk}u`, '0.0')).join(', ')})`;
      else if (s.vecB) bv = `vec4<f32>(${[0, 1, 2, 3].map((c) => `bt${c}_${j}[${kk}]`).join(', ')})`;
      else bv = `vec4<f32>(${[0, 1, 2, 3].map((c) => zp(`b[bc${c}_${j} * K + ${kAt(`${kk}u`)}]`, `${kk}u`, '0.0')).join(', ')})`;
      L.push(`    let b${kk}_${j} = ${bv};`);
    }
    for (let i = 0; i < TM; i++) {
      for (let kk = 0; kk < 4; kk++) L.push(`    acc${i}_${j} = fma(vec4<f32>(${aValue(i, kk)}), b${kk}_${j}, acc${i}_${j});`);
    }
  }
  L.push('  }');

  // One epilogue in a loop that shifts the accumulators down, instead of TM inlined copies: the program
  // stays small enough to build quickly on software adapters.
  L.push(`  let rows = select(0u, min(${TM}u, M - row0), row0 < M);`);
  L.push('  for (var i = 0u; i < rows; i++) {');
  for (let j = 0; j < RN; j++) L.push(`    emit(row0 + i, col${j}, acc0_${j});`);
  for (let i = 0; i + 1 < TM; i++) for (let j = 0; j < RN; j++) L.push(`    acc${i}_${j} = acc${i + 1}_${j};`);
  L.push('  }');
  L.push('}');
  return L.join('\n');
}

// ---- tiled family ----

/** K slice staged per barrier pair. */
const TK = 32;

/** One operand as a tiled kernel stages it into workgroup memory: the tile's T side is `index` (m of A, n of B). */
interface StagedOperand {
  tile: 'tA' | 'tB';
  index: 'm' | 'n';
  global: 'gr' | 'gc';
  origin: 'row0' | 'col0';
  size: 'M' | 'N';
  /** Stored with the tile's T dimension outer and K inner (A as given, B transposed). */
  tileOuter: boolean;
  /** Loads of four consecutive values (aligned storage) instead of one. */
  vec: boolean;
  load4: (i: string) => string;
  load: (i: string) => string;
}

/** The loop that fills one operand's tile for the K block at k0 (zeros outside the matrix). */
function stageTile(L: string[], o: StagedOperand, T: number, lanes: number): void {
  const { tile: t, index: x, global: g, origin, size: S } = o;
  const xq = `${x}q`;
  if (o.vec) {
    L.push(`    for (var e = li; e < ${(T * TK) / 4}u; e += ${lanes}u) {`);
    if (o.tileOuter) {
      L.push(`      let ${x} = e / ${TK / 4}u; let kq = (e % ${TK / 4}u) * 4u;`);
      L.push(`      let ${g} = ${origin} + ${x}; let gk = k0 + kq;`);
      L.push('      var v = vec4<f32>();');
      L.push(`      if (${g} < ${S} && gk < K) { v = ${o.load4(`(${g} * K + gk) >> 2u`)}; }`);
      L.push(`      ${t}[kq][${x} >> 2u][${x} & 3u] = v.x; ${t}[kq + 1u][${x} >> 2u][${x} & 3u] = v.y;`);
      L.push(`      ${t}[kq + 2u][${x} >> 2u][${x} & 3u] = v.z; ${t}[kq + 3u][${x} >> 2u][${x} & 3u] = v.w;`);
    } else {
      L.push(`      let kq = e / ${T / 4}u; let ${xq} = (e % ${T / 4}u) * 4u;`);
      L.push(`      let gk = k0 + kq; let ${g} = ${origin} + ${xq};`);
      L.push('      var v = vec4<f32>();');
      L.push(`      if (${g} < ${S} && gk < K) { v = ${o.load4(`(gk * ${S} + ${g}) >> 2u`)}; }`);
      L.push(`      ${t}[kq][${xq} >> 2u] = v;`);
    }
  } else {
    L.push(`    for (var e = li; e < ${T * TK}u; e += ${lanes}u) {`);
    if (o.tileOuter) L.push(`      let ${x} = e / ${TK}u; let kq = e % ${TK}u;`);
    else L.push(`      let kq = e / ${T}u; let ${x} = e % ${T}u;`);
    L.push(`      let ${g} = ${origin} + ${x}; let gk = k0 + kq;`);
    L.push('      var v = 0.0;');
    L.push(`      if (${g} < ${S} && gk < K) { v = ${o.load(o.tileOuter ? `${g} * K + gk` : `gk * ${S} + ${g}`)}; }`);
    L.push(`      ${t}[kq][${x} >> 2u][${x} & 3u] = v;`);
  }
  L.push('    }');
}

/**
 * Workgroup-memory tiling: a T x T output tile per workgroup of (T/4) x (T/RM) invocations, each RM rows x 4
 * columns; per K slice of 32 the workgroup stages A (stored k-major so a lane reads 4 rows as one vec4) and
 * B (k-major, vec4 over columns). Reads outside the matrices load zeros, so every shape is exact.
 */
export function tiledMatmulSource(s: MatmulSpec, cfg: TiledConfig = DEFAULT_TILED): string {
  const T = cfg.tile;
  const RM = cfg.rowsPerThread;
  if (![16, 32, 64].includes(T)) throw new Error(`tiled matmul: tile ${T} is not 16, 32 or 64`);
  if ((RM !== 4 && RM !== 8) || RM > T) throw new Error(`tiled matmul: ${RM} rows per invocation is not 4 or 8 (at most the tile ${T})`);
  const WX = T / 4;
  const WY = T / RM;
  const lanes = WX * WY;
  const L: string[] = [];
  L.push(preamble(s, ''));
  L.push(`var<workgroup> tA: array<array<vec4<f32>, ${T / 4}>, ${TK}>;`);
  L.push(`var<workgroup> tB: array<array<vec4<f32>, ${T / 4}>, ${TK}>;`);
  L.push(`@compute @workgroup_size(${WX}, ${WY})`);
  L.push('fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {');
  L.push('  let M = p.M; let N = p.N; let K = p.K;');
  L.push(`  let row0 = wid.y * ${T}u;`);
  L.push(`  let col0 = wid.x * ${T}u;`);
  for (let i = 0; i < RM; i++) L.push(`  var acc${i} = vec4<f32>();`);
  L.push(`  for (var k0 = 0u; k0 < K; k0 += ${TK}u) {`);
  // Stage A: the tile holds A(row0 + m, k0 + k) at tA[k][m / 4][m % 4]; stage B: B(k0 + k, col0 + n) at tB[k][n / 4][n % 4].
  stageTile(L, { tile: 'tA', index: 'm', global: 'gr', origin: 'row0', size: 'M', tileOuter: !s.transA, vec: s.vecA, load4: (i) => `ldA4(${i})`, load: (i) => `ldA(${i})` }, T, lanes);
  stageTile(L, { tile: 'tB', index: 'n', global: 'gc', origin: 'col0', size: 'N', tileOuter: s.transB, vec: s.vecB, load4: (i) => `b[${i}]`, load: (i) => `ldB(${i})` }, T, lanes);
  L.push('    workgroupBarrier();');
  L.push(`    for (var k = 0u; k < ${TK}u; k++) {`);
  for (let q = 0; q < RM / 4; q++) L.push(`      let av${q} = tA[k][lid.y * ${RM / 4}u + ${q}u];`);
  L.push('      let bv = tB[k][lid.x];');
  for (let i = 0; i < RM; i++) L.push(`      acc${i} = fma(vec4<f32>(av${i >> 2}[${i & 3}]), bv, acc${i});`);
  L.push('    }');
  L.push('    workgroupBarrier();');
  L.push('  }');
  for (let i = 0; i < RM; i++) L.push(`  emit(row0 + lid.y * ${RM}u + ${i}u, col0 + lid.x * 4u, acc${i});`);
  L.push('}');
  return L.join('\n');
}

// ---- column sums (the bias gradient) ----

/**
 * out[j] = sum over rows i of dY[i, j] * act'(.)[i, j] for a row-major [rows, cols] gradient. One invocation
 * per column (per four columns when cols % 4 == 0); a column is a strided walk, cheap next to the products
 * that produce and consume it.
 */
export function columnSumSource(gradAct: Activation | null, gradFrom: 'pre' | 'out', vec: boolean): string {
  const helpers = gradAct !== null && gradFrom === 'pre' && gradAct !== 'identity' && gradAct !== 'relu';
  const T = vec ? 'vec4<f32>' : 'f32';
  const deriv = gradAct === null ? '' : vec ? vec4Map('z', (c) => derivExpr(gradAct, gradFrom, c)) : derivExpr(gradAct, gradFrom, 'z');
  return /* wgsl */ `
struct Params { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<${T}>;
${gradAct ? `@group(0) @binding(2) var<storage, read> gz: array<${T}>;` : ''}
@group(0) @binding(3) var<storage, read_write> out: array<${T}>;
${helpers ? ACTIVATION_HELPERS : ''}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = gid.x + gid.y * nwg.x * 64u;
  let stride = ${vec ? 'p.cols >> 2u' : 'p.cols'};
  if (j >= stride) { return; }
  var s = ${T}();
  for (var i = 0u; i < p.rows; i++) {
    let o = i * stride + j;
    ${gradAct ? `let z = gz[o];
    s += g[o] * ${deriv};` : 's += g[o];'}
  }
  out[j] = s;
}`;
}

/** dZ = dY * act'(.) elementwise (as vec4s when the size allows), for products that read dZ many times. */
export function gradThroughSource(gradAct: Activation, gradFrom: 'pre' | 'out', vec: boolean): string {
  const helpers = gradFrom === 'pre' && gradAct !== 'identity' && gradAct !== 'relu';
  const T = vec ? 'vec4<f32>' : 'f32';
  const deriv = vec ? vec4Map('z', (c) => derivExpr(gradAct, gradFrom, c)) : derivExpr(gradAct, gradFrom, 'z');
  return /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<${T}>;
@group(0) @binding(2) var<storage, read> gz: array<${T}>;
@group(0) @binding(3) var<storage, read_write> out: array<${T}>;
${helpers ? ACTIVATION_HELPERS : ''}
${flatEntry()}
  if (i >= p.n) { return; }
  let z = gz[i];
  out[i] = g[i] * ${deriv};
}`;
}
