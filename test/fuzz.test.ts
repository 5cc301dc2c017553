// Damaged files through the public loaders, on a fixed seed: byte flips, truncations and field edits of an HDF5
// dataset (as the project writes it), a training checkpoint and a run's config.json. Every case must either load
// exactly what was written or fail with one error that names the file: never a crash, a hang or a changed value.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu, rng } from './helpers.ts';
import { encodeD4RL, readD4RL, type D4RLData } from '../datasets/d4rl.ts';
import { MLP } from '../engine/nn.ts';
import { HostRng } from '../engine/host-rng.ts';
import { AdamW } from '../engine/optim.ts';
import { loadCheckpoint, saveCheckpoint } from '../algorithms/common/run-files.ts';
import { checkConfig, openRun } from '../algorithms/common/command.ts';
import { taskConfig } from '../algorithms/srpo/presets.ts';

const t = suite('fuzz');
let scratch = '';
t.before(async () => {
  await gpu();
  scratch = mkdtempSync(join(tmpdir(), 'wd-fuzz-'));
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

type Damage = { what: string; bytes: Uint8Array };

/** `count` damaged copies: single-bit flips anywhere, and truncations at any length. */
function damaged(good: Uint8Array, count: number, seed: number): Damage[] {
  const r = rng(seed);
  const out: Damage[] = [];
  for (let i = 0; i < count; i++) {
    if (i % 3 === 2) {
      const length = Math.floor(r() * good.length);
      out.push({ what: `truncated to ${length} bytes`, bytes: good.subarray(0, length) });
    } else {
      const bytes = Uint8Array.from(good);
      const at = Math.floor(r() * bytes.length);
      const bit = Math.floor(r() * 8);
      bytes[at]! ^= 1 << bit;
      out.push({ what: `bit ${bit} of byte ${at} flipped`, bytes });
    }
  }
  return out;
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.prototype.every.call(a, (v: number, i: number) => Object.is(v, b[i]));

t('HDF5 datasets, compressed or not: the exact data or an error naming the file', async () => {
  const r = rng(3);
  const n = 300;
  const obs = Float32Array.from({ length: n * 3 }, () => r() * 2 - 1);
  const data: D4RLData = {
    size: n, obsDim: 3, actDim: 1, observations: obs, nextObservations: Float32Array.from(obs, (v) => v * 0.5),
    actions: Float32Array.from({ length: n }, () => r() * 2 - 1), rewards: Float32Array.from({ length: n }, () => -r()),
    terminals: new Uint8Array(n), timeouts: Uint8Array.from({ length: n }, (_, i) => (i % 100 === 99 ? 1 : 0)),
    metadata: { source: 'fuzz', iteration: 3 },
  };
  const tally = { exact: 0, refused: 0 };
  for (const compression of [4, false] as const) {
    const good = await encodeD4RL(data, { compression });
    for (const d of damaged(good, 90, compression === false ? 11 : 12)) {
      let back: D4RLData;
      try {
        back = await readD4RL(d.bytes, { name: 'fuzz.hdf5' });
      } catch (err) {
        assert.match((err as Error).message, /^fuzz\.hdf5: /, `${d.what}: ${(err as Error).message}`);
        tally.refused++;
        continue;
      }
      for (const k of ['observations', 'nextObservations', 'actions', 'rewards', 'terminals', 'timeouts'] as const) {
        assert.ok(same(back[k]!, data[k]!), `${d.what}: '${k}' loaded changed`);
      }
      assert.is(back.metadata!['source'], 'fuzz', `${d.what}: metadata`);
      tally.exact++;
    }
  }
  assert.ok(tally.refused > 60 && tally.exact > 20, `both outcomes occur: ${JSON.stringify(tally)}`);
});

t('checkpoints: the exact state or an error naming the file', async () => {
  const net = new MLP([4, 8, 2], { rng: new HostRng(1) });
  const opt = new AdamW(net.paramGroup(), { lr: 1e-3 });
  const path = join(scratch, 'fuzz.safetensors');
  await saveCheckpoint(path, { modules: { net }, optimizers: { net: opt }, step: 7, extra: { phase: 'x' } });
  const good = readFileSync(path);
  const want = await Promise.all(net.parameters().map((p) => p.read()));
  const copy = new MLP([4, 8, 2], { rng: new HostRng(2) });
  const copyOpt = new AdamW(copy.paramGroup(), { lr: 1e-3 });
  let loaded = 0;
  // the header's JSON edited too: a shape, a dtype, an offset, the step
  const header = good.subarray(8, 8 + Number(good.readBigUInt64LE(0))).toString('utf8');
  const edits = [
    header.replace('[8,4]', '[4,8]'), header.replace('"F32"', '"F16"'), header.replace(/"data_offsets":\[(\d+)/, (_m, a) => `"data_offsets":[${Number(a) + 4}`),
    header.replace('"step":"7"', '"step":"8"'),
  ].map((h) => {
    const bytes = Buffer.alloc(good.length);
    good.copy(bytes);
    bytes.write(h.padEnd(header.length, ' ').slice(0, header.length), 8, 'utf8');
    return { what: 'header edited', bytes: new Uint8Array(bytes) };
  });
  for (const d of [...damaged(good, 90, 21), ...edits]) {
    writeFileSync(path, d.bytes);
    try {
      loadCheckpoint(path, { modules: { net: copy }, optimizers: { net: copyOpt } });
    } catch (err) {
      assert.match((err as Error).message, /^checkpoint .*fuzz\.safetensors: /, `${d.what}: ${(err as Error).message}`);
      continue;
    }
    const got = await Promise.all(copy.parameters().map((p) => p.read()));
    got.forEach((g, i) => assert.ok(same(g, want[i]!), `${d.what}: parameter ${i} loaded changed`));
    loaded++;
  }
  assert.ok(loaded < 10, `almost every damage is refused (${loaded} loaded exactly)`);
  opt.dispose();
  copyOpt.dispose();
});

t("config.json of a resumed run: truncations and edits fail naming the file, or load what was written", () => {
  const dir = join(scratch, 'run');
  const cfg = taskConfig('pendulum-quick');
  const template = { template: () => taskConfig('pendulum-quick') };
  const fresh = openRun({ out: dir }, [], [], () => ({ cfg, name: 'x' }));
  fresh.release();
  const path = join(dir, 'config.json');
  const good = readFileSync(path, 'utf8');
  const r = rng(31);
  const keys = Object.keys(cfg);
  const cases: string[] = [];
  for (let i = 0; i < 20; i++) cases.push(good.slice(0, Math.floor(r() * good.length)));
  for (let i = 0; i < 20; i++) {
    const key = keys[Math.floor(r() * keys.length)]!;
    const value = [null, 'x', true, [], {}, 12][i % 6];
    cases.push(JSON.stringify({ ...cfg, [key]: value }));
  }
  let loaded = 0;
  for (const text of cases) {
    writeFileSync(path, text);
    try {
      const run = openRun({ resume: dir }, [], [], () => assert.unreachable() as never);
      run.release();
      checkConfig(path, run.cfg, template);
      assert.equal(run.cfg, JSON.parse(text), 'loads exactly what the file holds');
      loaded++;
    } catch (err) {
      assert.match((err as Error).message, /run[/\\]config\.json/, (err as Error).message);
    }
  }
  assert.ok(loaded <= 4, `only edits that keep every setting's kind load (${loaded})`);
});

t.run();
