// Parameters live in flat groups: one buffer for all values and one for all gradients, each parameter a
// view at an offset aligned for binding. Optimisers and target updates then touch a whole network in one
// dispatch, and zeroing gradients is one fill.
import { runtime } from './runtime.ts';
import { copy_, fill_ } from './basic.ts';
import { Storage, Tensor, keep, tensor, viewOf } from './tensor.ts';

/** A trainable tensor: requires grad and survives every tidy scope. */
export function parameter(data: ArrayLike<number>, shape: readonly number[], name = ''): Tensor {
  const t = keep(tensor(data, shape));
  t.requiresGrad = true;
  t.name = name;
  return t;
}

export interface NamedTensor {
  name: string;
  tensor: Tensor;
}

export class ParamGroup {
  readonly entries: NamedTensor[];
  /** Float offsets of each parameter within the flat buffers. */
  readonly offsets: number[];
  /** Total floats in the flat buffers, padding included. */
  readonly length: number;
  readonly values: Tensor;
  readonly grads: Tensor;
  /** Set by zeroGrad, cleared by backward: while set, a backward may write a first gradient straight into a slot. */
  readonly slotState = { zeroed: false };

  /**
   * Packs the given parameters into one flat value buffer (copying their current contents) and gives each a
   * gradient slot in one flat gradient buffer. The parameter tensors stay the same objects.
   */
  constructor(entries: NamedTensor[]) {
    const rt = runtime();
    const alignFloats = Math.max(1, rt.device.limits.minStorageBufferOffsetAlignment / 4);
    const offsets: number[] = [];
    let len = 0;
    for (const e of entries) {
      offsets.push(len);
      len += Math.ceil(Math.max(1, e.tensor.size) / alignFloats) * alignFloats;
    }
    this.entries = entries;
    this.offsets = offsets;
    this.length = Math.max(len, 1);
    const bytes = this.length * 4;
    const valueBuf = rt.device.createBuffer({ size: bytes, usage: 0x80 | 0x04 | 0x08, label: 'param-values' });
    const gradBuf = rt.device.createBuffer({ size: bytes, usage: 0x80 | 0x04 | 0x08, label: 'param-grads' });
    this.values = keep(new Tensor(new Storage(valueBuf, 0, bytes, false), [this.length]));
    this.grads = keep(new Tensor(new Storage(gradBuf, 0, bytes, false), [this.length]));
    // padding is zero so norms and updates over the whole buffer see nothing extra
    fill_(this.values, 0);
    fill_(this.grads, 0);
    entries.forEach((e, i) => {
      const t = e.tensor;
      const slot = viewOf(valueBuf, offsets[i]! * 4, t.shape);
      copy_(slot, t);
      t.rebind(slot.storage);
      slot.dispose();
      t.gradSlot = keep(viewOf(gradBuf, offsets[i]! * 4, t.shape));
      t.slotState = this.slotState;
      t.grad = null;
      t.requiresGrad = true;
      if (!t.name) t.name = e.name;
    });
  }

  zeroGrad(): void {
    fill_(this.grads, 0);
    this.slotState.zeroed = true;
  }

  byName(name: string): Tensor | undefined {
    return this.entries.find((e) => e.name === name)?.tensor;
  }
}
