// Kernel microbenchmarks: matmul GFLOP/s at square and policy sizes, fused-layer forward+backward, elementwise
// and AdamW bandwidth, and the host cost of one dispatch. Median of repeated runs after warm-up, on fresh
// random data. Prints a table and writes the numbers as JSON.
import { parseArgs } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import { init, dispose } from '../engine/runtime.ts';
import { tensor, tidy, keep } from '../engine/tensor.ts';
import { fill_ } from '../engine/basic.ts';
import { noGrad, backward } from '../engine/autograd.ts';
import { matmul, linear, setMatmulFamily, matmulFamily, matmulConfigFor, matmulConfigKey } from '../engine/ops/matmul.ts';
import { prepareMatmulTuning } from '../algorithms/common/tuning-cache.ts';
import { add } from '../engine/ops/elementwise.ts';
import { sum } from '../engine/ops/reduce.ts';
import { parameter, ParamGroup } from '../engine/params.ts';
import { AdamW } from '../engine/optim.ts';

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '7' },
    quick: { type: 'boolean', default: false },
    family: { type: 'string', default: 'auto' },
    tuned: { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log(`usage: node bench/kernels.ts [--reps N] [--quick] [--family auto|register|tiled] [--out DIR]

Times the engine's kernels on the current WebGPU adapter and prints a table; also writes DIR/kernels-<adapter>.json.
  --reps N     timed repetitions per case (median reported; default 7, after one warm-up)
  --quick      smaller sizes, for a fast look
  --family F   matmul kernel family (default: chosen by adapter)
  --tuned      use the matmul tuning cache (node bench/tune.ts --rl --save fills it), after up to 2 s of
               tuning missing shape classes; each matmul row then names the configuration it ran`);
  process.exit(0);
}

const reps = Math.max(1, Number(args.reps));
const rt = await init();
if (args.family !== 'auto') setMatmulFamily(args.family as 'register' | 'tiled');
if (args.tuned) await prepareMatmulTuning({ budgetMs: 2000, log: (line) => console.log(line) });

let seed = (Date.now() >>> 0) || 1;
function random(n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    out[i] = seed / 4294967296 - 0.5;
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median seconds of `inner` calls of fn per repetition, GPU work included (each repetition ends with a sync). */
async function time(fn: () => void, inner = 1): Promise<number> {
  fn();
  await rt.sync();
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    await rt.sync();
    samples.push((performance.now() - t0) / 1000 / inner);
  }
  return median(samples);
}

interface Row {
  case: string;
  value: number;
  unit: string;
  ms: number;
}
const rows: Row[] = [];
function report(name: string, value: number, unit: string, seconds: number): void {
  rows.push({ case: name, value, unit, ms: seconds * 1000 });
  console.log(`${name.padEnd(44)} ${value.toFixed(2).padStart(10)} ${unit.padEnd(8)} ${(seconds * 1000).toFixed(3).padStart(10)} ms`);
}

console.log(`adapter: ${rt.info.description || rt.info.vendor} (${rt.info.adapterClass}); matmul family: ${matmulFamily()}; median of ${reps}`);
console.log(`${'case'.padEnd(44)} ${'value'.padStart(10)} ${'unit'.padEnd(8)} ${'time'.padStart(13)}`);

// ---- matmul ----
const square = args.quick ? 512 : 1024;
const matmulCases: [number, number, number][] = [
  [square, square, square],
  [256, 23, 256],
  [256, 256, 256],
  [256, 256, 1024],
  [2048, 256, 256],
];
for (const [m, k, n] of matmulCases) {
  const a = keep(tensor(random(m * k), [m, k]));
  const b = keep(tensor(random(k * n), [k, n]));
  const s = await time(() => tidy(() => noGrad(() => void matmul(a, b))), m * n * k > 1e8 ? 1 : 10);
  const config = args.tuned ? ` ${matmulConfigKey(matmulConfigFor(m, k, n))}` : '';
  report(`matmul ${m}x${k}x${n} (MxKxN)${config}`, (2 * m * n * k) / s / 1e9, 'GFLOP/s', s);
  a.dispose();
  b.dispose();
}

// ---- fused layer: forward + backward at policy sizes ----
for (const [batch, inF, outF, act] of [
  [256, 256, 256, 'mish'],
  [2048, 256, 256, 'relu'],
] as const) {
  const w = parameter(random(outF * inF), [outF, inF], 'w');
  const bias = parameter(random(outF), [outF], 'b');
  const x = keep(tensor(random(batch * inF), [batch, inF]));
  const s = await time(
    () =>
      tidy(() => {
        const y = linear(x, w, bias, act);
        backward(sum(y));
        w.grad?.dispose();
        bias.grad?.dispose();
        w.grad = null;
        bias.grad = null;
      }),
    5,
  );
  // forward GEMM + dX and dW GEMMs
  report(`linear ${act} ${batch}x${inF}->${outF} fwd+bwd`, (3 * 2 * batch * inF * outF) / s / 1e9, 'GFLOP/s', s);
  x.dispose();
}

// ---- elementwise ----
{
  const n = args.quick ? 1 << 18 : 1 << 20;
  const a = keep(tensor(random(n)));
  const b = keep(tensor(random(n)));
  const s = await time(() => tidy(() => noGrad(() => void add(a, b))), 10);
  report(`add ${n} f32`, (3 * 4 * n) / s / 1e9, 'GB/s', s);
}

// ---- AdamW over one flat group ----
{
  const sizes = [256 * 17, 256, 256 * 256, 256, 256 * 256, 256, 256 * 256, 256, 256 * 6, 6];
  const params = sizes.map((n, i) => ({ name: `p${i}`, tensor: parameter(random(n), [n]) }));
  const group = new ParamGroup(params);
  fill_(group.grads, 0.01);
  const opt = new AdamW(group, { lr: 1e-3, weightDecay: 0.01 });
  const s = await time(() => opt.step(), 20);
  // reads p, g, m, v and writes p, m, v
  report(`adamw ${group.length} params, 1 dispatch`, (7 * 4 * group.length) / s / 1e9, 'GB/s', s);
}

// ---- host cost of one dispatch (encoding only, batched in one pass) ----
{
  const t = keep(tensor(random(64)));
  const n = 20000;
  fill_(t, 1);
  await rt.sync();
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fill_(t, 1);
    samples.push((performance.now() - t0) / n);
    await rt.sync();
  }
  const us = median(samples) * 1000;
  report('host cost per batched dispatch', us, 'us', us / 1e6);
}

const info = rt.info;
const tag = (info.adapterClass === 'software' ? 'software' : info.vendor || 'gpu').replace(/[^a-z0-9-]/gi, '_');
mkdirSync(args.out, { recursive: true });
const file = `${args.out}/kernels-${tag}.json`;
writeFileSync(
  file,
  JSON.stringify({ adapter: info.description, adapterClass: info.adapterClass, matmulFamily: matmulFamily(), reps, date: new Date().toISOString(), rows }, null, 2),
);
console.log(`wrote ${file}`);
dispose();
