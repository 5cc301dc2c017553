// The shared run infrastructure: atomic writes (also under a kill), checkpoints, the NaN/Inf guard and the GPU
// loss meter, progress formatting on terminals and in logs, the declared command line.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu } from './helpers.ts';
import { CliError, helpText, parseCli, type CliSpec } from '../algorithms/common/cli.ts';
import { JsonlLog, LossMeter, NonFiniteLossError, Progress, assertFinite, formatDuration, formatProgress, jsonLine } from '../algorithms/common/monitor.ts';
import { createRunDir, loadCheckpoint, lockRunDir, readCheckpointInfo, removeStaleTemps, saveCheckpoint, writeFileAtomic } from '../algorithms/common/run-files.ts';
import { MLP } from '../engine/nn.ts';
import { HostRng } from '../engine/host-rng.ts';
import { AdamW } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import { tensor } from '../engine/tensor.ts';
import { backward } from '../engine/autograd.ts';
import { mean, sum } from '../engine/ops/reduce.ts';
import { square } from '../engine/ops/elementwise.ts';

const t = suite('run');
t.before(gpu);

let scratch = '';
t.before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'wd-run-'));
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

t('writeFileAtomic replaces the whole file and leaves no temporary behind', () => {
  const p = join(scratch, 'a', 'file.bin');
  writeFileAtomic(p, 'first');
  assert.is(readFileSync(p, 'utf8'), 'first');
  writeFileAtomic(p, new Uint8Array([1, 2, 3]));
  assert.equal([...readFileSync(p)], [1, 2, 3]);
  assert.equal(readdirSync(join(scratch, 'a')), ['file.bin']);
});

t('a process killed while rewriting a file leaves either the old or the new contents, never a mix', async () => {
  const p = join(scratch, 'kill.bin');
  const size = 4 << 20;
  writeFileSync(p, Buffer.alloc(size, 65));
  const child = `
    import { writeFileAtomic } from ${JSON.stringify(new URL('../algorithms/common/run-files.ts', import.meta.url).href)};
    const a = new Uint8Array(${size}).fill(66), b = new Uint8Array(${size}).fill(67);
    process.stdout.write('go\\n');
    for (let i = 0; ; i++) writeFileAtomic(${JSON.stringify(p)}, i % 2 ? a : b);`;
  for (let trial = 0; trial < 3; trial++) {
    const proc = spawn(process.execPath, ['--input-type=module', '-e', child], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => proc.stdout.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, 60 + 40 * trial));
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
    const data = readFileSync(p);
    assert.is(data.length, size, 'length');
    const first = data[0]!;
    assert.ok([65, 66, 67].includes(first));
    assert.ok(data.every((x) => x === first), 'file holds one version only');
  }
  removeStaleTemps(scratch);
  assert.ok(readdirSync(scratch).every((n) => !n.includes('.tmp-')));
});

t('checkpoints round-trip modules, optimiser moments and step counts, generator positions and the step', async () => {
  const net = new MLP([3, 5, 2], { rng: new HostRng(1) });
  const opt = new AdamW(net.paramGroup(), { lr: 1e-2 });
  const gen = new Generator(42);
  const x = tensor(Float32Array.from({ length: 12 }, (_, i) => Math.sin(i)), [4, 3]);
  for (let i = 0; i < 3; i++) {
    opt.group.zeroGrad();
    backward(mean(square(net.forward(x))));
    opt.step();
  }
  gen.normal([10]).dispose();
  const p = join(scratch, 'ck.safetensors');
  await saveCheckpoint(p, { modules: { net }, optimizers: { net: opt }, generators: { g: gen }, step: 3, extra: { phase: 'x', complete: false } });
  const info = readCheckpointInfo(p);
  assert.is(info.step, 3);
  assert.equal(info.extra, { phase: 'x', complete: false });

  const net2 = new MLP([3, 5, 2], { rng: new HostRng(2) });
  const opt2 = new AdamW(net2.paramGroup(), { lr: 1e-2 });
  const gen2 = new Generator(42);
  const loaded = loadCheckpoint(p, { modules: { net: net2 }, optimizers: { net: opt2 }, generators: { g: gen2 } });
  assert.is(loaded.step, 3);
  assert.is(opt2.stepCount, 3);
  assert.is(gen2.counter, gen.counter);
  for (const [a, b] of [[net.parameters(), net2.parameters()], [[opt.m, opt.v], [opt2.m, opt2.v]]] as const) {
    for (let i = 0; i < a.length; i++) assert.equal([...(await b[i]!.read())], [...(await a[i]!.read())]);
  }
  // a mismatch changes nothing and names every problem
  const wrong = new MLP([3, 6, 2], { rng: new HostRng(3) });
  const before = await wrong.parameters()[0]!.read();
  assert.throws(() => loadCheckpoint(p, { modules: { net: wrong }, generators: { g: new Generator(7) } }), (e: Error) => /net\.layers\.0\.weight.*\[5, 3\].*\[6, 3\]/s.test(e.message) && /seed 42, run has 7/.test(e.message));
  assert.equal([...(await wrong.parameters()[0]!.read())], [...before]);
  x.dispose();
  opt.dispose();
  opt2.dispose();
});

t('a checkpoint holding NaN is refused at save (the old file kept) and at load; a flipped bit fails its checksum', async () => {
  const net = new MLP([3, 4, 2], { rng: new HostRng(5) });
  const p = join(scratch, 'guarded.safetensors');
  await saveCheckpoint(p, { modules: { net }, step: 1 });
  const good = readFileSync(p);
  const weight = net.parameters()[0]!;
  const values = await weight.read();
  values[2] = Number.NaN;
  weight.set(values);
  await saveCheckpoint(p, { modules: { net }, step: 2 }).then(
    () => assert.unreachable('a NaN checkpoint was written'),
    (e: Error) => assert.match(e.message, /guarded\.safetensors: "net\.layers\.0\.weight"\[2\] = NaN is not finite: the training diverged/),
  );
  assert.ok(Buffer.compare(readFileSync(p), good) === 0, 'the last good checkpoint is untouched');

  // a bit flip deep in the tensor data that leaves every value finite
  const flipped = Uint8Array.from(good);
  flipped[flipped.length - 3]! ^= 0x01;
  writeFileSync(p, flipped);
  assert.throws(() => loadCheckpoint(p, { modules: { net } }), (e: Error) => /guarded\.safetensors: checksum mismatch/.test(e.message));
  // a plain module file (no checksum) with NaN is refused too, naming the tensor
  const { saveModule } = await import('../engine/safetensors.ts');
  writeFileSync(p, await saveModule(net));
  assert.throws(() => loadCheckpoint(p, { modules: { net } }), (e: Error) => /weight"\[2\] = NaN is not finite; nothing loaded/.test(e.message));
  // a truncated file names itself
  writeFileSync(p, good.subarray(0, 40));
  assert.throws(() => loadCheckpoint(p, { modules: { net } }), (e: Error) => /^checkpoint .*guarded\.safetensors: /.test(e.message));
  assert.throws(() => readCheckpointInfo(p), (e: Error) => /guarded\.safetensors/.test(e.message));
});

t('a run directory held by a live process is refused; a lock left by a finished process is taken over', async () => {
  const dir = join(scratch, 'locked-run');
  const url = JSON.stringify(new URL('../algorithms/common/run-files.ts', import.meta.url).href);
  const holder = spawn(process.execPath, ['--input-type=module', '-e', `
    const { lockRunDir } = await import(${url});
    lockRunDir(${JSON.stringify(dir)});
    process.stdout.write('held\\n');
    setTimeout(() => {}, 60000);
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
  assert.throws(() => lockRunDir(dir), (e: Error) => new RegExp(`run directory .*locked-run is in use by process ${holder.pid}`).test(e.message));
  holder.kill('SIGKILL');
  await new Promise((resolve) => holder.once('exit', resolve));
  // the killed holder never released its lock: it is stale now
  assert.ok(existsSync(join(dir, 'run.lock')));
  const release = lockRunDir(dir);
  assert.is(readFileSync(join(dir, 'run.lock'), 'utf8'), `${process.pid}\n`);
  release();
  assert.not.ok(existsSync(join(dir, 'run.lock')), 'released');
});

t('assertFinite names the phase, the steps and the kept checkpoint; finite values pass', () => {
  assertFinite('critic', 100, { qLoss: 1, vLoss: 0.5 });
  try {
    assertFinite('critic', 1200, { qLoss: Number.NaN, vLoss: 0.25 }, { fromStep: 1100, checkpoint: 'runs/x/critic.safetensors' });
    assert.unreachable('no error');
  } catch (e) {
    assert.instance(e, NonFiniteLossError);
    const err = e as NonFiniteLossError;
    assert.is(err.phase, 'critic');
    assert.is(err.step, 1200);
    assert.match(err.message, "phase 'critic' in steps 1101..1200: qLoss = NaN (vLoss = 0.25)");
    assert.match(err.message, 'last good checkpoint is kept: runs/x/critic.safetensors');
  }
  assert.throws(() => assertFinite('actor', 7, { loss: Infinity }), /phase 'actor' at step 7: loss = Infinity.*no checkpoint/);
});

t('LossMeter averages on the GPU and a NaN at any step of the interval survives into the mean', async () => {
  const meter = new LossMeter();
  for (const v of [1, 2, 3]) meter.add({ a: tensor([v]), pair: [tensor([v, 10 * v]), ['x', 'y']] });
  assert.equal(await meter.drain(), { a: 2, x: 2, y: 20 });
  meter.add({ a: tensor([1]) });
  meter.add({ a: tensor([Number.NaN]) });
  meter.add({ a: tensor([1]) });
  const r = await meter.drain();
  assert.ok(Number.isNaN(r.a));
  meter.dispose();
});

t('formatProgress and formatDuration', () => {
  assert.is(formatDuration(800), '0.8s');
  assert.is(formatDuration(42_000), '42s');
  assert.is(formatDuration(187_000), '3:07');
  assert.is(formatDuration(3_723_000), '1:02:03');
  const line = formatProgress({ phase: 'critic', step: 1200, total: 5000, sessionSteps: 1200, elapsedMs: 14_000, values: { qLoss: 0.41234, vLoss: 0.01 } });
  assert.is(line, '[critic] 1200/5000  24% | 85.7 steps/s | qLoss 0.4123 vLoss 0.01 | 14s, ETA 44s');
  // a resumed phase measures its rate over this session's steps only
  const resumed = formatProgress({ phase: 'actor', step: 900, total: 1000, sessionSteps: 100, elapsedMs: 1000, values: {} });
  assert.match(resumed, '100 steps/s');
  assert.match(resumed, 'ETA 1.0s');
});

function fakeStream(isTTY: boolean, columns = 60) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, columns, write: (s: string) => chunks.push(s) } };
}

t('Progress redraws one line on a TTY (cut to the width) and prints plain lines elsewhere', () => {
  let now = 0;
  const tty = fakeStream(true, 40);
  const p = new Progress('behavior', 100, { stream: tty.stream, now: () => now, ttyIntervalMs: 100 });
  now = 50;
  p.update(10, { loss: 1 });
  now = 60;
  p.update(11, { loss: 1 }); // within the interval: not drawn
  now = 200;
  p.log('note');
  p.finish(100, { loss: 0.5 });
  const out = tty.chunks.join('');
  assert.is(tty.chunks.filter((c) => c.startsWith('\r[')).length, 3, 'draws: update, redraw after log, finish');
  assert.ok(out.includes('\r\x1b[Knote\n'));
  assert.ok(out.endsWith('\n'));
  for (const c of tty.chunks.filter((x) => x.startsWith('\r['))) assert.ok(c.replace('\x1b[K', '').length - 1 <= 39, `cut to the width: ${JSON.stringify(c)}`);
  assert.not.ok(out.replace(/\x1b\[K/g, '').slice(0, -1).includes('\n[behavior]'), 'no newline between redraws');

  now = 0;
  const plain = fakeStream(false);
  const q = new Progress('critic', 10, { stream: plain.stream, now: () => now, plainIntervalMs: 1000 });
  for (let i = 1; i <= 10; i++) {
    now = i * 300;
    q.update(i, { qLoss: i });
  }
  q.finish(10);
  assert.ok(plain.chunks.every((c) => c.endsWith('\n') && !c.includes('\r')));
  assert.is(plain.chunks.length, 4, 'lines at 0.3 s, 1.5 s, 2.7 s and the finish');
});

t('Progress measures rate and ETA from a restart (an online run past its random warm-up)', () => {
  let now = 0;
  const out = fakeStream(false);
  const p = new Progress('sac', 2000, { stream: out.stream, now: () => now, plainIntervalMs: 0 });
  now = 100;
  p.update(1000); // the warm-up: 1000 steps in 0.1 s
  p.restartRate(1000);
  now = 10_100;
  p.update(1100); // training: 100 steps in 10 s
  assert.match(out.chunks.at(-1)!, /\| 10(\.0)? steps\/s \|/, out.chunks.at(-1));
  assert.match(out.chunks.at(-1)!, /ETA 1:30/, 'the 900 steps left at the training pace');
});

t('parseCli: defaults, typed values, errors naming the option, --help', () => {
  const spec: CliSpec<{
    steps: { type: 'integer'; default: 10; positive: true; description: 'how many steps' };
    lr: { type: 'number'; description: 'learning rate' };
    mode: { type: 'string'; choices: readonly ['a', 'b']; default: 'a'; description: 'the mode' };
    fast: { type: 'boolean'; description: 'go fast' };
  }> = {
    usage: 'node x.ts [options]',
    description: 'Does x.',
    options: {
      steps: { type: 'integer', default: 10, positive: true, description: 'how many steps' },
      lr: { type: 'number', description: 'learning rate' },
      mode: { type: 'string', choices: ['a', 'b'], default: 'a', description: 'the mode' },
      fast: { type: 'boolean', description: 'go fast' },
    },
    examples: ['node x.ts --steps 5'],
  };
  assert.equal(parseCli(spec, []), { steps: 10, lr: undefined, mode: 'a', fast: undefined });
  assert.equal(parseCli(spec, ['--steps', '7', '--lr=1e-3', '--mode', 'b', '--fast']), { steps: 7, lr: 1e-3, mode: 'b', fast: true });
  assert.equal(parseCli(spec, ['--lr', '-0.5', '--fast']), { steps: 10, lr: -0.5, mode: 'a', fast: true }, 'a negative number after a numeric option is its value');
  assert.throws(() => parseCli(spec, ['--step', '3']), (e: Error) => e instanceof CliError && e.message === 'unknown option --step; did you mean --steps? (see --help)');
  assert.throws(() => parseCli(spec, ['--fsat']), /did you mean --fast\?/);
  assert.throws(() => parseCli(spec, ['--learning-rate=1']), (e: Error) => e.message === 'unknown option --learning-rate (see --help)');
  assert.throws(() => parseCli(spec, ['--steps', '-3']), /--steps must be positive, got -3/);
  assert.throws(() => parseCli(spec, ['--mode', '-1']), /--mode/);
  assert.throws(() => parseCli(spec, ['--steps', '1.5']), (e: Error) => e instanceof CliError && /--steps needs an integer/.test(e.message));
  assert.throws(() => parseCli(spec, ['--steps', '0']), /--steps must be positive/);
  assert.throws(() => parseCli(spec, ['--lr', 'abc']), /--lr needs a number, got 'abc'/);
  assert.throws(() => parseCli(spec, ['--mode', 'c']), /--mode must be one of a, b; got 'c'/);
  assert.throws(() => parseCli(spec, ['--nope']), /--nope.*see --help/);
  assert.throws(() => parseCli(spec, ['stray']), /unexpected argument 'stray'/);
  let printed = '';
  assert.is(parseCli(spec, ['--help'], (s) => (printed = s)), null);
  assert.is(printed, helpText(spec));
  assert.match(printed, /usage: node x\.ts \[options\]/);
  assert.match(printed, /--steps <integer>\s+how many steps \(default 10\)/);
  assert.match(printed, /--mode <a\|b>\s+the mode \(default a\)/);
  assert.match(printed, /-h, --help/);
  assert.match(printed, /Examples:\n {2}node x\.ts --steps 5/);
});

t('run directory, JSONL log with non-finite numbers kept readable', () => {
  const d = createRunDir('srpo-test', { base: scratch, date: new Date(2024, 0, 31, 23, 59, 58) });
  assert.ok(d.endsWith('srpo-test-20240131-235958'));
  const d2 = createRunDir('srpo-test', { base: scratch, date: new Date(2024, 0, 31, 23, 59, 58) });
  assert.ok(d2.endsWith('srpo-test-20240131-235958-2'));
  const log = new JsonlLog(join(d, 'log.jsonl'));
  log.write({ phase: 'a', step: 1, loss: Number.NaN });
  log.write({ phase: 'a', step: 2, loss: 0.5 });
  const recs = JsonlLog.read(log.path);
  assert.is(recs.length, 2);
  assert.is(recs[0]!['loss'], 'NaN');
  assert.is(recs[1]!['loss'], 0.5);
  assert.is(jsonLine({ v: -Infinity }), '{"v":"-Infinity"}');
  assert.ok(existsSync(d2));
});

t.run();
