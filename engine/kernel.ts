// A kernel is one WGSL compute program plus what the runtime needs to launch it, read off the source by
// wgsl_reflect: its bindings (bound by name), its uniform struct's layout, and its workgroup size.
import { WgslReflect, ResourceType } from 'wgsl_reflect/wgsl_reflect.module.js';

export type BindingKind = 'uniform' | 'read-only-storage' | 'storage';

export interface BindingSpec {
  name: string;
  binding: number;
  kind: BindingKind;
}

export interface UniformField {
  name: string;
  offset: number;
  type: 'u32' | 'i32' | 'f32';
}

export class Kernel {
  readonly name: string;
  readonly code: string;
  readonly entryPoint: string;
  readonly bindings: BindingSpec[];
  readonly workgroupSize: [number, number, number];
  /** The uniform binding's name, its byte size (padded to 16) and its scalar fields. */
  readonly uniform: { name: string; size: number; fields: UniformField[] } | null;

  constructor(name: string, code: string, entryPoint = 'main') {
    this.name = name;
    this.code = code;
    this.entryPoint = entryPoint;
    const reflect = new WgslReflect(code);
    const entry = reflect.entry.compute.find((f) => f.name === entryPoint);
    if (!entry) throw new Error(`kernel ${name}: no @compute entry point named ${entryPoint}`);
    this.workgroupSize = (entry.workgroupSize ?? [1, 1, 1]) as [number, number, number];
    const bindings: BindingSpec[] = [];
    let uniform: Kernel['uniform'] = null;
    // Every module-level binding is part of the layout, used by the entry point or not, so that one bind
    // group fits every kernel that shares the source's declarations.
    const vars = [...reflect.uniforms, ...reflect.storage];
    for (const v of vars) {
      if (v.group !== 0) throw new Error(`kernel ${name}: binding ${v.name} is in group ${v.group}; only group 0 is used`);
      if (v.resourceType === ResourceType.Uniform) {
        bindings.push({ name: v.name, binding: v.binding, kind: 'uniform' });
        if (uniform) throw new Error(`kernel ${name}: more than one uniform binding`);
        const members = v.members ?? [];
        const fields: UniformField[] = members.map((m) => {
          const t = m.type.name;
          if (t !== 'u32' && t !== 'i32' && t !== 'f32') {
            throw new Error(`kernel ${name}: uniform field ${m.name} has type ${t}; only u32/i32/f32 scalars are packed`);
          }
          return { name: m.name, offset: m.offset, type: t };
        });
        uniform = { name: v.name, size: Math.max(16, Math.ceil(v.size / 16) * 16), fields };
      } else if (v.resourceType === ResourceType.Storage) {
        bindings.push({ name: v.name, binding: v.binding, kind: v.access === 'read' ? 'read-only-storage' : 'storage' });
      } else {
        throw new Error(`kernel ${name}: binding ${v.name} is not a buffer`);
      }
    }
    bindings.sort((a, b) => a.binding - b.binding);
    this.bindings = bindings;
    this.uniform = uniform;
  }

  /**
   * Packs named scalars into the uniform struct's bytes; every field must be given. `values` may be a list of
   * objects searched in order (the first that has a field gives it).
   */
  packUniforms(values: Readonly<Record<string, number>> | readonly Readonly<Record<string, number>>[]): ArrayBuffer {
    const u = this.uniform;
    if (!u) throw new Error(`kernel ${this.name} has no uniform struct`);
    const buf = new ArrayBuffer(u.size);
    this.packInto(new DataView(buf), 0, Array.isArray(values) ? values : [values as Readonly<Record<string, number>>]);
    return buf;
  }

  /** Writes the uniform struct at byte `offset` of `view` (no allocation: replays call this every step). */
  packInto(view: DataView, offset: number, sources: readonly Readonly<Record<string, number>>[]): void {
    const u = this.uniform;
    if (!u) throw new Error(`kernel ${this.name} has no uniform struct`);
    for (const f of u.fields) {
      let v: number | undefined;
      for (const src of sources) {
        if (f.name in src) {
          v = src[f.name];
          break;
        }
      }
      if (v === undefined) throw new Error(`kernel ${this.name}: uniform field ${f.name} not given`);
      if (f.type === 'f32') view.setFloat32(offset + f.offset, v, true);
      else if (f.type === 'u32') view.setUint32(offset + f.offset, v >>> 0, true);
      else view.setInt32(offset + f.offset, v | 0, true);
    }
  }
}

const kernelCache = new Map<string, Kernel>();

/**
 * Returns the kernel for a specialisation key, generating and reflecting its WGSL only the first time.
 * Keys name the program and every template parameter baked into the source.
 */
export function kernel(key: string, source: () => string, entryPoint = 'main'): Kernel {
  let k = kernelCache.get(key);
  if (!k) {
    k = new Kernel(key, source(), entryPoint);
    kernelCache.set(key, k);
  }
  return k;
}
