// Matrix-product autotuning: times a handful of kernel configurations per family on the products RL training
// runs (batch 256 and 2048 through 256-wide layers, their backward products, narrow first and last layers)
// and installs, per shape class, the configurations ranked fastest first, so matmulInto and linear use the
// winner. Results belong to one adapter and one version of the generated kernels; they are exported and
// imported as JSON so that a program can keep them in a file (the engine itself touches no files).
import { runtime } from './runtime.ts';
import { MATMUL_KERNELS_VERSION } from '../kernels/matmul.ts';
import { empty, tensor, type Tensor } from './tensor.ts';
import {
  defaultMatmulConfig,
  matmulAdapterKey,
  matmulConfigFor,
  matmulConfigKey,
  matmulInto,
  matmulShapeClass,
  matmulSubgroupSize,
  parseMatmulConfig,
  setMatmulRanking,
  type MatmulConfig,
  type MatmulFamily,
} from './ops/matmul.ts';

/** One product to time: C[M, N] = op(A) op(B) with inner size K. */
export interface TuneShape {
  M: number;
  K: number;
  N: number;
  transA: boolean;
  transB: boolean;
}

export interface TuneOptions {
  /**
   * Wall-clock budget in milliseconds (default 1000): shapes predicted not to fit, or not finished within
   * it, are left for a later run. It can be overrun by about one kernel build.
   */
  budgetMs?: number;
  /** Time shape classes that already have results again (default: only the missing ones). */
  retune?: boolean;
  /** Families whose candidates are timed (default: the adapter's own family plus the other's default). */
  families?: readonly MatmulFamily[];
  /** Products to time instead of the RL training set. */
  shapes?: readonly TuneShape[];
  /** Called with a line per finished shape. */
  log?: (line: string) => void;
}

export interface CandidateTiming {
  config: string;
  /** Best time of one product over the samples taken. */
  ms: number;
  gflops: number;
  /** Timed samples (candidates far behind the best stop after the first). */
  samples: number;
}

export interface ShapeResult {
  shape: TuneShape;
  shapeClass: string;
  /** Fastest first. */
  candidates: CandidateTiming[];
  /** What products of this shape now use: the fastest, or a default within 5% of it. */
  chosen: string;
}

export interface TuneReport {
  adapter: string;
  measured: ShapeResult[];
  /** Shapes whose class was already tuned (and retune was off). */
  alreadyTuned: TuneShape[];
  /** Shapes left because the budget ran out. */
  remaining: TuneShape[];
  elapsedMs: number;
}

const NARROW_IN = 17; // observation widths (14..27 in the MuJoCo tasks): a scalar-read K
const NARROW_OUT = 6; // action widths and critic heads

function trainingShapes(batch: number): TuneShape[] {
  const H = 256;
  return [
    { M: batch, K: H, N: H, transA: false, transB: true }, // forward of a hidden layer: x W^T
    { M: batch, K: H, N: H, transA: false, transB: false }, // its dX = dZ W
    { M: H, K: batch, N: H, transA: true, transB: false }, // its dW = dZ^T x
    { M: batch, K: NARROW_IN, N: H, transA: false, transB: true }, // first layer
    { M: H, K: batch, N: NARROW_IN, transA: true, transB: false }, // its dW
    { M: batch, K: H, N: NARROW_OUT, transA: false, transB: true }, // last layer
    { M: batch, K: NARROW_OUT, N: H, transA: false, transB: false }, // its dX
    { M: NARROW_OUT, K: batch, N: H, transA: true, transB: false }, // its dW
    { M: batch, K: H, N: NARROW_IN, transA: false, transB: false }, // dX of the first layer (action gradients)
  ];
}

/** The products tuneMatmul times by default, cheapest (batch 256) first. */
export const RL_TUNING_SHAPES: readonly TuneShape[] = [...trainingShapes(256), ...trainingShapes(2048)];

const REGISTER_SHARED: MatmulConfig[] = [
  { family: 'register', shared: true, rows: 16, colGroups: 1 },
  { family: 'register', shared: true, rows: 32, colGroups: 1 },
  { family: 'register', shared: true, rows: 32, colGroups: 2 },
  { family: 'register', shared: true, rows: 64, colGroups: 1 },
];
const REGISTER_SOLO: MatmulConfig[] = [
  { family: 'register', shared: false, rows: 8, colGroups: 1 },
  { family: 'register', shared: false, rows: 8, colGroups: 2 },
];
const TILED: MatmulConfig[] = [
  { family: 'tiled', tile: 32, rowsPerThread: 4 },
  { family: 'tiled', tile: 16, rowsPerThread: 4 },
  { family: 'tiled', tile: 64, rowsPerThread: 4 },
  { family: 'tiled', tile: 64, rowsPerThread: 8 },
];

/**
 * Every configuration the tuner may choose on some adapter (shared-load register configurations need
 * subgroups of one fixed size).
 */
export function allMatmulCandidates(): MatmulConfig[] {
  return [...REGISTER_SHARED, ...REGISTER_SOLO, ...TILED];
}

/**
 * The configurations timed on this device: every candidate of the listed families (by default the adapter's
 * own family) plus, by default, the other family's default, so a clear win of the other family is seen.
 * Shared-load configurations whose subgroup tile rounds to the same program are listed once.
 */
export function matmulCandidates(families?: readonly MatmulFamily[]): MatmulConfig[] {
  const rt = runtime();
  const own: MatmulFamily = rt.info.adapterClass === 'software' ? 'register' : 'tiled';
  const fams = families ?? [own];
  const subgroup = matmulSubgroupSize();
  const out: MatmulConfig[] = [];
  const programs = new Set<string>();
  const add = (c: MatmulConfig) => {
    if (c.family === 'register' && c.shared && subgroup === null) return;
    // shared tiles are rounded to whole subgroups: rows 16 and 32 are one program at subgroup size 32
    const program = c.family === 'register' && c.shared ? `sh${Math.max(1, Math.round(c.rows / subgroup!))}-${c.colGroups}` : matmulConfigKey(c);
    if (programs.has(program)) return;
    programs.add(program);
    out.push(c);
  };
  for (const f of fams) for (const c of f === 'register' ? [...REGISTER_SHARED, ...REGISTER_SOLO] : TILED) add(c);
  if (!families) add(defaultMatmulConfig(own === 'register' ? 'tiled' : 'register'));
  return out;
}

// ---- results store: adapter key -> shape class -> timings ----

interface ClassTimings {
  shape: TuneShape;
  /** Milliseconds per product, by configuration name. */
  ms: Record<string, number>;
  date: string;
}

const store = new Map<string, Map<string, ClassTimings>>();

const FORMAT = 'webdiffuser-matmul-tuning';
const FORMAT_VERSION = 1;

/** The untuned configurations: one of them keeps first place unless another beats it by more than this. */
const DEFAULT_NAMES = ['register-shared-r32-c1', 'register-solo-r8-c1', 'tiled-t32-r4'];
const DEFAULT_MARGIN = 1.05;

function ranked(ms: Record<string, number>): string[] {
  const order = Object.keys(ms).sort((a, b) => ms[a]! - ms[b]!);
  const best = ms[order[0]!]!;
  const keep = order.find((k) => DEFAULT_NAMES.includes(k) && ms[k]! <= best * DEFAULT_MARGIN);
  return keep ? [keep, ...order.filter((k) => k !== keep)] : order;
}

/**
 * Configurations ordered by the geometric mean, over classes, of their time relative to the class's best; a
 * configuration missing from a class counts as four times slower there.
 */
function overallRanking(classes: Map<string, ClassTimings>): string[] {
  const names = new Set<string>();
  for (const c of classes.values()) for (const k of Object.keys(c.ms)) names.add(k);
  const score = new Map<string, number>();
  for (const name of names) {
    let logSum = 0;
    for (const c of classes.values()) {
      const best = Math.min(...Object.values(c.ms));
      const t = c.ms[name];
      logSum += Math.log(t === undefined ? 4 : t / best);
    }
    score.set(name, logSum / classes.size);
  }
  return [...names].sort((a, b) => score.get(a)! - score.get(b)!);
}

function install(adapterKey: string): void {
  const classes = store.get(adapterKey);
  if (!classes || classes.size === 0) {
    setMatmulRanking(adapterKey, null);
    return;
  }
  const byClass = new Map<string, string[]>();
  for (const [cls, t] of classes) byClass.set(cls, ranked(t.ms));
  setMatmulRanking(adapterKey, { classes: byClass, overall: overallRanking(classes) });
}

/** Identity of this adapter and kernel version, as used for keys in exported tuning results. */
export function tuningAdapterKey(): string {
  return matmulAdapterKey();
}

/** Forgets every tuning result (products go back to the adapter-class defaults). */
export function clearTuning(): void {
  for (const key of store.keys()) setMatmulRanking(key, null);
  store.clear();
}

/** Shape classes with results for this adapter. */
export function tunedShapeClasses(): string[] {
  return [...(store.get(matmulAdapterKey())?.keys() ?? [])];
}

/** The configuration products of this shape use now (tuned, forced or default). */
export function chosenMatmulConfig(shape: TuneShape): string {
  return matmulConfigKey(matmulConfigFor(shape.M, shape.K, shape.N, shape));
}

/** Every result held, for every adapter, as JSON text. */
export function exportTuning(): string {
  const adapters: Record<string, { classes: Record<string, ClassTimings> }> = {};
  for (const [key, classes] of store) {
    if (classes.size === 0) continue;
    adapters[key] = { classes: Object.fromEntries(classes) };
  }
  return JSON.stringify({ format: FORMAT, version: FORMAT_VERSION, adapters }, null, 1);
}

function fail(why: string): never {
  throw new Error(`importTuning: ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readShape(v: unknown, where: string): TuneShape {
  if (!isObject(v)) fail(`${where}.shape is not an object`);
  const dim = (name: 'M' | 'K' | 'N') => {
    const x = v[name];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1) fail(`${where}.shape.${name} is not a positive integer`);
    return x;
  };
  const flag = (name: 'transA' | 'transB') => {
    const x = v[name];
    if (typeof x !== 'boolean') fail(`${where}.shape.${name} is not a boolean`);
    return x;
  };
  return { M: dim('M'), K: dim('K'), N: dim('N'), transA: flag('transA'), transB: flag('transB') };
}

/**
 * Adds results exported by exportTuning() (text or parsed). Results for the same adapter and shape class
 * replace the ones held, unless `keepExisting`. Throws, changing nothing, on anything malformed.
 */
export function importTuning(json: string | unknown, opts: { keepExisting?: boolean } = {}): void {
  let doc: unknown = json;
  if (typeof json === 'string') {
    try {
      doc = JSON.parse(json);
    } catch (e) {
      fail(`not JSON (${(e as Error).message})`);
    }
  }
  if (!isObject(doc)) fail('expected an object');
  if (doc.format !== FORMAT) fail(`format is ${JSON.stringify(doc.format)}, expected "${FORMAT}"`);
  if (doc.version !== FORMAT_VERSION) fail(`version ${JSON.stringify(doc.version)} is not supported (expected ${FORMAT_VERSION})`);
  if (!isObject(doc.adapters)) fail('"adapters" is not an object');
  const parsed = new Map<string, Map<string, ClassTimings>>();
  for (const [key, entry] of Object.entries(doc.adapters)) {
    const where = `adapters[${JSON.stringify(key)}]`;
    if (!isObject(entry) || !isObject(entry.classes)) fail(`${where}.classes is not an object`);
    // Results of another kernel version are carried along but never used, so their configuration names are
    // only checked for shape.
    const current = key.endsWith(`|matmul-v${MATMUL_KERNELS_VERSION}`);
    const classes = new Map<string, ClassTimings>();
    for (const [cls, t] of Object.entries(entry.classes)) {
      const w = `${where}.classes[${JSON.stringify(cls)}]`;
      if (!/^[nT][nT]:[SML]-[SML]-[SML]$/.test(cls)) fail(`${w}: "${cls}" is not a shape class`);
      if (!isObject(t)) fail(`${w} is not an object`);
      const shape = readShape(t.shape, w);
      if (matmulShapeClass(shape.transA, shape.transB, shape.M, shape.K, shape.N) !== cls) fail(`${w}: its shape is not of class ${cls}`);
      if (!isObject(t.ms) || Object.keys(t.ms).length === 0) fail(`${w}.ms is not a non-empty object`);
      const ms: Record<string, number> = {};
      for (const [name, v] of Object.entries(t.ms)) {
        if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(`${w}.ms[${JSON.stringify(name)}] is not a positive number`);
        if (current) {
          try {
            parseMatmulConfig(name);
          } catch (e) {
            fail(`${w}: ${(e as Error).message}`);
          }
        } else if (!/^[a-z0-9-]+$/.test(name)) fail(`${w}: "${name}" is not a configuration name`);
        ms[name] = v;
      }
      classes.set(cls, { shape, ms, date: typeof t.date === 'string' ? t.date : '' });
    }
    parsed.set(key, classes);
  }
  for (const [key, classes] of parsed) {
    let held = store.get(key);
    if (!held) store.set(key, (held = new Map()));
    for (const [cls, t] of classes) if (!(opts.keepExisting && held.has(cls))) held.set(cls, t);
    install(key);
  }
}

// ---- timing ----

/** Per timed sample, enough repeated products to swamp the cost of one sync. */
const SAMPLE_TARGET_MS = 4;
const MAX_REPEATS = 256;
/** After two samples, candidates this much slower than the best get no more. */
const PRUNE_RATIO = 1.3;
/** After one sample, candidates this much slower than the best get no more. */
const CLEAR_LOSS_RATIO = 2.5;
const ROUNDS = 3;

function randomTensor(shape: [number, number], seed: number): Tensor {
  const n = shape[0] * shape[1];
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 4294967296 - 0.5;
  }
  return tensor(data, shape);
}

/**
 * Times every candidate on every shape whose class is not tuned yet (or all with `retune`), in order (the
 * default set has batch 256 first), until the budget runs out, and installs the result: matmulInto and linear then use the fastest
 * configuration per shape class. A shape counts only once every candidate has at least one timed sample.
 */
export async function tuneMatmul(opts: TuneOptions = {}): Promise<TuneReport> {
  const rt = runtime();
  const budget = opts.budgetMs ?? 1000;
  const start = performance.now();
  const overBudget = () => performance.now() - start > budget;
  const adapterKey = matmulAdapterKey();
  let classes = store.get(adapterKey);
  if (!classes) store.set(adapterKey, (classes = new Map()));
  const candidates = matmulCandidates(opts.families);
  const shapes = opts.shapes ?? RL_TUNING_SHAPES;
  const report: TuneReport = { adapter: adapterKey, measured: [], alreadyTuned: [], remaining: [], elapsedMs: 0 };
  // Cost model: time scales with flops from the largest shape timed; results of earlier runs seed it (one
  // warm-up and two samples per candidate), so a run does not start a shape it cannot finish.
  let largest = { flops: 0, ms: 0 };
  for (const t of classes.values()) {
    const flops = 2 * t.shape.M * t.shape.N * t.shape.K;
    if (flops > largest.flops) largest = { flops, ms: 3 * Object.values(t.ms).reduce((x, y) => x + y, 0) };
  }
  await rt.sync();

  for (const shape of shapes) {
    const cls = matmulShapeClass(shape.transA, shape.transB, shape.M, shape.K, shape.N);
    const done = classes.has(cls) || report.measured.some((r) => r.shapeClass === cls);
    if (done && !opts.retune) {
      report.alreadyTuned.push(shape);
      continue;
    }
    const flops = 2 * shape.M * shape.N * shape.K;
    // A shape whose predicted cost (scaled from the largest one timed so far) does not fit is left for a
    // later run with more budget, and cheaper shapes after it still get their turn.
    const predicted = largest.flops > 0 ? (largest.ms * flops) / largest.flops : 0;
    if (overBudget() || performance.now() - start + predicted > budget) {
      report.remaining.push(shape);
      continue;
    }
    const shapeStart = performance.now();
    const result = await timeShape(shape, candidates, () => budget - (performance.now() - start));
    if (!result) {
      report.remaining.push(shape);
      continue;
    }
    if (flops >= largest.flops) largest = { flops, ms: performance.now() - shapeStart };
    const ms: Record<string, number> = {};
    for (const c of result) ms[c.config] = c.ms;
    classes.set(cls, { shape: { ...shape }, ms, date: new Date().toISOString() });
    install(adapterKey);
    const candidatesOut = result.map((c) => ({ ...c, gflops: flops / (c.ms * 1e6) })).sort((a, b) => a.ms - b.ms);
    const entry: ShapeResult = { shape: { ...shape }, shapeClass: cls, candidates: candidatesOut, chosen: chosenMatmulConfig(shape) };
    report.measured.push(entry);
    opts.log?.(
      `matmul tuning ${describeShape(shape)} (${cls}): ${entry.chosen}, ${candidatesOut[0]!.gflops.toFixed(1)} GFLOP/s ` +
        `(${(performance.now() - start).toFixed(0)} ms so far)`,
    );
  }
  report.elapsedMs = performance.now() - start;
  return report;
}

/** e.g. "256x256x256 A B^T" (M x K x N). */
export function describeShape(s: TuneShape): string {
  return `${s.M}x${s.K}x${s.N} ${s.transA ? 'A^T' : 'A'} ${s.transB ? 'B^T' : 'B'}`;
}

/** Whether `p` settled before the budget ran out (its rejection is thrown). */
async function untilBudget(p: Promise<void>, remainingMs: () => number): Promise<boolean> {
  const left = remainingMs();
  if (left <= 0) return false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), left)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function timeShape(shape: TuneShape, candidates: MatmulConfig[], remaining: () => number): Promise<Omit<CandidateTiming, 'gflops'>[] | null> {
  const rt = runtime();
  const { M, K, N, transA, transB } = shape;
  const a = randomTensor(transA ? [K, M] : [M, K], 0x9e3779b9 ^ M);
  const b = randomTensor(transB ? [N, K] : [K, N], 0x85ebca6b ^ N);
  const out = empty([M, N]);
  const run = (config: MatmulConfig, times: number) => {
    for (let i = 0; i < times; i++) matmulInto(out, a, b, { transA, transB, config });
  };
  try {
    const best = new Map<MatmulConfig, number>();
    const samples = new Map<MatmulConfig, number>();
    const repeats = new Map<MatmulConfig, number>();
    // First use builds the pipeline, which a software adapter does on its queue when the dispatch runs: the
    // wait for it stops when the budget is spent (a build left running still lands in the driver's cache).
    for (const c of candidates) {
      if (remaining() <= 0) return null;
      run(c, 1);
      const done = rt.sync();
      if (!(await untilBudget(done, remaining))) {
        done.catch(() => undefined);
        return null;
      }
    }
    // Round 0 runs each product once, which also sizes the later samples. Close candidates are compared
    // only on their best of two samples or more, in rotating order, so one burst of load on a shared
    // machine decides nothing.
    let alive = candidates;
    for (let round = 0; round < ROUNDS && alive.length > 0; round++) {
      const order = alive.map((_, i) => alive[(i + round) % alive.length]!);
      for (const c of order) {
        if (remaining() <= 0) return round === 0 ? null : finish();
        const n = repeats.get(c) ?? 1;
        const t0 = performance.now();
        run(c, n);
        await rt.sync();
        const ms = (performance.now() - t0) / n;
        best.set(c, Math.min(best.get(c) ?? Infinity, ms));
        samples.set(c, (samples.get(c) ?? 0) + 1);
        repeats.set(c, Math.max(1, Math.min(MAX_REPEATS, Math.ceil(SAMPLE_TARGET_MS / Math.max(ms, 1e-3)))));
      }
      const fastest = Math.min(...alive.map((c) => best.get(c)!));
      // One sample of a product much longer than a sync already tells clear losers apart.
      if (round === 0 && fastest < SAMPLE_TARGET_MS / 2) continue;
      alive = alive.filter((c) => best.get(c)! <= fastest * (round === 0 ? CLEAR_LOSS_RATIO : PRUNE_RATIO));
      if (alive.length === 1) break;
    }
    return finish();

    function finish(): Omit<CandidateTiming, 'gflops'>[] {
      return candidates.map((c) => ({ config: matmulConfigKey(c), ms: best.get(c)!, samples: samples.get(c)! }));
    }
  } finally {
    a.dispose();
    b.dispose();
    out.dispose();
  }
}
