import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { gpu, rng, freshSeed, randn } from './helpers.ts';
import { decodeSafetensors, encodeSafetensors, loadModule, saveModule, SafetensorsError } from '../engine/safetensors.ts';
import { GaussianFourierProjection, LayerNorm, Linear, MLP, Module, ResidualBlock } from '../engine/nn.ts';
import { HostRng } from '../engine/host-rng.ts';

const t = suite('safetensors');
t.before(gpu);

/** A file from a header string and raw data bytes, the header padded with spaces to `pad` alignment. */
function fileOf(header: string, data: number[] | Uint8Array, pad = 8): Uint8Array {
  const json = new TextEncoder().encode(header);
  const len = Math.ceil((8 + json.length) / pad) * pad - 8;
  const out = new Uint8Array(8 + len + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(len), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + len);
  out.set(data, 8 + len);
  return out;
}

function rejects(bytes: Uint8Array, pattern: RegExp, what: string): void {
  try {
    decodeSafetensors(bytes);
  } catch (e) {
    assert.ok(e instanceof SafetensorsError, `${what}: threw ${String(e)}`);
    assert.match((e as Error).message, pattern, what);
    return;
  }
  assert.unreachable(`${what}: was accepted`);
}

t('encoding matches the byte layout of the format', () => {
  const header =
    '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
    '"b":{"dtype":"I32","shape":[1,2],"data_offsets":[8,16]},"c":{"dtype":"U32","shape":[],"data_offsets":[16,20]}}';
  // 1.0f, -2.5f, 7, -3, 0xdeadbeef, all little-endian
  const data = [0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0, 7, 0, 0, 0, 0xfd, 0xff, 0xff, 0xff, 0xef, 0xbe, 0xad, 0xde];
  const expected = fileOf(header, data);
  const got = encodeSafetensors(
    [
      { name: 'a', shape: [2], data: Float32Array.of(1, -2.5) },
      { name: 'b', shape: [1, 2], data: Int32Array.of(7, -3) },
      { name: 'c', shape: [], data: Uint32Array.of(0xdeadbeef) },
    ],
    { format: 'pt' },
  );
  assert.is((8 + Number(new DataView(got.buffer).getBigUint64(0, true))) % 8, 0, 'data section 8-byte aligned');
  assert.equal([...got], [...expected]);
  const back = decodeSafetensors(expected);
  assert.equal(back.metadata, { format: 'pt' });
  assert.equal([...back.tensors.keys()], ['a', 'b', 'c']);
  assert.equal(back.tensors.get('a'), { dtype: 'F32', shape: [2], data: Float32Array.of(1, -2.5) });
  assert.equal(back.tensors.get('b'), { dtype: 'I32', shape: [1, 2], data: Int32Array.of(7, -3) });
  assert.equal(back.tensors.get('c'), { dtype: 'U32', shape: [], data: Uint32Array.of(0xdeadbeef) });
});

t('round trip of random tensors, empty tensors and an unpadded header', () => {
  const r = rng(freshSeed());
  const entries = [
    { name: 'layers.0.weight', shape: [17, 3], data: randn(51, r) },
    { name: 'layers.0.bias', shape: [17], data: randn(17, r) },
    { name: 'empty', shape: [0, 5], data: new Float32Array(0) },
    { name: 'steps', shape: [3], data: Int32Array.of(-1, 0, 2147483647) },
    { name: 'ünïcödé name', shape: [1, 1, 1], data: Uint32Array.of(4294967295) },
  ];
  const bytes = encodeSafetensors(entries);
  const back = decodeSafetensors(bytes);
  assert.equal(back.metadata, {});
  assert.is(back.tensors.size, entries.length);
  for (const e of entries) {
    const d = back.tensors.get(e.name)!;
    assert.equal(d.shape, e.shape, e.name);
    assert.equal(d.data, e.data, e.name);
  }
  // a header of odd length leaves the data misaligned; decoding must still work
  const odd = fileOf('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', [0, 0, 0x80, 0x3f, 0, 0, 0, 0x40], 1);
  assert.is((odd.length - 8) % 4 !== 0, true);
  assert.equal(decodeSafetensors(odd).tensors.get('x')!.data, Float32Array.of(1, 2));
  const none = decodeSafetensors(encodeSafetensors([]));
  assert.is(none.tensors.size, 0);
});

t('encoder rejects bad input', () => {
  assert.throws(() => encodeSafetensors([{ name: 'a', shape: [3], data: new Float32Array(2) }]), /needs 3 values/);
  assert.throws(
    () => encodeSafetensors([{ name: 'a', shape: [1], data: new Float32Array(1) }, { name: 'a', shape: [1], data: new Float32Array(1) }]),
    /duplicate tensor name "a"/,
  );
  assert.throws(() => encodeSafetensors([{ name: '__metadata__', shape: [1], data: new Float32Array(1) }]), /cannot name a tensor/);
  assert.throws(() => encodeSafetensors([{ name: 'a', shape: [-1], data: new Float32Array(1) }]), /invalid shape/);
});

t('decoder rejects each kind of corrupt file', () => {
  const ok = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  const eight = [0, 0, 0, 0, 0, 0, 0, 0];
  decodeSafetensors(fileOf(ok, eight));

  rejects(new Uint8Array(5), /too short/, 'short file');
  const long = fileOf(ok, eight);
  new DataView(long.buffer).setBigUint64(0, BigInt(long.length), true);
  rejects(long, /extends beyond the end of the file/, 'header length beyond file');
  const huge = fileOf(ok, eight);
  new DataView(huge.buffer).setBigUint64(0, 0xffffffffffffffffn, true);
  rejects(huge, /extends beyond the end of the file/, 'header length 2^64-1');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}', eight), /invalid JSON/, 'truncated JSON');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x', eight), /trailing content/, 'trailing JSON');
  rejects(fileOf("{'a':1}", []), /invalid JSON/, 'single quotes');
  const badUtf8 = fileOf('{"a":{}}', []);
  badUtf8[10] = 0xff;
  rejects(badUtf8, /UTF-8/, 'invalid UTF-8');
  rejects(fileOf('[1, 2]', []), /JSON object/, 'array header');
  rejects(
    fileOf('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight),
    /duplicate key "a"/,
    'duplicate tensor name',
  );
  rejects(fileOf('{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}', eight), /unsupported dtype "Q7"/, 'unknown dtype');
  rejects(fileOf('{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}', eight), /unsupported dtype "F16"/, 'dtype not handled');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', eight), /needs 12 bytes/, 'shape/size mismatch');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', eight), /outside the 8-byte data section/, 'offsets out of range');
  rejects(
    fileOf('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight),
    /overlap/,
    'overlapping offsets',
  );
  rejects(fileOf('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eight), /belong to no tensor/, 'gap before a tensor');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', eight), /cover 4 bytes but the data section holds 8/, 'trailing data');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', eight), /end before they begin/, 'reversed offsets');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', eight), /must be integers/, 'fractional shape');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', eight), /non-negative integers/, 'negative shape');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}', eight), /data_offsets must be/, 'one offset');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[2]}}', []), /data_offsets must be/, 'missing offsets');
  rejects(fileOf('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', eight), /unknown field "x"/, 'extra field');
  rejects(fileOf('{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', eight), /metadata "k" must be a string/, 'metadata value');
  rejects(fileOf('{"a":[]}', []), /entry must be an object/, 'entry not an object');
});

class Net extends Module {
  readonly body: MLP;
  readonly norm: LayerNorm;
  readonly block: ResidualBlock;
  readonly time: GaussianFourierProjection;
  constructor(seed: number) {
    super();
    const r = new HostRng(seed);
    this.body = this.registerModule('body', new MLP([3, 8, 4], { act: 'mish', rng: r }));
    this.norm = this.registerModule('norm', new LayerNorm(4));
    this.block = this.registerModule('block', new ResidualBlock(4, { rng: r }));
    this.time = this.registerModule('time', new GaussianFourierProjection(6, 30, { rng: r }));
  }
}

async function allValues(m: Module): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const { name, tensor } of m.namedTensors()) out.set(name, (await tensor.read()) as Float32Array);
  return out;
}

t('saveModule / loadModule round trip a network, buffers included', async () => {
  const seed = freshSeed();
  const a = new Net(seed);
  const b = new Net(seed + 1);
  a.paramGroup();
  const bytes = await saveModule(a, { step: '100' });
  const file = decodeSafetensors(bytes);
  assert.equal(file.metadata, { step: '100' });
  assert.equal(
    [...file.tensors.keys()],
    ['body.layers.0.weight', 'body.layers.0.bias', 'body.layers.1.weight', 'body.layers.1.bias', 'norm.weight', 'norm.bias',
      'block.layer_norm.weight', 'block.layer_norm.bias', 'block.fc1.weight', 'block.fc1.bias', 'block.fc2.weight', 'block.fc2.bias', 'time.W'],
  );
  assert.equal(file.tensors.get('block.fc1.weight')!.shape, [16, 4]);
  const before = await allValues(b);
  assert.not.equal(before.get('time.W'), (await allValues(a)).get('time.W'));
  loadModule(b, bytes);
  const va = await allValues(a);
  const vb = await allValues(b);
  for (const [name, v] of va) assert.equal(vb.get(name), v, name);
  // loading into a module packed in a flat group writes through the group's buffer
  const c = new Net(seed + 2);
  const group = c.paramGroup();
  loadModule(c, bytes);
  const flat = (await group.values.read()) as Float32Array;
  const w = va.get('body.layers.1.weight')!;
  const off = group.offsets[group.entries.findIndex((e) => e.name === 'body.layers.1.weight')]!;
  assert.equal(flat.slice(off, off + w.length), w);
});

t('loadModule lists every mismatch and writes nothing', async () => {
  const r = new HostRng(freshSeed());
  const small = new MLP([3, 8, 4], { rng: r });
  const other = new MLP([3, 9, 4, 2], { rng: r });
  const bytes = await saveModule(other);
  const before = await allValues(small);
  try {
    loadModule(small, bytes);
    assert.unreachable('mismatched checkpoint was accepted');
  } catch (e) {
    const msg = (e as Error).message;
    assert.match(msg, /5 problems/);
    assert.match(msg, /"layers\.0\.weight": file has shape \[9, 3\], module has \[8, 3\]/);
    assert.match(msg, /"layers\.0\.bias": file has shape \[9\], module has \[8\]/);
    assert.match(msg, /"layers\.1\.weight": file has shape \[4, 9\], module has \[4, 8\]/);
    assert.match(msg, /unexpected "layers\.2\.weight" \[2, 4\]/);
    assert.match(msg, /unexpected "layers\.2\.bias" \[2\]/);
  }
  const after = await allValues(small);
  for (const [name, v] of before) assert.equal(after.get(name), v, `${name} untouched`);
  // strict: false ignores extra tensors but still needs every own one
  const bigger = new MLP([3, 8, 4, 2], { rng: r });
  const fromBigger = await saveModule(bigger);
  loadModule(small, fromBigger, { strict: false });
  assert.equal((await small.namedParameters()[0]!.tensor.read()), await bigger.namedParameters()[0]!.tensor.read());
  const fromSmall = await saveModule(small);
  assert.throws(() => loadModule(bigger, fromSmall, { strict: false }), /missing "layers\.2\.weight" \[2, 4\]/);
  const lin = new Linear(3, 8, { rng: r });
  assert.throws(() => loadModule(lin, encodeSafetensors([{ name: 'weight', shape: [8, 3], data: new Int32Array(24) }, { name: 'bias', shape: [8], data: new Float32Array(8) }])), /dtype I32, module has F32/);
});

t.run();
