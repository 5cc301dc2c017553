// One-line mutations of the algorithms, each run against the tests that cover it: a test suite that notices a
// wrong algorithm fails on every one ("caught"). Not part of CI (minutes per mutation on a software adapter).
//
//   node scripts/mutations.ts [--only name,...]
//
// Every mutation edits one line in the working tree and puts it back afterwards, even on Ctrl-C.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { CliError, parseCli, runMain, type CliSpec } from '../algorithms/common/cli.ts';

interface Mutation {
  name: string;
  what: string;
  file: string;
  find: string;
  replace: string;
  /** uvu file pattern of the covering tests. */
  tests: string;
}

const MUTATIONS: Mutation[] = [
  {
    name: 'select-lowest-q',
    what: 'evaluation selects the candidate with the lowest Q',
    file: 'algorithms/common/diffusion-policy.ts',
    find: 'return selectByCritic(a, critic.qTarget.min(states, a), n, gen,',
    replace: 'return selectByCritic(a, neg(critic.qTarget.min(states, a)), n, gen,',
    tests: '^(dql|edp)\\.test\\.ts$',
  },
  {
    name: 'edp-guide-zero',
    what: 'EDP guide weight set to 0 (pure behaviour cloning)',
    file: 'algorithms/edp.ts',
    find: 'scale(guide, cfg.guideCoef)',
    replace: 'scale(guide, 0)',
    tests: '^edp\\.test\\.ts$',
  },
  {
    name: 'edp-td3-low-q',
    what: 'EDP-TD3 guide pushes towards low Q',
    file: 'algorithms/edp.ts',
    find: "scale(randomHeadQLoss(q1, q2, gen, 'same'), cfg.alpha)",
    replace: "scale(randomHeadQLoss(q1, q2, gen, 'same'), -cfg.alpha)",
    tests: '^edp\\.test\\.ts$',
  },
  {
    name: 'sdac-energy-zero',
    what: 'SDAC energy scale 0 (no Q guidance)',
    file: 'algorithms/sdac/agent.ts',
    find: 'const energy = scale(exp(neg(logAlpha)), c.energyScale);',
    replace: 'const energy = scale(exp(neg(logAlpha)), 0);',
    tests: '^sdac\\.test\\.ts$',
  },
  {
    name: 'sdac-energy-negated',
    what: 'SDAC energy negated',
    file: 'algorithms/sdac/agent.ts',
    find: 'const energy = scale(exp(neg(logAlpha)), c.energyScale);',
    replace: 'const energy = scale(exp(neg(logAlpha)), -c.energyScale);',
    tests: '^sdac\\.test\\.ts$',
  },
  {
    name: 'dql-q-dropped',
    what: 'Diffusion-QL Q term dropped',
    file: 'algorithms/dql.ts',
    find: 'return { loss: add(bc, scale(q, cfg.eta)), bc, q };',
    replace: 'return { loss: add(bc, scale(q, 0)), bc, q };',
    tests: '^dql\\.test\\.ts$',
  },
  {
    name: 'dql-q-flipped',
    what: 'Diffusion-QL Q term sign flipped',
    file: 'algorithms/dql.ts',
    find: 'return { loss: add(bc, scale(q, cfg.eta)), bc, q };',
    replace: 'return { loss: add(bc, scale(q, -cfg.eta)), bc, q };',
    tests: '^dql\\.test\\.ts$',
  },
  {
    name: 'dtql-trust-region-dropped',
    what: 'DTQL trust-region loss dropped',
    file: 'algorithms/dtql.ts',
    find: 'let loss = sub(scale(trLoss, cfg.alpha), q);',
    replace: 'let loss = sub(scale(trLoss, 0), q);',
    tests: '^dtql\\.test\\.ts$',
  },
  {
    name: 'srpo-q-gradient-dropped',
    what: "SRPO actor ignores the critic's action gradient",
    file: 'algorithms/srpo.ts',
    find: '    beta: cfg.beta,',
    replace: '    beta: 0,',
    tests: '^srpo\\.test\\.ts$',
  },
  {
    name: 'not-done-forced',
    what: 'replay store: notDone forced to 1',
    file: 'datasets/replay.ts',
    find: '      packed[row + width - 1] = 1 - done;',
    replace: '      packed[row + width - 1] = 1;',
    tests: '^(replay|iql)\\.test\\.ts$',
  },
];

const OPTIONS = {
  only: { type: 'string', placeholder: 'name,...', description: `mutations to run (default: all): ${MUTATIONS.map((m) => m.name).join(', ')}` },
} as const;

const CLI: CliSpec<typeof OPTIONS> = {
  usage: 'node scripts/mutations.ts [--only name,...]',
  description: 'Applies each one-line mutation of the algorithms in turn, runs the tests that cover it, restores the file, and prints a table: caught when a test fails.',
  options: OPTIONS,
  examples: ['node scripts/mutations.ts', 'node scripts/mutations.ts --only edp-guide-zero,sdac-energy-zero'],
};

async function main(): Promise<void> {
  const args = parseCli(CLI);
  if (!args) return;
  const only = args.only?.split(',').filter(Boolean);
  const unknown = only?.filter((n) => !MUTATIONS.some((m) => m.name === n)) ?? [];
  if (unknown.length) throw new CliError(`--only: unknown mutation ${unknown.join(', ')}`);
  const chosen = MUTATIONS.filter((m) => !only || only.includes(m.name));
  const rows: string[] = [];
  for (const m of chosen) {
    const original = readFileSync(m.file, 'utf8');
    const count = original.split(m.find).length - 1;
    if (count !== 1) throw new Error(`${m.name}: the line to mutate occurs ${count} times in ${m.file}`);
    const restore = () => writeFileSync(m.file, original);
    process.once('SIGINT', restore);
    writeFileSync(m.file, original.replace(m.find, m.replace));
    const t0 = performance.now();
    let r;
    try {
      r = spawnSync(process.execPath, ['node_modules/uvu/bin.js', 'test', m.tests, '--color=false'], { encoding: 'utf8' });
    } finally {
      restore();
      process.off('SIGINT', restore);
    }
    const passed = /Passed:\s+(\d+)/.exec(r.stdout)?.[1];
    const total = /Total:\s+(\d+)/.exec(r.stdout)?.[1];
    const verdict = r.status !== 0 ? 'caught' : 'SURVIVED';
    const row = `| ${m.what} | \`${m.file}\` | ${m.tests} | ${passed ?? '?'} of ${total ?? '?'} pass | ${verdict} | ${((performance.now() - t0) / 1000).toFixed(0)} s |`;
    process.stderr.write(`${row}\n`);
    rows.push(row);
  }
  console.log('| mutation | file | tests | result | verdict | time |\n|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
}

await runMain('mutations', main);
