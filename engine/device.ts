// The one GPU device the engine runs on: created here (Dawn in Node, navigator.gpu in a page) or handed in by
// an embedding program. The object returned by Dawn's create() must outlive every device made from it, so it
// is held in this module for the life of the process.

export type AdapterClass = 'software' | 'gpu';

export interface DeviceInfo {
  vendor: string;
  architecture: string;
  description: string;
  adapterClass: AdapterClass;
  features: string[];
  limits: {
    maxStorageBuffersPerShaderStage: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupStorageSize: number;
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupsPerDimension: number;
    minStorageBufferOffsetAlignment: number;
    minUniformBufferOffsetAlignment: number;
  };
}

export const NO_ADAPTER_MESSAGE =
  'WebDiffuser: no WebGPU adapter found. Install a GPU driver with Vulkan (Linux), Metal (macOS) or D3D12 ' +
  '(Windows) support, or a software Vulkan driver: on Debian/Ubuntu `apt-get install mesa-vulkan-drivers` ' +
  '(Mesa >= 24 provides lavapipe; on Debian 12 take it from bookworm-backports). ' +
  'You can point Dawn at a specific driver with VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json.';

export class NoAdapterError extends Error {
  constructor(detail?: string) {
    super(detail ? `${NO_ADAPTER_MESSAGE} (${detail})` : NO_ADAPTER_MESSAGE);
    this.name = 'NoAdapterError';
  }
}

export class GPUEngineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GPUEngineError';
  }
}

// Dawn's GPU object. Never dropped: releasing it while a device lives crashes the process.
let dawnGPU: GPU | null = null;

async function dawnProvider(flags: string[]): Promise<GPU | null> {
  if (dawnGPU) return dawnGPU;
  const specifier = 'webgpu';
  let mod: { create: (f: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = await import(specifier);
  } catch (err) {
    return null;
  }
  Object.assign(globalThis, mod.globals);
  dawnGPU = mod.create(flags);
  return dawnGPU;
}

/** Finds a GPU object: navigator.gpu in a page, Dawn (npm `webgpu`) in Node. */
export async function findGPU(flags: string[] = []): Promise<GPU | null> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  return dawnProvider(flags);
}

const WANTED_LIMITS = [
  'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxBindGroups',
] as const;

const WANTED_FEATURES = ['timestamp-query', 'shader-f16', 'subgroups'] as const;

export interface RequestOptions {
  /** Flags for Dawn's create(), e.g. ['backend=vulkan', 'adapter=llvmpipe']. */
  dawnFlags?: string[];
  powerPreference?: GPUPowerPreference;
}

export async function requestDevice(opts: RequestOptions = {}): Promise<GPUDevice> {
  const gpu = await findGPU(opts.dawnFlags ?? []);
  if (!gpu) throw new NoAdapterError('no WebGPU implementation: navigator.gpu is absent and npm `webgpu` did not load');
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) throw new NoAdapterError('requestAdapter() returned null');
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  return adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'webdiffuser' });
}

export function describeDevice(device: GPUDevice, adapterInfo?: GPUAdapterInfo): DeviceInfo {
  const info = adapterInfo ?? (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  const vendor = info?.vendor ?? '';
  const architecture = info?.architecture ?? '';
  const description = info?.description ?? '';
  const fallback = (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter === true;
  const software =
    fallback || architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(`${description} ${info?.device ?? ''}`);
  const l = device.limits;
  return {
    vendor,
    architecture,
    description,
    adapterClass: software ? 'software' : 'gpu',
    features: [...device.features] as string[],
    limits: {
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
      minUniformBufferOffsetAlignment: l.minUniformBufferOffsetAlignment,
    },
  };
}
