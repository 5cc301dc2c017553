// Tensors: a shape and dtype over a GPU storage. Storage is a whole pooled buffer (or a range of a flat
// parameter buffer) shared by reshaped views through a reference count. Tensors made inside a `tidy` scope are
// disposed when it ends, unless returned or kept.
import { GPUEngineError } from './device.ts';
import { runtime, type BufferBinding } from './runtime.ts';

export type DType = 'f32' | 'u32' | 'i32';
export type TypedArrayFor<D extends DType> = D extends 'f32' ? Float32Array : D extends 'u32' ? Uint32Array : Int32Array;

export class Storage {
  readonly buffer: GPUBuffer;
  readonly byteOffset: number;
  readonly byteLength: number;
  /** Pooled storages return their buffer to the pool when the last tensor lets go. */
  readonly pooled: boolean;
  refs = 0;

  constructor(buffer: GPUBuffer, byteOffset: number, byteLength: number, pooled: boolean) {
    this.buffer = buffer;
    this.byteOffset = byteOffset;
    this.byteLength = byteLength;
    this.pooled = pooled;
  }
}

let nextId = 1;
const scopes: Set<Tensor>[] = [];

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

export class Tensor {
  readonly id: number;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  storage: Storage;
  requiresGrad = false;
  grad: Tensor | null = null;
  /** For a parameter in a flat group: the fixed place its gradient accumulates into. */
  gradSlot: Tensor | null = null;
  /** Shared by a group's parameters: whether their slots were zeroed since the last backward wrote them. */
  slotState: { zeroed: boolean } | null = null;
  name = '';
  private disposed = false;

  constructor(storage: Storage, shape: readonly number[], dtype: DType = 'f32') {
    this.id = nextId++;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = numel(shape);
    if (this.size * 4 > storage.byteLength) throw new Error(`tensor of shape [${shape}] does not fit its storage of ${storage.byteLength} bytes`);
    this.storage = storage;
    storage.refs++;
    const scope = scopes[scopes.length - 1];
    if (scope) scope.add(this);
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Throws when the tensor was disposed (by dispose() or by the tidy scope that made it): its buffer may hold another tensor's data by now. */
  private checkLive(use: string): void {
    if (this.disposed) throw new Error(`tensor ${this.name || this.id} [${this.shape}] ${use} after dispose`);
  }

  binding(): BufferBinding {
    this.checkLive('used');
    // binding sizes are rounded to 4 bytes and never zero, as WebGPU requires
    return { buffer: this.storage.buffer, offset: this.storage.byteOffset, size: Math.max(4, this.size * 4) };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const s = this.storage;
    s.refs--;
    if (s.refs === 0 && s.pooled) runtime().release(s.buffer);
  }

  /** Copies the data to the host. */
  async read(): Promise<TypedArrayFor<this['dtype']>> {
    this.checkLive('read');
    const bytes = await runtime().read({ buffer: this.storage.buffer, offset: this.storage.byteOffset, size: this.size * 4 });
    const out = this.dtype === 'f32' ? new Float32Array(bytes) : this.dtype === 'u32' ? new Uint32Array(bytes) : new Int32Array(bytes);
    return out as TypedArrayFor<this['dtype']>;
  }

  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() needs a one-element tensor, got shape [${this.shape}]`);
    return (await this.read())[0]!;
  }

  /** Overwrites the contents from the host. */
  set(data: ArrayLike<number>): void {
    this.checkLive('written');
    if (data.length !== this.size) throw new Error(`set: ${data.length} values for a tensor of ${this.size}`);
    runtime().write(this.storage.buffer, this.storage.byteOffset, toTyped(data, this.dtype));
  }

  /** Moves this tensor onto other storage of the same size (used to pack parameters into a flat group). */
  rebind(storage: Storage): void {
    if (this.size * 4 > storage.byteLength) throw new Error(`rebind: storage of ${storage.byteLength} bytes is too small for [${this.shape}]`);
    const old = this.storage;
    storage.refs++;
    this.storage = storage;
    old.refs--;
    if (old.refs === 0 && old.pooled) runtime().release(old.buffer);
  }

  toString(): string {
    return `Tensor(${this.name || this.id}, [${this.shape.join(', ')}], ${this.dtype})`;
  }
}

function toTyped(data: ArrayLike<number>, dtype: DType): Float32Array | Uint32Array | Int32Array {
  if (dtype === 'f32') return data instanceof Float32Array ? data : Float32Array.from(data);
  if (dtype === 'u32') return data instanceof Uint32Array ? data : Uint32Array.from(data);
  return data instanceof Int32Array ? data : Int32Array.from(data);
}

/** A tensor with undefined contents, backed by a pooled buffer. */
export function empty(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  const bytes = Math.max(4, numel(shape) * 4);
  const rt = runtime();
  const bindable = rt.device.limits.maxStorageBufferBindingSize;
  if (bytes > bindable) {
    throw new GPUEngineError(`a tensor of shape [${shape}] needs ${bytes} bytes, over this device's maxStorageBufferBindingSize of ${bindable}: no kernel could bind it (a smaller batch or size fits)`);
  }
  return new Tensor(new Storage(rt.acquire(bytes), 0, bytes, true), shape, dtype);
}

/** A tensor holding a copy of host data. */
export function tensor(data: ArrayLike<number>, shape?: readonly number[], dtype: DType = 'f32'): Tensor {
  const sh = shape ?? [data.length];
  if (numel(sh) !== data.length) throw new Error(`tensor: ${data.length} values do not fill shape [${sh}]`);
  const t = empty(sh, dtype);
  if (data.length > 0) runtime().write(t.storage.buffer, 0, toTyped(data, dtype), false);
  return t;
}

/** A tensor over a fixed range of a buffer the caller owns (e.g. one parameter of a flat group). */
export function viewOf(buffer: GPUBuffer, byteOffset: number, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  return new Tensor(new Storage(buffer, byteOffset, Math.max(4, numel(shape) * 4), false), shape, dtype);
}

/** The same storage under another shape of equal size (no copy; no gradient tracking here). */
export function reshapeStorage(t: Tensor, shape: readonly number[]): Tensor {
  let sh = [...shape];
  const neg = sh.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(sh.filter((_, i) => i !== neg));
    sh[neg] = rest === 0 ? 0 : t.size / rest;
  }
  if (numel(sh) !== t.size) throw new Error(`reshape: [${t.shape}] has ${t.size} elements, [${shape}] needs ${numel(sh)}`);
  return new Tensor(t.storage, sh, t.dtype);
}

/**
 * Runs fn and disposes every tensor created inside that is not part of its result and not kept. The result
 * may be a tensor, an array or a plain object of tensors.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const survivors = new Set<Tensor>();
  collectTensors(result, survivors);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (survivors.has(t)) {
      if (parent) parent.add(t);
    } else t.dispose();
  }
  return result;
}

/** Takes a tensor out of the enclosing tidy scopes so it outlives them. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collectTensors(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) for (const x of v) collectTensors(x, out);
  else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) collectTensors(x, out);
  }
}
