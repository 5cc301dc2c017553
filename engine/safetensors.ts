// The safetensors checkpoint format (8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the raw little-endian data), and saving/loading a module's tensors with it.
// Decoding is strict: anything the reference implementation would reject is rejected here with the reason.
import type { Module } from './nn.ts';

export type SafetensorsDType = 'F32' | 'I32' | 'U32';
export type SafetensorsData = Float32Array | Int32Array | Uint32Array;

export interface SafetensorsEntry {
  name: string;
  shape: readonly number[];
  data: SafetensorsData;
}

export interface DecodedTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: SafetensorsData;
}

export interface DecodedSafetensors {
  metadata: Record<string, string>;
  tensors: Map<string, DecodedTensor>;
}

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(`safetensors: ${message}`);
    this.name = 'SafetensorsError';
  }
}

const METADATA_KEY = '__metadata__';
/** The reference implementation refuses headers above 100 MB. */
const MAX_HEADER_BYTES = 100_000_000;
const DTYPE_BYTES: Record<SafetensorsDType, number> = { F32: 4, I32: 4, U32: 4 };
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function dtypeOf(data: SafetensorsData): SafetensorsDType {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Uint32Array) return 'U32';
  throw new SafetensorsError('tensor data must be a Float32Array, Int32Array or Uint32Array');
}

function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Serialises tensors, in the order given, into one safetensors file. */
export function encodeSafetensors(tensors: readonly SafetensorsEntry[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(`metadata value for "${k}" must be a string`);
    }
    header[METADATA_KEY] = metadata;
  }
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (t.name === METADATA_KEY) throw new SafetensorsError(`"${METADATA_KEY}" cannot name a tensor`);
    if (seen.has(t.name)) throw new SafetensorsError(`duplicate tensor name "${t.name}"`);
    seen.add(t.name);
    for (const d of t.shape) {
      if (!Number.isInteger(d) || d < 0) throw new SafetensorsError(`tensor "${t.name}" has invalid shape [${t.shape.join(', ')}]`);
    }
    const dtype = dtypeOf(t.data);
    if (shapeSize(t.shape) !== t.data.length) {
      throw new SafetensorsError(`tensor "${t.name}": shape [${t.shape.join(', ')}] needs ${shapeSize(t.shape)} values, got ${t.data.length}`);
    }
    const bytes = t.data.length * DTYPE_BYTES[dtype];
    header[t.name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // pad with spaces so the data section starts 8-byte aligned
  const headerLen = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const out = new Uint8Array(8 + headerLen + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerLen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  let pos = 8 + headerLen;
  for (const t of tensors) {
    const n = t.data.length;
    if (LITTLE_ENDIAN_HOST) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, n * 4), pos);
    } else {
      const isFloat = t.data instanceof Float32Array;
      for (let i = 0; i < n; i++) {
        if (isFloat) view.setFloat32(pos + 4 * i, t.data[i]!, true);
        else view.setUint32(pos + 4 * i, t.data[i]! >>> 0, true);
      }
    }
    pos += n * 4;
  }
  return out;
}

/** Parses and validates a safetensors file; tensors are copied out of `bytes`. */
export function decodeSafetensors(bytes: Uint8Array): DecodedSafetensors {
  if (bytes.length < 8) throw new SafetensorsError(`file of ${bytes.length} bytes is too short to hold the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const declared = view.getBigUint64(0, true);
  if (declared > BigInt(bytes.length - 8)) {
    throw new SafetensorsError(`header length ${declared} extends beyond the end of the file (${bytes.length - 8} bytes follow the length field)`);
  }
  const headerLen = Number(declared);
  if (headerLen > MAX_HEADER_BYTES) throw new SafetensorsError(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    throw new SafetensorsError('header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw new SafetensorsError('header must be a JSON object starting with "{"');
  const header = parseStrictJson(text);
  if (!isPlainObject(header)) throw new SafetensorsError('header must be a JSON object');

  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  let metadata: Record<string, string> = {};
  const specs: { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(value);
      continue;
    }
    specs.push({ name, ...parseTensorInfo(name, value) });
  }

  for (const s of specs) {
    if (s.end > dataLen) {
      throw new SafetensorsError(`tensor "${s.name}": data_offsets [${s.begin}, ${s.end}] lie outside the ${dataLen}-byte data section`);
    }
    const expected = shapeSize(s.shape) * DTYPE_BYTES[s.dtype];
    if (s.end - s.begin !== expected) {
      throw new SafetensorsError(
        `tensor "${s.name}": shape [${s.shape.join(', ')}] of ${s.dtype} needs ${expected} bytes, data_offsets [${s.begin}, ${s.end}] hold ${s.end - s.begin}`,
      );
    }
  }
  // the byte ranges must tile the data section exactly: no overlap, no gap, nothing left over
  const sorted = [...specs].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: (typeof specs)[number] | null = null;
  for (const s of sorted) {
    if (s.begin < cursor) {
      throw new SafetensorsError(`tensors "${prev!.name}" [${prev!.begin}, ${prev!.end}] and "${s.name}" [${s.begin}, ${s.end}] overlap`);
    }
    if (s.begin > cursor) {
      throw new SafetensorsError(`bytes [${cursor}, ${s.begin}) of the data section belong to no tensor (before "${s.name}")`);
    }
    cursor = s.end;
    prev = s;
  }
  if (cursor !== dataLen) {
    throw new SafetensorsError(`the tensors cover ${cursor} bytes but the data section holds ${dataLen}`);
  }

  const tensors = new Map<string, DecodedTensor>();
  for (const s of specs) {
    const n = (s.end - s.begin) / 4;
    const at = dataStart + s.begin;
    let data: SafetensorsData;
    if (LITTLE_ENDIAN_HOST) {
      // copying also realigns data that sits at an offset not divisible by 4; new Uint8Array(view) copies even
      // when bytes is a Node Buffer, whose slice() returns a view of a shared pool rather than a copy
      const raw = new Uint8Array(bytes.subarray(at, at + n * 4)).buffer;
      data = s.dtype === 'F32' ? new Float32Array(raw) : s.dtype === 'I32' ? new Int32Array(raw) : new Uint32Array(raw);
    } else {
      data = s.dtype === 'F32' ? new Float32Array(n) : s.dtype === 'I32' ? new Int32Array(n) : new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        data[i] = s.dtype === 'F32' ? view.getFloat32(at + 4 * i, true) : s.dtype === 'I32' ? view.getInt32(at + 4 * i, true) : view.getUint32(at + 4 * i, true);
      }
    }
    tensors.set(s.name, { dtype: s.dtype, shape: s.shape, data });
  }
  return { metadata, tensors };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseMetadata(value: unknown): Record<string, string> {
  if (!isPlainObject(value)) throw new SafetensorsError(`"${METADATA_KEY}" must be an object of strings`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new SafetensorsError(`metadata "${k}" must be a string, got ${JSON.stringify(v)}`);
    out[k] = v;
  }
  return out;
}

function parseTensorInfo(name: string, value: unknown): { dtype: SafetensorsDType; shape: number[]; begin: number; end: number } {
  if (!isPlainObject(value)) throw new SafetensorsError(`tensor "${name}": entry must be an object with dtype, shape and data_offsets`);
  for (const key of Object.keys(value)) {
    if (key !== 'dtype' && key !== 'shape' && key !== 'data_offsets') throw new SafetensorsError(`tensor "${name}": unknown field "${key}"`);
  }
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string') throw new SafetensorsError(`tensor "${name}": missing dtype`);
  if (!(dtype in DTYPE_BYTES)) {
    throw new SafetensorsError(`tensor "${name}": unsupported dtype "${dtype}" (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(`tensor "${name}": shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new SafetensorsError(`tensor "${name}": data_offsets must be [begin, end] of non-negative integers, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new SafetensorsError(`tensor "${name}": data_offsets [${begin}, ${end}] end before they begin`);
  return { dtype: dtype as SafetensorsDType, shape: shape as number[], begin, end };
}

/**
 * A JSON parser that rejects what JSON.parse silently accepts: duplicate keys (JSON.parse keeps the last one,
 * so a tensor could be defined twice) and trailing content. Errors give the character position.
 */
function parseStrictJson(text: string): unknown {
  let pos = 0;
  const fail = (what: string): never => {
    throw new SafetensorsError(`invalid JSON header at character ${pos}: ${what}`);
  };
  const skipWs = () => {
    while (pos < text.length && (text[pos] === ' ' || text[pos] === '\t' || text[pos] === '\n' || text[pos] === '\r')) pos++;
  };
  const parseString = (): string => {
    const start = pos;
    pos++;
    while (pos < text.length && text[pos] !== '"') {
      if (text[pos] === '\\') pos++;
      else if (text.charCodeAt(pos) < 0x20) fail('control character in string');
      pos++;
    }
    if (pos >= text.length) fail('unterminated string');
    pos++;
    try {
      return JSON.parse(text.slice(start, pos)) as string;
    } catch {
      return fail('bad escape in string');
    }
  };
  const parseValue = (depth: number): unknown => {
    if (depth > 64) fail('nesting too deep');
    skipWs();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const obj: Record<string, unknown> = {};
      const keys = new Set<string>();
      skipWs();
      if (text[pos] === '}') {
        pos++;
        return obj;
      }
      for (;;) {
        skipWs();
        if (text[pos] !== '"') fail('expected a string key');
        const key = parseString();
        if (keys.has(key)) fail(`duplicate key "${key}"`);
        keys.add(key);
        skipWs();
        if (text[pos] !== ':') fail('expected ":"');
        pos++;
        Object.defineProperty(obj, key, { value: parseValue(depth + 1), enumerable: true, writable: true, configurable: true });
        skipWs();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return obj;
        }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      pos++;
      const arr: unknown[] = [];
      skipWs();
      if (text[pos] === ']') {
        pos++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue(depth + 1));
        skipWs();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return arr;
        }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return parseString();
    const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(pos, pos + 64));
    if (!m) return fail('unexpected character');
    if (/[.eE]/.test(m[0])) fail('numbers in a safetensors header must be integers');
    pos += m[0].length;
    return JSON.parse(m[0]);
  };
  const value = parseValue(0);
  skipWs();
  if (pos !== text.length) fail('trailing content after the header object');
  return value;
}

// ---- modules ----

export interface LoadOptions {
  /** When false, tensors in the file that the module lacks are ignored (the module's own must all be there). */
  strict?: boolean;
}

/** Reads every parameter and buffer of a module from the GPU and serialises them under their dotted names. */
export async function saveModule(module: Module, metadata?: Record<string, string>): Promise<Uint8Array> {
  const entries: SafetensorsEntry[] = [];
  for (const { name, tensor } of module.namedTensors()) {
    const data = await tensor.read();
    entries.push({ name, shape: tensor.shape, data });
  }
  return encodeSafetensors(entries, metadata);
}

/**
 * Overwrites a module's parameters and buffers from a safetensors file. Names, shapes and dtypes must match;
 * the error lists every mismatch at once. Nothing is written unless everything matches.
 */
export function loadModule(module: Module, bytes: Uint8Array, opts: LoadOptions = {}): DecodedSafetensors {
  const file = decodeSafetensors(bytes);
  const own = module.namedTensors();
  const problems: string[] = [];
  const ownNames = new Set(own.map((e) => e.name));
  for (const { name, tensor } of own) {
    const t = file.tensors.get(name);
    if (!t) {
      problems.push(`missing "${name}" [${tensor.shape.join(', ')}]`);
      continue;
    }
    if (t.shape.length !== tensor.shape.length || t.shape.some((d, i) => d !== tensor.shape[i])) {
      problems.push(`"${name}": file has shape [${t.shape.join(', ')}], module has [${tensor.shape.join(', ')}]`);
    }
    const want = tensor.dtype === 'f32' ? 'F32' : tensor.dtype === 'i32' ? 'I32' : 'U32';
    if (t.dtype !== want) problems.push(`"${name}": file has dtype ${t.dtype}, module has ${want}`);
  }
  if (opts.strict ?? true) {
    for (const [name, t] of file.tensors) {
      if (!ownNames.has(name)) problems.push(`unexpected "${name}" [${t.shape.join(', ')}] in the file`);
    }
  }
  if (problems.length > 0) {
    throw new SafetensorsError(`checkpoint does not match the module (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n  ${problems.join('\n  ')}`);
  }
  for (const { name, tensor } of own) tensor.set(file.tensors.get(name)!.data);
  return file;
}
