// The action gradient of a twin-Q critic in one dispatch: g = d/da (Q1(s, a) + Q2(s, a)) / 2 per row, where
// each head is an MLP on concat(s, a) (or concat(a, s)) with one activation between its Linear layers and a
// scalar output. Optionally also writes Q1 and Q2, which fall out of the forward pass.
//
// One workgroup owns a block of `rows` batch rows and runs, head after head, the whole forward pass and the
// backward pass down to the action inputs. Hidden units are spread over the invocations; each hidden layer's
// activations and activation derivatives live in workgroup memory, so a layer costs one barrier. Every
// invocation owns groups of four adjacent units for all the block's rows at once (a register tile of
// rows x 4 x groups accumulators), so each weight read feeds `rows` multiply-adds and each activation read
// feeds 4 x groups: software rasterisers pay for every per-lane read, GPUs for every global one.
//
// Weights are read straight from one flat parameter buffer (PyTorch [out, in] layout, bias [out]); each
// layer's element offsets, every width and the batch size travel in the uniform, so one pipeline serves every
// network of a given depth, activation and width capacity. With `vec4`, every hidden width is a multiple of 4
// and every offset of a hidden-to-hidden weight is too: their rows are read as vec4 along the input axis.
// The first layer (input width obs + act, anything) and the output layer are read as scalars.
import { ACTIVATION_HELPERS } from './common.ts';

export type CriticGradActivation = 'relu' | 'mish';

export interface CriticGradSpec {
  /** Hidden layers per head (>= 1). */
  depth: number;
  act: CriticGradActivation;
  /** Batch rows per workgroup. */
  rows: number;
  /** Invocations per workgroup. */
  workgroup: number;
  /** Groups of four adjacent units each invocation owns per pass over a layer (its register tile). */
  groups: number;
  /** Floats per row of each workgroup-memory activation array: a multiple of 4, at least every hidden width. */
  cap: number;
  /** Hidden widths and hidden-to-hidden weight offsets are multiples of 4: read those weights as vec4. */
  vec4: boolean;
  /** Also write [Q1, Q2] per row. */
  values: boolean;
  /**
   * With vec4 weights only: the workgroup is one subgroup and rows is a multiple of it. Each
   * invocation reads rows / workgroup of the block's activation vectors and passes them to the others with
   * subgroupBroadcast instead of every invocation reading all of them.
   */
  subgroup?: boolean;
}

export function criticGradKey(s: CriticGradSpec): string {
  return `critic_grad_L${s.depth}_${s.act}_r${s.rows}_w${s.workgroup}_g${s.groups}_c${s.cap}_${s.vec4 ? 'v4' : 's'}${s.values ? '_q' : ''}${s.subgroup ? '_sg' : ''}`;
}

/** Bytes of workgroup memory the program declares. */
export function criticGradWorkgroupBytes(s: CriticGradSpec): number {
  return 4 * (sharedArrays(s) * s.rows * s.cap + (s.values && !s.subgroup ? s.rows * s.workgroup : 0));
}

/**
 * Activation arrays per workgroup: per hidden layer but the last its output and act' (ReLU: the output
 * only, as act' = [output > 0]), and the last layer's gradient.
 */
function sharedArrays(s: CriticGradSpec): number {
  return s.act === 'relu' ? s.depth : 2 * (s.depth - 1) + 1;
}

/** Uniform field holding the element offset of head `head`'s (1 or 2) Linear layer `layer` weight or bias. */
export function weightField(head: 1 | 2, layer: number): string {
  return `w${head}_${layer}`;
}
export function biasField(head: 1 | 2, layer: number): string {
  return `b${head}_${layer}`;
}
/** Uniform field holding hidden width `l` (1-based). */
export function widthField(l: number): string {
  return `n${l}`;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

const C4 = [0, 1, 2, 3];
const XYZW = ['x', 'y', 'z', 'w'];

export function criticGradSource(s: CriticGradSpec): string {
  const { depth: L, cap } = s;
  if (!Number.isInteger(L) || L < 1) throw new Error(`criticGradSource: depth must be >= 1, got ${L}`);
  if (cap % 4 !== 0) throw new Error(`criticGradSource: cap must be a multiple of 4, got ${cap}`);
  if (s.subgroup && (!s.vec4 || s.rows % s.workgroup !== 0)) {
    throw new Error(`criticGradSource: subgroup sharing needs vec4 weights and rows a multiple of the workgroup`);
  }
  return unitsSource(s);
}

/** Uniform struct, bindings and helper functions. */
function preamble(s: CriticGradSpec, shared: string[]): string {
  const L = s.depth;
  const fields = ['batch', 'obsDim', 'actDim', 'obsCol', 'actCol', 'inDim'];
  for (let l = 1; l <= L; l++) fields.push(widthField(l));
  for (const h of [1, 2] as const) for (let j = 0; j <= L; j++) fields.push(weightField(h, j), biasField(h, j));
  return /* wgsl */ `${s.subgroup ? 'enable subgroups;' : ''}
struct Params { ${fields.map((f) => `${f}: u32`).join(', ')} }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> obs: array<f32>;
@group(0) @binding(2) var<storage, read> actions: array<f32>;
@group(0) @binding(3) var<storage, read> params: array<${s.vec4 ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
${s.values ? '@group(0) @binding(5) var<storage, read_write> qvals: array<f32>;' : ''}
${shared.join('\n')}
${ACTIVATION_HELPERS}
fn prm(i: u32) -> f32 {
  return ${s.vec4 ? 'params[i >> 2u][i & 3u]' : 'params[i]'};
}
// column k of concat(obs, actions) (or concat(actions, obs)) for one batch row
fn xin(row: u32, k: u32) -> f32 {
  if (k >= p.actCol && k < p.actCol + p.actDim) { return actions[row * p.actDim + k - p.actCol]; }
  return obs[row * p.obsDim + k - p.obsCol];
}
// act(z) and act'(z) of four units
fn act_pair_relu(z: vec4<f32>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(max(z, vec4<f32>(0.0)), select(vec4<f32>(0.0), vec4<f32>(1.0), z > vec4<f32>(0.0)));
}
fn act_pair_mish(z: vec4<f32>) -> array<vec4<f32>, 2> {
  let a = wd_mish_pair(z.x); let b = wd_mish_pair(z.y); let c = wd_mish_pair(z.z); let d = wd_mish_pair(z.w);
  return array<vec4<f32>, 2>(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y));
}`;
}

/**
 * Hidden units across the invocations, a block of rows per workgroup: every invocation owns groups of four
 * adjacent units for all the block's rows (a register tile of rows x 4 x groups accumulators), so each
 * weight read feeds `rows` multiply-adds; the block's activations are shared through workgroup memory, one
 * barrier per layer.
 */
function unitsSource(s: CriticGradSpec): string {
  const { depth: L, rows: R, workgroup: WG, groups: G, cap } = s;
  const V = s.vec4;
  const T = V ? 'vec4<f32>' : 'f32';
  const CV = V ? cap / 4 : cap;
  const rs = range(R);
  const gs = range(G);
  const shared: string[] = [];
  for (let l = 1; l < L; l++) shared.push(`var<workgroup> h${l}: array<${T}, ${R * CV}>;`);
  // ReLU keeps no act' array: the backward reads the mask off the output and overwrites it with the gradient
  const relu = s.act === 'relu';
  const gradArr = (l: number) => (relu && l < L ? `h${l}` : `d${l}`);
  for (let l = 1; l <= L; l++) if (gradArr(l) === `d${l}`) shared.push(`var<workgroup> d${l}: array<${T}, ${R * CV}>;`);
  const qShared = s.values && !s.subgroup;
  if (qShared) shared.push(`var<workgroup> qpart: array<f32, ${R * WG}>;`);

  const off = (kind: 'w' | 'b', j: number) => `select(p.${kind === 'w' ? weightField(1, j) : biasField(1, j)}, p.${kind === 'w' ? weightField(2, j) : biasField(2, j)}, head == 1u)`;
  // scalar element (r, u) of a workgroup array holding one row per batch row
  const elem = (arr: string, r: string, u: string) => (V ? `${arr}[${r} * ${CV}u + (${u} >> 2u)][${u} & 3u]` : `${arr}[${r} * ${CV}u + ${u}]`);

  // `name`<r> = vector `slot` of row r of a workgroup array, for every row of the block
  const sharedRead = (name: string, arr: string, slot: string): string[] => {
    if (!s.subgroup) return rs.map((r) => `        let ${name}${r} = ${arr}[${r * CV}u + ${slot}];`);
    const out: string[] = [];
    for (let j = 0; j < R / WG; j++) out.push(`        let ${name}l${j} = ${arr}[(${j * WG}u + lid) * ${CV}u + ${slot}];`);
    for (const r of rs) out.push(`        let ${name}${r} = subgroupBroadcast(${name}l${Math.floor(r / WG)}, ${r % WG}u);`);
    return out;
  };
  // act(z) and act'(z) of the four accumulators of a unit group
  const actPair = s.act === 'relu' ? 'act_pair_relu' : 'act_pair_mish';

  /** Forward through Linear j (input width m, output hidden width n = n_{j+1}) and its activation. */
  const forwardLayer = (j: number): string => {
    const l = j + 1;
    const last = l === L;
    const n = `p.${widthField(l)}`;
    const m = j === 0 ? 'p.inDim' : `p.${widthField(j)}`;
    const lines: string[] = [];
    lines.push(`  { // hidden layer ${l}${last ? ' (last: its gradient goes straight to d' + l + ')' : ''}`);
    lines.push(`    let n = ${n}; let m = ${m}; let wo = ${off('w', j)}; let bo = ${off('b', j)};`);
    if (last) {
      lines.push(`    let wout = ${off('w', L)};`);
      if (s.values) for (const r of rs) lines.push(`    var q${r} = 0.0;`);
    }
    lines.push(`    for (var gb = 0u; gb * 4u < n; gb += ${WG * G}u) {`);
    for (const i of gs) {
      lines.push(`      let g${i} = gb + lid + ${i * WG}u;`);
      for (const c of C4) lines.push(`      let u${i}${c} = min(4u * g${i} + ${c}u, n - 1u);`);
    }
    for (const r of rs) for (const i of gs) lines.push(`      var a${r}_${i} = vec4<f32>(0.0);`);
    if (j === 0) {
      lines.push(`      for (var k = 0u; k < m; k++) {`);
      for (const r of rs) lines.push(`        let x${r} = xin(rowc${r}, k);`);
      for (const i of gs) lines.push(`        let w${i} = vec4<f32>(${C4.map((c) => `prm(wo + u${i}${c} * m + k)`).join(', ')});`);
      for (const r of rs) for (const i of gs) lines.push(`        a${r}_${i} = fma(w${i}, vec4<f32>(x${r}), a${r}_${i});`);
      lines.push(`      }`);
    } else if (V) {
      const prev = `h${j}`;
      lines.push(`      let m4 = m >> 2u; let wo4 = wo >> 2u;`);
      lines.push(`      for (var k = 0u; k < m4; k++) {`);
      lines.push(...sharedRead('x', prev, 'k'));
      for (const i of gs) for (const c of C4) lines.push(`        let w${i}${c} = params[wo4 + u${i}${c} * m4 + k];`);
      // four k at a time, each a vec4 over the group's units times one activation: fused multiply-adds only
      for (const i of gs) for (const kk of C4) lines.push(`        let t${i}${kk} = vec4<f32>(${C4.map((c) => `w${i}${c}.${XYZW[kk]}`).join(', ')});`);
      for (const r of rs) {
        for (const i of gs) {
          for (const kk of C4) lines.push(`        a${r}_${i} = fma(t${i}${kk}, vec4<f32>(x${r}.${XYZW[kk]}), a${r}_${i});`);
        }
      }
      lines.push(`      }`);
    } else {
      const prev = `h${j}`;
      lines.push(`      for (var k = 0u; k < m; k++) {`);
      for (const r of rs) lines.push(`        let x${r} = ${prev}[${r * CV}u + k];`);
      for (const i of gs) lines.push(`        let w${i} = vec4<f32>(${C4.map((c) => `params[wo + u${i}${c} * m + k]`).join(', ')});`);
      for (const r of rs) for (const i of gs) lines.push(`        a${r}_${i} = fma(w${i}, vec4<f32>(x${r}), a${r}_${i});`);
      lines.push(`      }`);
    }
    // epilogue: bias, activation; the last hidden layer folds in the output layer's weight
    for (const i of gs) {
      lines.push(`      let bias${i} = vec4<f32>(${C4.map((c) => `prm(bo + u${i}${c})`).join(', ')});`);
      lines.push(`      let valid${i} = vec4<f32>(${C4.map((c) => `select(0.0, 1.0, 4u * g${i} + ${c}u < n)`).join(', ')});`);
      if (last) lines.push(`      let wq${i} = valid${i} * vec4<f32>(${C4.map((c) => `prm(wout + u${i}${c})`).join(', ')});`);
    }
    for (const r of rs) {
      for (const i of gs) {
        lines.push(`      {`);
        lines.push(`        let hd = ${actPair}(a${r}_${i} + bias${i});`);
        const hv = last ? null : `hd[0]`;
        const dv = last ? `wq${i} * hd[1]` : `hd[1]`;
        if (last && s.values) lines.push(`        q${r} += dot(wq${i}, hd[0]);`);
        if (V) {
          lines.push(`        if (4u * g${i} < n) {`);
          if (hv) lines.push(`          h${l}[${r * CV}u + g${i}] = ${hv};`);
          if (gradArr(l) === `d${l}`) lines.push(`          d${l}[${r * CV}u + g${i}] = ${dv};`);
          lines.push(`        }`);
        } else {
          lines.push(`        let dv = ${dv};`);
          for (const c of C4) {
            lines.push(`        if (4u * g${i} + ${c}u < n) {`);
            if (hv) lines.push(`          h${l}[${r * CV}u + 4u * g${i} + ${c}u] = ${hv}.${XYZW[c]};`);
            if (gradArr(l) === `d${l}`) lines.push(`          d${l}[${r * CV}u + 4u * g${i} + ${c}u] = dv.${XYZW[c]};`);
            lines.push(`        }`);
          }
        }
        lines.push(`      }`);
      }
    }
    lines.push(`    }`);
    if (last && qShared) for (const r of rs) lines.push(`    qpart[${r * WG}u + lid] = q${r};`);
    if (last && s.values && s.subgroup) {
      lines.push(`    let bq = prm(${off('b', L)});`);
      for (const r of rs) {
        lines.push(`    let qt${r} = subgroupAdd(q${r});`);
        lines.push(`    if (lid == ${r % WG}u && row0 + ${r}u < p.batch) { qvals[(row0 + ${r}u) * 2u + head] = qt${r} + bq; }`);
      }
    }
    lines.push(`  }`);
    lines.push(`  workgroupBarrier();`);
    return lines.join('\n');
  };

  /** d_l <- (W_l^T dz_{l+1}) * act'(z_l): back through Linear l (n_l -> n_{l+1}) into hidden layer l. */
  const backwardLayer = (l: number): string => {
    const lines: string[] = [];
    lines.push(`  { // back into hidden layer ${l}`);
    lines.push(`    let n = p.${widthField(l)}; let m = p.${widthField(l + 1)}; let wo = ${off('w', l)};`);
    lines.push(`    for (var gb = 0u; gb * 4u < n; gb += ${WG * G}u) {`);
    for (const i of gs) lines.push(`      let g${i} = gb + lid + ${i * WG}u;`);
    for (const r of rs) for (const i of gs) lines.push(`      var a${r}_${i} = vec4<f32>(0.0);`);
    if (V) {
      lines.push(`      let n4 = n >> 2u; let wo4 = wo >> 2u;`);
      for (const i of gs) lines.push(`      let k${i} = min(g${i}, n4 - 1u);`);
      lines.push(`      for (var u4 = 0u; u4 < (m >> 2u); u4++) {`);
      lines.push(...sharedRead('e', gradArr(l + 1), 'u4'));
      for (const i of gs) for (const c of C4) lines.push(`        let w${i}${c} = params[wo4 + (4u * u4 + ${c}u) * n4 + k${i}];`);
      for (const r of rs) {
        for (const i of gs) {
          for (const c of C4) lines.push(`        a${r}_${i} = fma(w${i}${c}, vec4<f32>(e${r}.${XYZW[c]}), a${r}_${i});`);
        }
      }
      lines.push(`      }`);
      for (const i of gs) {
        lines.push(`      if (g${i} < n4) {`);
        for (const r of rs) {
          const at = `${gradArr(l)}[${r * CV}u + g${i}]`;
          lines.push(`        ${at} = a${r}_${i} * ${relu ? `select(vec4<f32>(0.0), vec4<f32>(1.0), ${at} > vec4<f32>(0.0))` : at};`);
        }
        lines.push(`      }`);
      }
    } else {
      for (const i of gs) for (const c of C4) lines.push(`      let k${i}${c} = min(4u * g${i} + ${c}u, n - 1u);`);
      lines.push(`      for (var u = 0u; u < m; u++) {`);
      for (const r of rs) lines.push(`        let e${r} = ${gradArr(l + 1)}[${r * CV}u + u];`);
      for (const i of gs) lines.push(`        let w${i} = vec4<f32>(${C4.map((c) => `params[wo + u * n + k${i}${c}]`).join(', ')});`);
      for (const r of rs) for (const i of gs) lines.push(`        a${r}_${i} = fma(w${i}, vec4<f32>(e${r}), a${r}_${i});`);
      lines.push(`      }`);
      for (const i of gs) {
        for (const c of C4) {
          lines.push(`      if (4u * g${i} + ${c}u < n) {`);
          for (const r of rs) {
            const at = `${r * CV}u + 4u * g${i} + ${c}u`;
            const v = `${gradArr(l)}[${at}]`;
            lines.push(`        ${v} = a${r}_${i}.${XYZW[c]} * ${relu ? `select(0.0, 1.0, ${v} > 0.0)` : v};`);
          }
          lines.push(`      }`);
        }
      }
    }
    lines.push(`    }`);
    lines.push(`  }`);
    lines.push(`  workgroupBarrier();`);
    return lines.join('\n');
  };

  // g[row, j] += 0.5 * sum_u W_0[u, actCol + j] dz_1[row, u]; Q from the invocations' partial sums
  const finish = (): string => {
    const lines: string[] = [];
    lines.push(`  { // action gradient${s.values ? ' and Q' : ''}`);
    lines.push(`    let n = p.${widthField(1)}; let m = p.inDim; let wo = ${off('w', 0)}; let A = p.actDim;`);
    lines.push(`    for (var t = lid; t < ${R}u * A; t += ${WG}u) {`);
    lines.push(`      let r = t / A; let j = t - r * A; let row = row0 + r;`);
    lines.push(`      var acc = 0.0;`);
    lines.push(`      let col = wo + p.actCol + j;`);
    lines.push(`      for (var u = 0u; u < n; u++) { acc += prm(col + u * m) * ${elem(gradArr(1), 'r', 'u')}; }`);
    lines.push(`      if (row < p.batch) {`);
    lines.push(`        let o = row * A + j;`);
    lines.push(`        if (head == 0u) { grad[o] = 0.5 * acc; } else { grad[o] = grad[o] + 0.5 * acc; }`);
    lines.push(`      }`);
    lines.push(`    }`);
    if (qShared) {
      lines.push(`    for (var r = lid; r < ${R}u && row0 + r < p.batch; r += ${WG}u) {`);
      lines.push(`      var q = prm(${off('b', L)});`);
      lines.push(`      for (var t = 0u; t < ${WG}u; t++) { q += qpart[r * ${WG}u + t]; }`);
      lines.push(`      qvals[(row0 + r) * 2u + head] = q;`);
      lines.push(`    }`);
    }
    lines.push(`  }`);
    lines.push(`  workgroupBarrier();`);
    return lines.join('\n');
  };

  const body: string[] = [];
  for (let j = 0; j < L; j++) body.push(forwardLayer(j));
  for (let l = L - 1; l >= 1; l--) body.push(backwardLayer(l));
  body.push(finish());

  return `${preamble(s, shared)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row0 = (wid.x + wid.y * nwg.x) * ${R}u;
${rs.map((r) => `  let rowc${r} = min(row0 + ${r}u, p.batch - 1u);`).join('\n')}
  for (var head = 0u; head < 2u; head++) {
${body.join('\n')}
  }
}`;
}

/** Workgroup counts for `batch` rows at `rows` per workgroup (spilling into y past the per-dimension limit). */
export function criticGradGrid(batch: number, rows: number, maxPerDim = 65535): [number, number, number] {
  const groups = Math.ceil(batch / rows);
  if (groups <= maxPerDim) return [groups, 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y, 1];
}
