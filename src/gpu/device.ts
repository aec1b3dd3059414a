/**
 * The WebGPU runtime: device acquisition, kernel compilation with a pipeline cache keyed by
 * the generated WGSL itself, explicit bind-group layouts, labelled buffers and asynchronous
 * readback. It knows nothing about VAEs.
 */
import type { BindingKind } from '../../shaders/common';
import { acquireAdapter, adapterName, isSoftwareInfo, type AdapterSummary } from './adapter';
import { planFor, type KernelPlan } from './plan';

export type { BindingKind };

/** Raised for everything the runtime refuses or the device reports; `message` says what to do. */
/** What a lost device's message advises a library user; hosts with their own advice remove it. */
export const LOST_DEVICE_ADVICE =
  'Work since the last checkpoint is gone; create the model again on a new device and load the checkpoint.';

export class GpuError extends Error {
  constructor(
    message: string,
    readonly kind: 'unsupported' | 'compile' | 'validation' | 'lost' | 'limits' = 'validation',
  ) {
    super(message);
    this.name = 'GpuError';
  }
}

/** What a kernel's WGSL module must say about itself. */
export interface KernelSource {
  label: string;
  code: string;
  entryPoint: string;
  /** One entry per @binding in group 0, in binding order. */
  bindings: readonly BindingKind[];
}

export interface Kernel {
  label: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** Invocations per workgroup, read from the entry point's @workgroup_size (for occupancy reports). */
  workgroupSize: number;
  /** A bind group over `resources` in binding order; made once, when the model is built. */
  bind(label: string, resources: readonly (GPUBuffer | GPUBufferBinding)[]): GPUBindGroup;
}

/** One recorded dispatch: a training step is a fixed list of these. */
export interface Dispatch {
  kernel: Kernel;
  bindGroup: GPUBindGroup;
  workgroups: readonly [number, number, number];
  /** What the dispatch does, for benchmarks: floating-point operations, or bytes it must move. */
  cost: { flops?: number; bytes?: number };
}

/** Limits the engine needs beyond WebGPU's defaults: the MNIST training set is 47 MB of bytes. */
const NEEDED_LIMITS = {
  maxStorageBuffersPerShaderStage: 8,
  maxStorageBufferBindingSize: 128 * 1024 * 1024,
  maxBufferSize: 256 * 1024 * 1024,
  maxComputeInvocationsPerWorkgroup: 256,
} as const;

/**
 * What a runtime has asked of WebGPU since it was made. Each figure is counted by the runtime
 * at the one place it makes that call, so it is a measurement of the program, not a promise
 * kept by hand: a submit made elsewhere, or an upload nobody meant, shows up.
 */
export interface GpuCounters {
  /** queue.submit calls: work, test passes and readback copies alike. */
  submits: number;
  /** dispatchWorkgroups calls recorded by encode() (and so by run()). */
  dispatches: number;
  /** Bytes handed to queue.writeBuffer by write(), bufferWith() and uniform(); odd sizes count their padding. */
  bytesWritten: number;
  /** Bytes copied into staging buffers and mapped by read(). */
  bytesRead: number;
  /** createBuffer calls, staging buffers included. */
  buffersCreated: number;
  /** destroy calls on buffers this runtime made. */
  buffersDestroyed: number;
}

export interface GpuOptions {
  /** An existing device (the engine then shares it with the caller); one is requested otherwise. */
  device?: GPUDevice;
  /**
   * The WebGPU entry point to request the device from: Dawn's in Node (src/node/webgpu.ts), or a
   * browser's navigator.gpu. Default: `globalThis.navigator.gpu`.
   */
  gpu?: GPU;
  /** Called once if the device is lost; the engine's operations then reject with GpuError('lost'). */
  onLost?: (error: GpuError) => void;
  /** Called for validation or out-of-memory errors nobody captured. */
  onUncapturedError?: (error: GpuError) => void;
  /** With `device`: whether it came from a software adapter (default: what `device.adapterInfo` says). */
  software?: boolean;
}

export class Gpu {
  readonly device: GPUDevice;
  readonly hasTimestamps: boolean;
  readonly hasSubgroups: boolean;
  /** The adapter this runtime requested (undefined when the caller brought its own device). */
  readonly adapter: AdapterSummary | undefined;
  /** A software adapter: kernels take the variants measured fastest on SwiftShader. */
  readonly software: boolean;
  /** Set once the device is lost; every later operation throws it. */
  lostError: GpuError | null = null;
  /** The first validation or out-of-memory error nobody captured; every later operation throws it. */
  uncapturedError: GpuError | null = null;
  private readonly pipelines = new Map<string, Promise<Kernel>>();
  private readonly stagingPool = new Map<number, GPUBuffer[]>();
  /** Every buffer made through this runtime, so destroy() can free them all. */
  private readonly owned = new Set<GPUBuffer>();
  private readonly collectors = new Set<GPUBuffer[]>();
  /** Incremented only beside the WebGPU call each one counts; read through counters(). */
  private readonly tally: GpuCounters = {
    submits: 0,
    dispatches: 0,
    bytesWritten: 0,
    bytesRead: 0,
    buffersCreated: 0,
    buffersDestroyed: 0,
  };
  private readonly onUncaptured: (event: Event) => void;
  /** Set by destroy(): the runtime no longer listens to the device. */
  private detached = false;

  private constructor(device: GPUDevice, options: GpuOptions, adapter?: AdapterSummary) {
    this.device = device;
    this.adapter = adapter;
    // A device the caller brought comes without its adapter: its adapterInfo (Chrome 132+) says
    // what it was; without that it counts as hardware unless the caller says otherwise.
    const info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    this.software = options.software ?? adapter?.software ?? (info ? isSoftwareInfo(info) : false);
    this.hasTimestamps = device.features.has('timestamp-query');
    this.hasSubgroups = device.features.has('subgroups');
    device.lost.then((info) => {
      if (this.detached) return; // destroy() ended this runtime; the device may live on with its owner
      if (info.reason === 'destroyed' && this.lostError) return;
      this.lostError = new GpuError(
        `The GPU device was lost (${info.reason}: ${info.message.replace(/\.$/, '') || 'no message'}). ${LOST_DEVICE_ADVICE}`,
        'lost',
      );
      options.onLost?.(this.lostError);
    });
    this.onUncaptured = (event) => {
      const error = new GpuError(`Uncaptured WebGPU error: ${(event as GPUUncapturedErrorEvent).error.message}`);
      this.uncapturedError ??= error;
      if (options.onUncapturedError) options.onUncapturedError(error);
      else console.error(error.message);
    };
    device.addEventListener('uncapturederror', this.onUncaptured);
  }

  /**
   * This adapter's default kernel plan (src/gpu/plan.ts): the software or the hardware rule's.
   * A fresh value each time: a plan is an argument of whatever builds programs (VaeModel.create,
   * matmulOp), never state of the runtime, so a tuned or a checkpoint's plan is passed, not set.
   */
  get defaultPlan(): KernelPlan {
    return planFor(this.software);
  }

  /** Requests an adapter and a device with the limits the engine needs (or adopts `options.device`). */
  static async create(options: GpuOptions = {}): Promise<Gpu> {
    if (options.device) return new Gpu(options.device, options);
    const { adapter, summary } = await acquireAdapter(options.gpu);
    const requiredLimits: Record<string, number> = {};
    for (const [name, needed] of Object.entries(NEEDED_LIMITS)) {
      const available = adapter.limits[name as keyof GPUSupportedLimits] as number;
      if (available < needed) {
        throw new GpuError(
          `This adapter's (${adapterName(summary)}) ${name} is ${available}; the engine needs ${needed}.`,
          'limits',
        );
      }
      requiredLimits[name] = needed;
    }
    const requiredFeatures = (['timestamp-query', 'subgroups'] as GPUFeatureName[]).filter((f) =>
      adapter.features.has(f),
    );
    const device = await adapter.requestDevice({ label: 'webgpu-vae', requiredLimits, requiredFeatures });
    return new Gpu(device, options, summary);
  }

  /**
   * Throws if the device is gone or has reported an error: results computed after a failed
   * command are garbage, so nothing may continue past one. Called before any work is submitted.
   */
  assertAlive(): void {
    if (this.lostError) throw this.lostError;
    if (this.uncapturedError) throw this.uncapturedError;
  }

  /**
   * Compiles `source` once: the cache key is the WGSL text, the entry point and the binding
   * kinds, so two kernels share a pipeline exactly when they would compile to the same one.
   */
  kernel(source: KernelSource): Promise<Kernel> {
    const key = `${source.entryPoint}|${source.bindings.join(',')}|${source.code}`;
    let kernel = this.pipelines.get(key);
    if (!kernel) {
      kernel = this.compile(source);
      kernel.catch(() => this.pipelines.delete(key)); // a failed compile is not cached
      this.pipelines.set(key, kernel);
    }
    return kernel;
  }

  /** A snapshot of what this runtime has asked of WebGPU so far. */
  counters(): Readonly<GpuCounters> {
    return { ...this.tally };
  }

  /** What this runtime has asked of WebGPU since `before` (an earlier counters() snapshot). */
  countersSince(before: Readonly<GpuCounters>): GpuCounters {
    const now = this.tally;
    return {
      submits: now.submits - before.submits,
      dispatches: now.dispatches - before.dispatches,
      bytesWritten: now.bytesWritten - before.bytesWritten,
      bytesRead: now.bytesRead - before.bytesRead,
      buffersCreated: now.buffersCreated - before.buffersCreated,
      buffersDestroyed: now.buffersDestroyed - before.buffersDestroyed,
    };
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  private async compile(source: KernelSource): Promise<Kernel> {
    this.assertAlive();
    const { device } = this;
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ label: source.label, code: source.code });
    const info = await module.getCompilationInfo();
    const moduleError = await device.popErrorScope();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length > 0 || moduleError) {
      throw new GpuError(formatCompileErrors(source, errors, moduleError?.message), 'compile');
    }
    const layout = device.createBindGroupLayout({
      label: `${source.label} layout`,
      entries: source.bindings.map((kind, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
      })),
    });
    let pipeline: GPUComputePipeline;
    try {
      pipeline = await device.createComputePipelineAsync({
        label: source.label,
        layout: device.createPipelineLayout({ label: `${source.label} pipeline layout`, bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: source.entryPoint },
      });
    } catch (e) {
      throw new GpuError(`Pipeline "${source.label}" failed: ${(e as Error).message}`, 'compile');
    }
    return {
      label: source.label,
      pipeline,
      layout,
      workgroupSize: workgroupSizeOf(source),
      bind: (label, resources) =>
        device.createBindGroup({
          label,
          layout,
          entries: resources.map((r, binding) => ({ binding, resource: 'buffer' in r ? r : { buffer: r } })),
        }),
    };
  }

  buffer(
    label: string,
    byteLength: number,
    usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  ): GPUBuffer {
    this.assertAlive();
    // Zero-sized bindings are invalid; round to 16 bytes so vec4 views of any buffer are whole.
    const size = Math.max(16, Math.ceil(byteLength / 16) * 16);
    const buffer = this.createBuffer({ label, size, usage });
    this.owned.add(buffer);
    for (const list of this.collectors) list.push(buffer);
    return buffer;
  }

  /**
   * Runs `work` and appends to `into` every buffer made meanwhile, so that a part of a model
   * rebuilt later (a job's programs and their uniforms) can be freed exactly. Callers keep other
   * GPU work off the runtime while it runs (the library's lock does).
   */
  async collecting<T>(into: GPUBuffer[], work: () => Promise<T>): Promise<T> {
    this.collectors.add(into);
    try {
      return await work();
    } finally {
      this.collectors.delete(into);
    }
  }

  /** A storage buffer holding `data`. */
  bufferWith(label: string, data: ArrayBufferView, usage?: number): GPUBuffer {
    const buffer = this.buffer(label, data.byteLength, usage);
    this.write(buffer, data);
    return buffer;
  }

  /** A uniform buffer holding `data` (made once; sizes that change per run live here). */
  uniform(label: string, data: ArrayBufferView): GPUBuffer {
    return this.bufferWith(label, data, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  }

  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    this.assertAlive();
    // writeBuffer wants a multiple of 4 bytes; pad a copy when needed (only byte datasets are odd-sized).
    let view = data;
    if (data.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      view = padded;
    }
    this.device.queue.writeBuffer(buffer, offset, view.buffer, view.byteOffset, view.byteLength);
    this.tally.bytesWritten += view.byteLength;
  }

  /** Submits `commands`: every submit the engine makes goes through here, so it is counted. */
  submit(commands: GPUCommandBuffer[]): void {
    this.device.queue.submit(commands);
    this.tally.submits++;
  }

  /** The one place this runtime creates a buffer. */
  private createBuffer(descriptor: GPUBufferDescriptor): GPUBuffer {
    const buffer = this.device.createBuffer(descriptor);
    this.tally.buffersCreated++;
    return buffer;
  }

  /** The one place this runtime destroys a buffer. */
  private destroyBuffer(buffer: GPUBuffer): void {
    buffer.destroy();
    this.tally.buffersDestroyed++;
  }

  /** Records `dispatches` into one compute pass. */
  encode(encoder: GPUCommandEncoder, dispatches: readonly Dispatch[], label = 'compute'): void {
    const pass = encoder.beginComputePass({ label });
    for (const d of dispatches) {
      pass.setPipeline(d.kernel.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
      this.tally.dispatches++;
    }
    pass.end();
  }

  /** Encodes and submits `dispatches` in one pass. */
  run(dispatches: readonly Dispatch[], label = 'compute'): void {
    this.assertAlive();
    const encoder = this.device.createCommandEncoder({ label });
    this.encode(encoder, dispatches, label);
    this.submit([encoder.finish()]);
  }

  /**
   * Copies `byteLength` bytes of `source` into a staging buffer (from a pool, reused) and
   * resolves with them once the GPU is done. Never awaited inside a training step.
   */
  async read(source: GPUBuffer, byteOffset = 0, byteLength = source.size - byteOffset): Promise<ArrayBuffer> {
    this.assertAlive();
    const size = Math.ceil(byteLength / 4) * 4;
    const staging =
      this.stagingPool.get(size)?.pop() ??
      this.createBuffer({
        label: `readback ${size} B`,
        size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
    // The copy gets its own submit: mapAsync may only start once the copy is submitted.
    const encoder = this.device.createCommandEncoder({ label: 'readback' });
    encoder.copyBufferToBuffer(source, byteOffset, staging, 0, size);
    this.submit([encoder.finish()]);
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      this.destroyBuffer(staging);
      // A lost device fails pending maps before device.lost settles; give it a moment, so the
      // caller hears "the device was lost" rather than a confusing mapping error.
      await Promise.race([this.device.lost, new Promise((r) => setTimeout(r, 100))]);
      throw this.lostError ?? new GpuError(`Reading back "${source.label}" failed: ${(e as Error).message}`);
    }
    const mapped = staging.getMappedRange();
    this.tally.bytesRead += mapped.byteLength;
    const bytes = mapped.slice(0, byteLength);
    staging.unmap();
    // A read that finishes after destroy() must not refill the pool it emptied.
    if (this.detached) {
      this.destroyBuffer(staging);
      return bytes;
    }
    const pool = this.stagingPool.get(size) ?? [];
    pool.push(staging);
    this.stagingPool.set(size, pool);
    return bytes;
  }

  async readFloats(source: GPUBuffer, offsetFloats = 0, count = source.size / 4 - offsetFloats): Promise<Float32Array> {
    return new Float32Array(await this.read(source, offsetFloats * 4, count * 4));
  }

  /** Every live buffer this runtime made: the tracked ones and the idle staging buffers. */
  private *liveBufferList(): Generator<GPUBuffer> {
    yield* this.owned;
    for (const pool of this.stagingPool.values()) yield* pool;
  }

  /** Number of live buffers this runtime made (staging included): a leak check for tests. */
  get liveBuffers(): number {
    return [...this.liveBufferList()].length;
  }

  /** Bytes held by the live buffers this runtime made (staging included): for leak checks and soak reports. */
  get liveBytes(): number {
    return [...this.liveBufferList()].reduce((bytes, b) => bytes + b.size, 0);
  }

  /** Frees one buffer made by this runtime. */
  release(buffer: GPUBuffer): void {
    if (this.owned.delete(buffer)) this.destroyBuffer(buffer);
  }

  /** Frees every buffer this runtime made; the runtime stays usable. */
  freeBuffers(): void {
    for (const b of this.liveBufferList()) this.destroyBuffer(b);
    this.owned.clear();
    this.stagingPool.clear();
  }

  /**
   * Frees every buffer and stops listening to the device, which itself stays (it may be the
   * caller's, who destroys it when done).
   */
  destroy(): void {
    this.freeBuffers();
    this.detached = true;
    this.device.removeEventListener('uncapturederror', this.onUncaptured);
  }
}

/** The product of the entry point's @workgroup_size, from the WGSL itself (its one source). */
function workgroupSizeOf(source: KernelSource): number {
  const at = source.code.indexOf(`fn ${source.entryPoint}(`);
  const attrs = [...source.code.slice(0, at).matchAll(/@workgroup_size\(([^)]*)\)/g)].at(-1);
  if (!attrs) return 0;
  return attrs[1]
    .split(',')
    .map((t) => Number(t.trim().replace(/u$/, '')))
    .reduce((a, b) => a * b, 1);
}

function formatCompileErrors(
  source: KernelSource,
  messages: readonly GPUCompilationMessage[],
  scopeMessage?: string,
): string {
  const lines = source.code.split('\n');
  const parts = messages.map((m) => {
    const context = lines
      .slice(Math.max(0, m.lineNum - 3), m.lineNum + 1)
      .map((text, i) => `${String(Math.max(1, m.lineNum - 2) + i).padStart(4)} | ${text}`)
      .join('\n');
    return `${source.label}:${m.lineNum}:${m.linePos}: ${m.message}\n${context}`;
  });
  if (parts.length === 0 && scopeMessage) parts.push(scopeMessage);
  return (
    `WGSL compile error in kernel "${source.label}" (entry ${source.entryPoint}):\n${parts.join('\n')}\n` +
    `--- full source ---\n${lines.map((t, i) => `${String(i + 1).padStart(4)} | ${t}`).join('\n')}`
  );
}
