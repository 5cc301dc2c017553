// h5wasm loading and the low-level checks every dataset reader shares.
//
// Two h5wasm builds are used: the Node build (Emscripten NODERAWFS: paths are real host paths, large files
// are read and written in place) for paths, and the portable build (an in-memory file system) for bytes,
// so readers and writers also work where there is no file system. The Node build is imported lazily, only
// when a path is given, so browsers never load it.
//
// libhdf5 does not throw on a file it cannot open: it prints a diagnostic trace to stderr and hands back a
// handle with a negative id. The superblock signature is therefore checked here first, which gives a clear
// error naming the file and keeps the trace out of the output.
import type * as H5 from 'h5wasm';

export type H5Module = typeof H5;
export type H5File = H5.File;
export type H5Group = H5.Group;
export type H5Dataset = H5.Dataset;
export type NumericArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array | BigUint64Array | Float32Array | Float64Array;

let pathModule: Promise<H5Module> | null = null;
let memoryModule: Promise<H5Module> | null = null;

/** h5wasm whose file names are host paths (Node only). */
export function h5ForPaths(): Promise<H5Module> {
  pathModule ??= import('h5wasm/node').then(async (m) => { await m.ready; return m as unknown as H5Module; });
  return pathModule;
}

/** h5wasm with an in-memory file system (any JavaScript runtime). */
export function h5ForBytes(): Promise<H5Module> {
  memoryModule ??= import('h5wasm').then(async (m) => { await m.ready; return m as unknown as H5Module; });
  return memoryModule;
}

const SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

/** Offsets at which HDF5 looks for its superblock: 0, 512, 1024, 2048, ... */
function signatureOffsets(length: number): number[] {
  const offsets = [0];
  for (let o = 512; o + SIGNATURE.length <= length; o *= 2) offsets.push(o);
  return offsets;
}

function signatureAt(bytes: Uint8Array, offset: number): boolean {
  if (offset + SIGNATURE.length > bytes.length) return false;
  for (let i = 0; i < SIGNATURE.length; i++) if (bytes[offset + i] !== SIGNATURE[i]) return false;
  return true;
}

/** True when the bytes carry an HDF5 superblock signature at one of the places libhdf5 looks. */
export function hasHDF5Signature(bytes: Uint8Array): boolean {
  return signatureOffsets(bytes.length).some((o) => signatureAt(bytes, o));
}

async function fileHasHDF5Signature(path: string): Promise<boolean> {
  const fs = await import('node:fs/promises');
  const handle = await fs.open(path, 'r');
  try {
    const { size } = await handle.stat();
    const probe = new Uint8Array(SIGNATURE.length);
    for (const offset of signatureOffsets(size)) {
      const { bytesRead } = await handle.read(probe, 0, probe.length, offset);
      if (bytesRead === probe.length && signatureAt(probe, 0)) return true;
    }
    return false;
  } finally {
    await handle.close();
  }
}

export class DatasetFormatError extends Error {
  override name = 'DatasetFormatError';
}

/** An error from inside h5wasm (a damaged file, an unreadable dataset) restated with the file's name. */
export function withFileName(fileName: string, err: unknown): Error {
  if (err instanceof DatasetFormatError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new DatasetFormatError(`${fileName}: HDF5 read failed: ${message}`, { cause: err });
}

/** An open HDF5 file for reading, with the h5wasm module its classes belong to. Call close() in finally. */
export interface OpenedH5 {
  h5: H5Module;
  file: H5File;
  /** How the file is named in errors. */
  name: string;
  close(): void;
}

let memoryFileCounter = 0;

/** Opens a path or in-memory bytes read-only, with a clear error when the source is missing or not HDF5. */
export async function openForReading(source: string | Uint8Array, name?: string): Promise<OpenedH5> {
  if (typeof source === 'string') {
    const label = name ?? source;
    const fs = await import('node:fs');
    if (!fs.existsSync(source)) throw new DatasetFormatError(`${label}: no such file`);
    if (!fs.statSync(source).isFile()) throw new DatasetFormatError(`${label}: not a regular file`);
    if (!(await fileHasHDF5Signature(source))) throw new DatasetFormatError(`${label}: not an HDF5 file (no HDF5 signature found)`);
    const h5 = await h5ForPaths();
    const file = new h5.File(source, 'r');
    if (file.file_id < 0n) throw new DatasetFormatError(`${label}: HDF5 could not open the file (see the HDF5 diagnostics above)`);
    return { h5, file, name: label, close: () => file.close() };
  }
  const label = name ?? '<bytes>';
  if (source.length === 0) throw new DatasetFormatError(`${label}: empty input (0 bytes)`);
  if (!hasHDF5Signature(source)) throw new DatasetFormatError(`${label}: not HDF5 data (no HDF5 signature found)`);
  const h5 = await h5ForBytes();
  const fs = h5.FS!;
  const memoryPath = `/webdiffuser-read-${memoryFileCounter++}.h5`;
  fs.writeFile(memoryPath, source);
  const file = new h5.File(memoryPath, 'r');
  const close = (): void => {
    if (file.file_id >= 0n) file.close();
    fs.unlink(memoryPath);
  };
  if (file.file_id < 0n) {
    close();
    throw new DatasetFormatError(`${label}: HDF5 could not open the data (see the HDF5 diagnostics above)`);
  }
  return { h5, file, name: label, close };
}

/** A file being written: to a host path, or in memory and handed back as bytes by finish(). */
export interface CreatedH5 {
  h5: H5Module;
  file: H5File;
  /** Closes the file; returns its bytes for in-memory files. */
  finish(): Uint8Array | null;
  /** Closes and removes a partly written file after an error. */
  abandon(): Promise<void>;
}

export async function createForWriting(path: string | null, trackOrder = false): Promise<CreatedH5> {
  if (path !== null) {
    const h5 = await h5ForPaths();
    const fs = await import('node:fs');
    // written beside the target and renamed at the end, so a crash never leaves a half-written file at `path`
    const partPath = `${path}.part-${Date.now()}-${memoryFileCounter++}`;
    const file = new h5.File(partPath, 'w', { track_order: trackOrder });
    if (file.file_id < 0n) throw new DatasetFormatError(`${path}: HDF5 could not create the file`);
    return {
      h5,
      file,
      finish: () => { file.close(); fs.renameSync(partPath, path); return null; },
      abandon: async () => {
        try { file.close(); } catch { /* already unusable */ }
        fs.rmSync(partPath, { force: true });
      },
    };
  }
  const h5 = await h5ForBytes();
  const fs = h5.FS!;
  const memoryPath = `/webdiffuser-write-${memoryFileCounter++}.h5`;
  const file = new h5.File(memoryPath, 'w', { track_order: trackOrder });
  return {
    h5,
    file,
    finish: () => {
      file.close();
      const bytes = fs.readFile(memoryPath) as Uint8Array;
      fs.unlink(memoryPath);
      return bytes.slice();
    },
    abandon: async () => {
      try { file.close(); } catch { /* already unusable */ }
      try { fs.unlink(memoryPath); } catch { /* never created */ }
    },
  };
}

// HDF5 type classes as h5wasm reports them in Metadata.type.
const H5T_INTEGER = 0;
const H5T_FLOAT = 1;
const H5T_STRING = 3;
const H5T_ENUM = 8;

/** What a dataset holds, in the terms the checks need. */
export type ElementKind = 'float32' | 'float64' | 'integer' | 'bool' | 'string' | 'other';

export function describeDtype(ds: H5Dataset): { kind: ElementKind; text: string } {
  const m = ds.metadata;
  const bits = m.size * 8;
  if (m.type === H5T_FLOAT) return { kind: m.size === 4 ? 'float32' : m.size === 8 ? 'float64' : 'other', text: `float${bits}` };
  if (m.type === H5T_INTEGER) return { kind: 'integer', text: `${m.signed ? 'int' : 'uint'}${bits}` };
  if (m.type === H5T_ENUM) {
    const members = m.enum_type?.members ?? {};
    const names = Object.keys(members).sort().join(',');
    return names === 'FALSE,TRUE' ? { kind: 'bool', text: 'bool' } : { kind: 'other', text: `enum(${names})` };
  }
  if (m.type === H5T_STRING) return { kind: 'string', text: 'string' };
  return { kind: 'other', text: `HDF5 type class ${m.type}` };
}

/** The dataset at key, or null when absent; a group or link at that key is an error. */
export function findDataset(opened: OpenedH5, key: string, where: H5Group = opened.file): H5Dataset | null {
  if (!where.keys().includes(key.split('/')[0]!)) return null;
  const entity = where.get(key);
  if (entity === null) return null;
  if (!(entity instanceof opened.h5.Dataset)) throw new DatasetFormatError(`${opened.name}: '${key}' is not a dataset`);
  return entity;
}

/** Every dataset below a group, by path relative to it, in the group's link order. */
export function datasetsBelow(opened: OpenedH5, group: H5Group): Map<string, H5Dataset> {
  const out = new Map<string, H5Dataset>();
  const visit = (g: H5Group, prefix: string): void => {
    for (const key of g.keys()) {
      const entity = g.get(key);
      if (entity instanceof opened.h5.Dataset) out.set(prefix + key, entity);
      else if (entity instanceof opened.h5.Group) visit(entity, `${prefix}${key}/`);
    }
  };
  visit(group, '');
  return out;
}

/** The whole dataset as a flat row-major typed array. */
export function readNumeric(opened: OpenedH5, ds: H5Dataset, label: string): NumericArray {
  const value = ds.value;
  if (!ArrayBuffer.isView(value)) throw new DatasetFormatError(`${opened.name}: '${label}' did not read as a numeric array`);
  return value as NumericArray;
}

/**
 * A floating-point dataset as float32. float64 is accepted and rounded to float32 (D4RL's own loader casts
 * to float32 as well; Minari stores float64 observations); values beyond float32's range become infinite
 * and are caught by the finiteness check. Integers, booleans and strings are rejected.
 */
export function readFloat32(opened: OpenedH5, ds: H5Dataset, label: string): Float32Array {
  const { kind, text } = describeDtype(ds);
  if (kind !== 'float32' && kind !== 'float64') {
    throw new DatasetFormatError(`${opened.name}: '${label}' must hold floating-point values, found ${text}`);
  }
  const values = readNumeric(opened, ds, label);
  return values instanceof Float32Array ? values : Float32Array.from(values as Float64Array);
}

/**
 * A flag dataset as 0/1 bytes. Accepts h5py booleans (an int8 enum FALSE/TRUE), any integer type and
 * floats, provided every value is exactly 0 or 1 (anything else is an error naming the first bad row).
 */
export function readFlags(opened: OpenedH5, ds: H5Dataset, label: string): Uint8Array {
  const { kind, text } = describeDtype(ds);
  if (kind === 'string' || kind === 'other') throw new DatasetFormatError(`${opened.name}: '${label}' must hold booleans (0/1), found ${text}`);
  const values = readNumeric(opened, ds, label);
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number(values[i]!);
    if (v !== 0 && v !== 1) throw new DatasetFormatError(`${opened.name}: '${label}' must hold booleans (0/1), found ${v} at row ${i}`);
    out[i] = v;
  }
  return out;
}

/** Throws naming the key, row and column of the first NaN or infinite value. */
export function checkFinite(fileName: string, key: string, values: Float32Array | Float64Array, width: number): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) {
      const row = Math.floor(i / width);
      const where = width > 1 ? `row ${row}, column ${i - row * width}` : `row ${row}`;
      throw new DatasetFormatError(`${fileName}: '${key}' holds ${v} at ${where}`);
    }
  }
}

/** Rows of chunk for a 2-D or 1-D dataset: about 1 MiB per chunk, never more rows than exist. */
export function chunkRows(rows: number, rowBytes: number): number {
  return Math.max(1, Math.min(rows, Math.floor((1 << 20) / Math.max(1, rowBytes))));
}
