// Every training command end to end, as a user runs it: a child process on tiny settings that exits 0 and
// writes its summary; and the ways a run ends badly: a NaN loss stops with one message, exit code 1 and the
// reason in the log; a dataset of another environment than the task's is refused before a run directory exists.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JsonlLog } from '../algorithms/common/monitor.ts';

const t = suite('commands');
let scratch = '';
t.before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'wd-commands-'));
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

function run(script: string, args: string[]) {
  const r = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const OFFLINE_TINY = ['--eval-episodes', '2', '--eval-every', '0', '--log-every', '5', '--quiet'];
const COMMANDS: [string, string[]][] = [
  ['algorithms/srpo.ts', ['--behavior-steps', '10', '--critic-steps', '10', '--actor-steps', '10', ...OFFLINE_TINY]],
  ['algorithms/dtql.ts', ['--pretrain-steps', '10', '--train-steps', '10', ...OFFLINE_TINY]],
  ['algorithms/dql.ts', ['--train-steps', '10', ...OFFLINE_TINY]],
  ['algorithms/edp.ts', ['--backbone', 'crr', '--train-steps', '10', ...OFFLINE_TINY]],
  ['algorithms/sac.ts', ['--preset', 'quick', '--steps', '120', '--warmup-steps', '60', '--eval-episodes', '2', '--eval-every', '0', '--quiet']],
  ['algorithms/sdac.ts', ['--preset', 'quick', '--steps', '80', '--warmup-steps', '40', '--eval-episodes', '2', '--eval-every', '0', '--quiet']],
];

for (const [script, args] of COMMANDS) {
  t(`${script} runs end to end on tiny settings`, () => {
    const out = join(scratch, script.replace(/\W/g, '-'));
    const r = run(script, [...args, '--out', out]);
    assert.is(r.status, 0, `${script} exited ${r.status}:\n${r.stderr}`);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as Record<string, unknown>;
    const score = (summary['score'] ?? summary['final']) as { mean: number } | undefined;
    assert.ok(score && Number.isFinite(score.mean), `${script}: a finite final score in summary.json`);
    assert.ok(existsSync(join(out, 'curves.svg')));
    assert.not.ok(existsSync(join(out, 'run.lock')), 'the run directory is released');
    const sessions = JsonlLog.read(join(out, 'log.jsonl')).filter((x) => x['phase'] === 'session');
    assert.equal(sessions.map((x) => x['end']), ['done']);
    // resuming the finished run checks its config.json against the preset and trains nothing again
    const again = run(script, ['--resume', out, '--quiet']);
    assert.is(again.status, 0, `${script} --resume exited ${again.status}:\n${again.stderr}`);
    const resumed = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(resumed['score'] ?? resumed['final'], summary['score'] ?? summary['final']);
  });
}

t('a NaN loss stops the run with one message, exit code 1 and the reason in the log', () => {
  const out = join(scratch, 'nan');
  const r = run('algorithms/dql.ts', ['--lr', '1e38', '--train-steps', '20', '--no-bc-eval', ...OFFLINE_TINY, '--out', out]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /dql: non-finite loss in phase 'train'/);
  assert.not.match(r.stderr, /AbortError|Unhandled|at async/, 'no stray rejection or stack');
  const last = JsonlLog.read(join(out, 'log.jsonl')).at(-1)!;
  assert.is(last['phase'], 'session');
  assert.is(last['end'], 'non-finite');
});

t('a run whose weights diverge while its losses stay finite stops at its next checkpoint, keeping none of that state', () => {
  const out = join(scratch, 'diverged');
  // DTQL at lr 1e30: the behaviour network's weights turn NaN while the logged losses stay finite
  const r = run('algorithms/dtql.ts', ['--lr', '1e30', '--pretrain-steps', '40', '--train-steps', '10', '--no-bc-eval', ...OFFLINE_TINY, '--out', out]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /dtql: checkpoint .*pretrain\.safetensors: "[\w.]+"\[\d+\] = NaN is not finite: the training diverged; checkpoint not written/);
  assert.not.ok(existsSync(join(out, 'pretrain.safetensors')));
  assert.is(JsonlLog.read(join(out, 'log.jsonl')).at(-1)!['end'], 'non-finite');
});

t("a dataset of another environment than the task's is refused, and no run directory is left", () => {
  const out = join(scratch, 'mismatch');
  const r = run('algorithms/srpo.ts', ['--task', 'hopper-medium-v2', '--dataset', 'pendulum-medium-v1', '--out', out]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /pendulum-medium-v1 is Pendulum-v1 data, but task 'hopper-medium-v2' holds settings for Hopper-v4/);
  assert.not.ok(existsSync(out));
});

t('a damaged or edited config.json fails the resume, naming the file', () => {
  const out = join(scratch, 'algorithms-srpo-ts');
  const path = join(out, 'config.json');
  const good = readFileSync(path, 'utf8');
  for (const [edit, pattern] of [
    [good.slice(0, good.length / 2), /config\.json is not a readable run configuration/],
    [good.replace(/"actorSteps": \d+/, '"actorSteps": "ten"'), /config\.json does not hold a valid configuration: 'actorSteps' is string "ten", expected number/],
    [good.replace(/"task": "[^"]+"/, '"task": "no-such-task"'), /config\.json: unknown task 'no-such-task'/],
  ] as const) {
    writeFileSync(path, edit);
    const r = run('algorithms/srpo.ts', ['--resume', out, '--quiet']);
    assert.is(r.status, 1);
    assert.match(r.stderr, pattern);
    assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  }
  writeFileSync(path, good);
});

t('a start that fails after the run directory was made removes it (no device of that name)', () => {
  const out = join(scratch, 'no-device');
  const r = run('algorithms/dtql.ts', ['--device', 'no-such-adapter', '--out', out, '--quiet']);
  assert.is(r.status, 1);
  assert.match(r.stderr, /no WebGPU device/);
  assert.not.ok(existsSync(out), 'a directory holding only config.json is removed');
});

t.run();
