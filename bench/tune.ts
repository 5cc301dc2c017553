// Matmul kernel configurations compared on this adapter: GFLOP/s of every candidate the tuner considers at
// policy sizes (256 and 2048 rows through a 256-wide layer) and at 1024^3, and the configuration each shape
// would use after tuning. Prints a table and writes the numbers as JSON.
import { parseArgs } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { init, dispose } from '../engine/runtime.ts';
import type { MatmulFamily } from '../engine/ops/matmul.ts';
import { describeShape, matmulCandidates, RL_TUNING_SHAPES, tuneMatmul, type TuneShape } from '../engine/tune.ts';
import { saveMatmulTuning, tuningCachePath } from '../algorithms/common/tuning-cache.ts';

const { values: args } = parseArgs({
  options: {
    families: { type: 'string', default: 'all' },
    budget: { type: 'string', default: '600000' },
    rl: { type: 'boolean', default: false },
    save: { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log(`usage: node bench/tune.ts [--families all|register|tiled|auto] [--budget MS] [--rl] [--save] [--out DIR]

Times the matmul kernel configurations the autotuner chooses between on the current WebGPU adapter and
prints GFLOP/s per candidate and the configuration each shape then uses; writes DIR/tune-<adapter>.json.
  --families F  candidates to time: all (default), register, tiled, or auto (what tuneMatmul times by
                default: the adapter's own family plus the other family's default)
  --budget MS   stop timing after this many milliseconds (default 600000)
  --rl          time the products RL training runs (the tuner's default set) instead of
                256x256x256, 2048x256x256 (A B^T, a layer's forward) and 1024^3
  --save        with --rl: store the results in the tuning cache that training commands read
                (${tuningCachePath() ?? `disabled by WEBDIFFUSER_TUNING_CACHE=off`})`);
  process.exit(0);
}

const familyChoices: Record<string, MatmulFamily[] | undefined> = { all: ['register', 'tiled'], register: ['register'], tiled: ['tiled'], auto: undefined };
if (!(args.families in familyChoices)) {
  console.error(`bench/tune: --families must be all, register, tiled or auto, got "${args.families}"`);
  process.exit(2);
}
const budgetMs = Number(args.budget);
if (!Number.isFinite(budgetMs) || budgetMs <= 0) {
  console.error(`bench/tune: --budget must be a positive number of milliseconds, got "${args.budget}"`);
  process.exit(2);
}
if (args.save && !args.rl) {
  console.error('bench/tune: --save needs --rl (the cache holds the training shapes)');
  process.exit(2);
}

const rt = await init();
const families = familyChoices[args.families];
const shapes: readonly TuneShape[] = args.rl
  ? RL_TUNING_SHAPES
  : [
      { M: 256, K: 256, N: 256, transA: false, transB: true },
      { M: 2048, K: 256, N: 256, transA: false, transB: true },
      { M: 1024, K: 1024, N: 1024, transA: false, transB: false },
    ];
const candidates = matmulCandidates(families);
const load = loadavg()[0]!;
// Other work on the machine slows every candidate; the load average says how much to trust the numbers.
console.log(`adapter: ${rt.info.description || rt.info.vendor} (${rt.info.adapterClass}); load average ${load.toFixed(1)}`);
console.log(`candidates: ${candidates.length}; timing ${shapes.length} shapes (first use of a kernel builds it: slow on software adapters)`);

const report = await tuneMatmul({
  shapes,
  families,
  retune: true,
  budgetMs,
  log: (line) => console.log(`  ${line}`),
});

console.log('');
console.log(`${'shape (MxKxN)'.padEnd(24)} ${'candidate'.padEnd(24)} ${'GFLOP/s'.padStart(8)} ${'ms'.padStart(9)} samples`);
for (const m of report.measured) {
  for (const c of m.candidates) {
    const mark = c.config === m.chosen ? '  <- chosen' : '';
    console.log(`${describeShape(m.shape).padEnd(24)} ${c.config.padEnd(24)} ${c.gflops.toFixed(2).padStart(8)} ${c.ms.toFixed(3).padStart(9)} ${String(c.samples).padStart(7)}${mark}`);
  }
}
if (report.remaining.length) console.log(`not timed (budget spent): ${report.remaining.map(describeShape).join(', ')}`);
console.log(`tuning took ${(report.elapsedMs / 1000).toFixed(1)} s`);

if (args.save) {
  const saved = saveMatmulTuning(tuningCachePath(), (line) => console.log(line));
  console.log(saved ? `tuning cache: ${saved}` : 'tuning cache not written');
}

const info = rt.info;
const tag = (info.adapterClass === 'software' ? 'software' : info.vendor || 'gpu').replace(/[^a-z0-9-]/gi, '_');
mkdirSync(args.out, { recursive: true });
const file = `${args.out}/tune-${tag}.json`;
writeFileSync(
  file,
  JSON.stringify({ adapter: info.description, adapterClass: info.adapterClass, key: report.adapter, loadAverage: load, date: new Date().toISOString(), measured: report.measured }, null, 2),
);
console.log(`wrote ${file}`);
dispose();
