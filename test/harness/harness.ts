/**
 * The kernel test harness: builds GPU buffers from the test's data, records the requested
 * kernels with the engine's own ops, runs them inside validation and out-of-memory error
 * scopes, and returns the buffers the test wants to see. It runs in headless Chromium's page
 * (page.ts puts it on `window`) and in Node on Dawn (test/gpu.ts), so it touches no `window`:
 * the functions a test implementation calls take the WebGPU entry point (`entry`; the page's
 * navigator.gpu when absent). Data crosses puppeteer as base64 so Float32 bits arrive exactly.
 */
import { Gpu } from '../../src/gpu/device';
import { planFor, type KernelPlan } from '../../src/gpu/plan';
import {
  checkpointSizes,
  decodeCheckpoint,
  encodeCheckpoint,
  encodeRunCheckpoint,
  readRunMetadata,
} from '../../src/model/checkpoint';
import type { VaeSizes } from '../../src/model/graph';
import { Inference } from '../../src/model/inference';
import { openModel } from '../../src/model/open';
import { adamAt } from '../../src/model/settings';
import { Trainer } from '../../src/model/trainer';
import { uploadImages, VaeModel } from '../../src/model/vae';
import * as ops from '../../src/gpu/ops';
import * as bn from '../../src/gpu/batchnorm-ops';
import * as convOps from '../../src/gpu/conv-ops';
import { quadSharingWorks } from '../../src/gpu/quads';
import type { QuadLayout } from '../../shaders/matmul.wgsl';
import type { Dispatch } from '../../src/gpu/device';
import { fromBase64, toBase64 } from '../../src/io/base64';

export interface BufferSpec {
  /** base64 of the initial bytes; or `bytes` for a zeroed buffer. */
  data?: string;
  bytes?: number;
}

/** An op's buffers argument with each GPU buffer replaced by the name of a test buffer. */
type Named<T> = { [K in keyof T]: string };
type Args<F extends (...args: never[]) => unknown> = Parameters<F>;
/** A matmul kernel's spec, from its op's dims, options and buffers. */
type MatmulSpec<
  Op extends string,
  F extends typeof ops.matmulOp | typeof ops.matmulTiledOp | typeof ops.matmulSplitKOp,
> = { op: Op; dims: Args<F>[2]; options: Args<F>[3] } & Named<Args<F>[4]>;

/** One op of a run: its function's arguments (ops.ts), buffers named. */
export type OpSpec =
  | MatmulSpec<'matmul', typeof ops.matmulOp>
  | MatmulSpec<'matmulTiled', typeof ops.matmulTiledOp>
  | MatmulSpec<'matmulSplitK', typeof ops.matmulSplitKOp>
  | { op: 'activation'; entry: Args<typeof ops.activationOp>[2]; count: number; inputs: string[]; out: string }
  | ({ op: 'gather'; dims: Args<typeof ops.gatherOp>[2] } & Named<Args<typeof ops.gatherOp>[3]>)
  | ({ op: 'gatherConditional'; dims: Args<typeof ops.gatherConditionalOp>[2] } & Named<
      Args<typeof ops.gatherConditionalOp>[3]
    >)
  | {
      op: 'joinColumns';
      rows: number;
      a: Omit<ops.Columns, 'buffer'> & { buffer: string };
      b: Omit<ops.Columns, 'buffer'> & { buffer: string };
      out: string;
    }
  | { op: 'reparam'; entry: Args<typeof ops.reparamOp>[2]; params: Args<typeof ops.reparamOp>[3]; buffers: string[] }
  | ({ op: 'bceKl'; dims: Args<typeof ops.bceKlOp>[2]; groups?: number } & Named<Args<typeof ops.bceKlOp>[3]>)
  | ({ op: 'lossFinalize'; groups?: number } & Named<Args<typeof ops.lossFinalizeOp>[2]>)
  | ({ op: 'elbo'; dims: Args<typeof ops.elboOp>[2]; params: Args<typeof ops.elboOp>[3]; groups?: number } & Named<
      Args<typeof ops.elboOp>[4]
    >)
  | ({ op: 'elboFinalize'; params: Args<typeof ops.elboFinalizeOp>[2]; groups?: number } & Named<
      Args<typeof ops.elboFinalizeOp>[3]
    >)
  | ({ op: 'gaussianDlogSigma'; dims: Args<typeof ops.gaussianDlogSigmaOp>[2] } & Named<
      Args<typeof ops.gaussianDlogSigmaOp>[3]
    >)
  | { op: 'meanClamp'; count: number; mean: string; image: string }
  | {
      op: 'conv';
      layer: convOps.ConvLayer;
      input: convOps.ConvInput;
      pass: convOps.ConvPass;
      /** The pass's buffers (ConvBuffers), named. */
      buffers: Record<string, string>;
      epilogue?: convOps.ConvEpilogue;
      /** Build under this adapter kind's plan (default: the adapter's own). */
      plan?: 'software' | 'hardware';
    }
  | ({
      op: 'adam';
      length: number;
      hyper: Args<typeof ops.adamOp>[3];
      options?: Args<typeof ops.adamOp>[5];
      clamp?: Args<typeof ops.adamOp>[6];
    } & Named<Args<typeof ops.adamOp>[4]>)
  | BatchnormSpec<'batchnormTrain', typeof bn.batchnormTrainForwardOp>
  | BatchnormSpec<'batchnormEval', typeof bn.batchnormEvalForwardOp>
  | BatchnormSpec<'batchnormBackward', typeof bn.batchnormBackwardOp>;

/** A BatchNorm2d kernel's spec, from its op's dims, options and buffers. */
type BatchnormSpec<
  Op extends string,
  F extends typeof bn.batchnormTrainForwardOp | typeof bn.batchnormEvalForwardOp | typeof bn.batchnormBackwardOp,
> = { op: Op; dims: Args<F>[2]; options: Args<F>[3] } & Named<Args<F>[4]>;

export interface RunRequest {
  buffers: Record<string, BufferSpec>;
  ops: OpSpec[];
  /** Run the whole op list this many times, one submit each (default 1). */
  repeat?: number;
  /**
   * On a Gpu of its own, made for this request: for what the runtime decides once per Gpu (the
   * quad self-check). `software: false` makes it act as on a hardware adapter.
   */
  freshGpu?: { software?: boolean };
  read: string[];
}

/** One shared runtime per WebGPU entry point, for the requests without `freshGpu`. */
const runtimes = new Map<GPU | undefined, Promise<Gpu>>();
const gpu = (entry?: GPU) => {
  let g = runtimes.get(entry);
  if (!g) runtimes.set(entry, (g = Gpu.create({ gpu: entry })));
  return g;
};

/** A matmul spec's named buffers, for any of the three matmul kernels. */
function matmulBuffers(spec: Extract<OpSpec, { A: string }>, b: Record<string, GPUBuffer>): ops.MatmulBuffers {
  const named = (name?: string) => (name ? b[name] : undefined);
  return {
    A: b[spec.A],
    B: b[spec.B],
    C: b[spec.C],
    bias: named(spec.bias),
    mask: named(spec.mask),
    rowSum: named(spec.rowSum),
    mulv: named(spec.mulv),
    eps: named(spec.eps),
  };
}

/** A spec's buffer names as the buffers they name (an absent optional name stays absent). */
function bound<T>(names: Record<string, string | undefined>, b: Record<string, GPUBuffer>): T {
  return Object.fromEntries(Object.entries(names).map(([k, name]) => [k, name && b[name]])) as T;
}

async function build(g: Gpu, spec: OpSpec, b: Record<string, GPUBuffer>): Promise<Dispatch | Dispatch[]> {
  const label = `test ${spec.op}`;
  switch (spec.op) {
    case 'matmul':
      return ops.matmulOp(g, label, spec.dims, spec.options, matmulBuffers(spec, b));
    case 'matmulSplitK':
      return ops.matmulSplitKOp(g, label, spec.dims, spec.options, matmulBuffers(spec, b));
    case 'matmulTiled':
      return ops.matmulTiledOp(g, label, spec.dims, spec.options, matmulBuffers(spec, b));
    case 'activation':
      return ops.activationOp(
        g,
        label,
        spec.entry,
        spec.count,
        spec.inputs.map((n) => b[n]),
        b[spec.out],
      );
    case 'gather':
      return ops.gatherOp(g, label, spec.dims, {
        state: b[spec.state],
        data: b[spec.data],
        perm: b[spec.perm],
        X: b[spec.X],
      });
    case 'gatherConditional':
      return ops.gatherConditionalOp(g, label, spec.dims, {
        state: b[spec.state],
        data: b[spec.data],
        perm: b[spec.perm],
        labels: b[spec.labels],
        X: b[spec.X],
        XY: b[spec.XY],
        Z: b[spec.Z],
      });
    case 'joinColumns':
      return ops.joinColumnsOp(
        g,
        label,
        spec.rows,
        { ...spec.a, buffer: b[spec.a.buffer]! },
        { ...spec.b, buffer: b[spec.b.buffer]! },
        b[spec.out]!,
      );
    case 'reparam':
      return ops.reparamOp(
        g,
        label,
        spec.entry,
        spec.params,
        spec.buffers.map((n) => b[n]),
      );
    case 'bceKl':
      return ops.bceKlOp(
        g,
        label,
        spec.dims,
        {
          logits: b[spec.logits],
          x: b[spec.x],
          mulv: b[spec.mulv],
          dlogits: b[spec.dlogits],
          dmulv: b[spec.dmulv],
          partials: b[spec.partials],
        },
        spec.groups,
      );
    case 'lossFinalize':
      return ops.lossFinalizeOp(
        g,
        label,
        { state: b[spec.state], partials: b[spec.partials], out: b[spec.out] },
        spec.groups,
      );
    case 'elbo':
      return ops.elboOp(
        g,
        label,
        spec.dims,
        spec.params,
        {
          state: b[spec.state],
          logits: b[spec.logits],
          x: b[spec.x],
          mulv: b[spec.mulv],
          logSigma: spec.logSigma ? b[spec.logSigma] : undefined,
          dlogits: b[spec.dlogits],
          dmulv: b[spec.dmulv],
          partials: b[spec.partials],
        },
        spec.groups,
      );
    case 'elboFinalize':
      return ops.elboFinalizeOp(
        g,
        label,
        spec.params,
        { state: b[spec.state], partials: b[spec.partials], out: b[spec.out], objective: b[spec.objective] },
        spec.groups,
      );
    case 'gaussianDlogSigma':
      return ops.gaussianDlogSigmaOp(g, label, spec.dims, {
        mean: b[spec.mean],
        x: b[spec.x],
        logSigma: b[spec.logSigma],
        dlogSigma: b[spec.dlogSigma],
      });
    case 'meanClamp':
      return ops.meanClampOp(g, label, spec.count, b[spec.mean], b[spec.image]);
    case 'conv': {
      const named = Object.fromEntries(Object.entries(spec.buffers).map(([k, name]) => [k, b[name]]));
      const plan = spec.plan ? planFor(spec.plan === 'software') : g.defaultPlan;
      return convOps.convOp(
        g,
        label,
        spec.layer,
        spec.input,
        spec.pass,
        named as unknown as convOps.ConvBuffers[typeof spec.pass],
        spec.epilogue,
        plan,
      );
    }
    case 'adam':
      return ops.adamOp(
        g,
        label,
        spec.length,
        spec.hyper,
        {
          state: b[spec.state],
          params: b[spec.params],
          grads: b[spec.grads],
          m: b[spec.m],
          v: b[spec.v],
        },
        spec.options,
        spec.clamp,
      );
    case 'batchnormTrain': {
      const { op: _op, dims, options, ...names } = spec;
      return bn.batchnormTrainForwardOp(g, label, dims, options, bound(names, b));
    }
    case 'batchnormEval': {
      const { op: _op, dims, options, ...names } = spec;
      return bn.batchnormEvalForwardOp(g, label, dims, options, bound(names, b));
    }
    case 'batchnormBackward': {
      const { op: _op, dims, options, ...names } = spec;
      return bn.batchnormBackwardOp(g, label, dims, options, bound(names, b));
    }
  }
}

async function freshGpu(software: boolean | undefined, entry?: GPU): Promise<Gpu> {
  const g = await Gpu.create({ gpu: entry });
  return software === undefined ? g : Gpu.create({ device: g.device, software });
}

/**
 * `work` inside validation and out-of-memory error scopes on `device`, then `cleanUp`. An error a
 * scope caught replaces one `work` threw: it says more than the failure it caused.
 */
async function inErrorScopes<T>(device: GPUDevice, cleanUp: () => void, work: () => Promise<T>): Promise<T> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  try {
    return await work();
  } finally {
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    cleanUp();
    const error = validation ?? oom;
    // eslint-disable-next-line no-unsafe-finally
    if (error) throw new Error(`WebGPU ${validation ? 'validation' : 'out-of-memory'} error: ${error.message}`);
  }
}

export async function run(request: RunRequest, entry?: GPU): Promise<Record<string, string>> {
  const g = request.freshGpu ? await freshGpu(request.freshGpu.software, entry) : await gpu(entry);
  const cleanUp = () => {
    if (request.freshGpu) {
      g.destroy();
      g.device.destroy();
    } else {
      g.freeBuffers(); // the shared runtime stays for the next request
    }
  };
  return inErrorScopes(g.device, cleanUp, async () => {
    const buffers: Record<string, GPUBuffer> = {};
    for (const [name, spec] of Object.entries(request.buffers)) {
      buffers[name] =
        spec.data !== undefined
          ? g.bufferWith(`test ${name}`, fromBase64(spec.data))
          : g.buffer(`test ${name}`, spec.bytes ?? 16);
    }
    const dispatches: Dispatch[] = [];
    for (const spec of request.ops) dispatches.push(...[await build(g, spec, buffers)].flat());
    for (let i = 0; i < (request.repeat ?? 1); i++) g.run(dispatches, 'test');
    const out: Record<string, string> = {};
    for (const name of request.read) out[name] = toBase64(new Uint8Array(await g.read(buffers[name])));
    return out;
  });
}

export interface TrainStepsRequest {
  sizes: VaeSizes;
  batchSize: number;
  seed: number;
  lr: number;
  /** (count, D) bytes */
  images: string;
  count: number;
  /** Arena-layout initial weights (base64 f32). */
  params: string;
  steps: number;
  /** Rewind the batch index before each step, so every step sees batch 0 (the fixtures' setup). */
  sameBatch: boolean;
  /** Run under this adapter kind's default kernel plan (default: the adapter's own). */
  plan?: 'software' | 'hardware';
  /** A class per image, for a conditional model (`sizes.classes`). */
  labels?: number[];
  /** β on the KL term and its warm-up (absent: the reference model's objective). */
  beta?: number;
  klWarmup?: number;
  /** After the steps, one evaluation step over the first batch of the images (its record last). */
  evaluate?: boolean;
}

/** Runs real training steps of the model and returns what each step produced. */
export async function trainSteps(r: TrainStepsRequest, entry?: GPU): Promise<Record<string, string>[]> {
  const g = await Gpu.create({ gpu: entry });
  return inErrorScopes(
    g.device,
    () => g.destroy(),
    async () => {
      const images = uploadImages(g, 'images', fromBase64(r.images), r.count, r.labels);
      const model = await VaeModel.create(g, {
        ...(r.plan ? { plan: planFor(r.plan === 'software') } : {}),
        sizes: r.sizes,
        batchSize: r.batchSize,
        seed: r.seed,
        adam: { lr: r.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
        train: images,
        test: images,
        beta: r.beta,
        klWarmup: r.klWarmup,
      });
      const p = fromBase64(r.params);
      model.importState({ params: new Float32Array(p.buffer, p.byteOffset, p.byteLength / 4) });
      const out: Record<string, string>[] = [];
      const bytes = async (b: GPUBuffer) => toBase64(new Uint8Array(await g.read(b)));
      for (let step = 0; step < r.steps; step++) {
        if (r.sameBatch) g.write(model.trainState, new Uint32Array([0]), 4);
        g.run(model.trainStep(model.rowsOf(r.sameBatch ? 0 : step, r.count)), 'parity step');
        out.push({
          loss: await bytes(model.trainLoss),
          grads: await bytes(model.grads),
          params: await bytes(model.params),
          m: await bytes(model.m),
          v: await bytes(model.v),
          mulv: await bytes(model.act.mulv),
          logits: await bytes(model.act.logits),
          eps: await bytes(model.act.eps),
          state: await bytes(model.trainState),
          stats: await bytes(model.stats),
          ...(model.trainObjective ? { objective: await bytes(model.trainObjective) } : {}),
        });
      }
      if (r.evaluate) {
        g.run(model.evalStep(model.rowsOf(0, r.count)), 'parity evaluation');
        out.push({
          loss: await bytes(model.testLoss),
          logits: await bytes(model.act.logits),
          eps: await bytes(model.act.eps),
          stats: await bytes(model.stats),
        });
      }
      return out;
    },
  );
}

/**
 * What a device saw, counted by wrapping its methods before a runtime adopts it: the runtime's
 * own bookkeeping is not asked, so a buffer it forgets, a submit it makes behind its counters or
 * a listener it leaves behind shows up here.
 */
export interface DeviceCensus {
  /** GPUBuffers created and not yet destroyed. */
  live: Set<GPUBuffer>;
  buffersCreated: number;
  buffersDestroyed: number;
  submits: number;
  dispatches: number;
  bytesWritten: number;
  bytesRead: number;
  /** 'uncapturederror' listeners added and not removed. */
  uncapturedListeners: Set<unknown>;
}

/** Wraps `device` (createBuffer and each buffer's destroy and getMappedRange, the queue, passes, listeners) to count what reaches it. */
function censusOf(device: GPUDevice): DeviceCensus {
  const census: DeviceCensus = {
    live: new Set(),
    buffersCreated: 0,
    buffersDestroyed: 0,
    submits: 0,
    dispatches: 0,
    bytesWritten: 0,
    bytesRead: 0,
    uncapturedListeners: new Set(),
  };
  const createBuffer = device.createBuffer.bind(device);
  device.createBuffer = (descriptor) => {
    const buffer = createBuffer(descriptor);
    census.buffersCreated++;
    census.live.add(buffer);
    const destroy = buffer.destroy.bind(buffer);
    buffer.destroy = () => {
      census.buffersDestroyed++;
      census.live.delete(buffer);
      destroy();
    };
    const getMappedRange = buffer.getMappedRange.bind(buffer);
    buffer.getMappedRange = (...args) => {
      const range = getMappedRange(...args);
      census.bytesRead += range.byteLength;
      return range;
    };
    return buffer;
  };
  const { queue } = device;
  const submit = queue.submit.bind(queue);
  queue.submit = (commands) => {
    census.submits++;
    submit(commands);
  };
  const writeBuffer = queue.writeBuffer.bind(queue) as (...args: unknown[]) => void;
  queue.writeBuffer = ((
    buffer: GPUBuffer,
    offset: number,
    data: ArrayBufferLike | ArrayBufferView,
    dataOffset = 0,
    size?: number,
  ) => {
    // Sizes are in bytes for an ArrayBuffer source, in elements for a typed array.
    const unit = ArrayBuffer.isView(data)
      ? ((data as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1)
      : 1;
    const elements = ArrayBuffer.isView(data) ? data.byteLength / unit : data.byteLength;
    census.bytesWritten += (size ?? elements - dataOffset) * unit;
    writeBuffer(buffer, offset, data, dataOffset, size);
  }) as GPUQueue['writeBuffer'];
  const createCommandEncoder = device.createCommandEncoder.bind(device);
  device.createCommandEncoder = (descriptor) => {
    const encoder = createCommandEncoder(descriptor);
    const beginComputePass = encoder.beginComputePass.bind(encoder);
    encoder.beginComputePass = (passDescriptor) => {
      const pass = beginComputePass(passDescriptor);
      const dispatch = pass.dispatchWorkgroups.bind(pass);
      pass.dispatchWorkgroups = (x, y, z) => {
        census.dispatches++;
        dispatch(x, y, z);
      };
      return pass;
    };
    return encoder;
  };
  const add = device.addEventListener.bind(device) as (...args: unknown[]) => void;
  const remove = device.removeEventListener.bind(device) as (...args: unknown[]) => void;
  device.addEventListener = ((type: string, listener: unknown, options?: unknown) => {
    if (type === 'uncapturederror') census.uncapturedListeners.add(listener);
    add(type, listener, options);
  }) as GPUDevice['addEventListener'];
  device.removeEventListener = ((type: string, listener: unknown, options?: unknown) => {
    if (type === 'uncapturederror') census.uncapturedListeners.delete(listener);
    remove(type, listener, options);
  }) as GPUDevice['removeEventListener'];
  return census;
}

/** The census's counts in GpuCounters' terms, to compare with the runtime's own. */
const countsOf = (c: DeviceCensus) => ({
  submits: c.submits,
  dispatches: c.dispatches,
  bytesWritten: c.bytesWritten,
  bytesRead: c.bytesRead,
  buffersCreated: c.buffersCreated,
  buffersDestroyed: c.buffersDestroyed,
});

/**
 * A real model's whole life on a caller-owned device whose calls are counted from outside:
 * training, a test pass, images, a checkpoint read, another job (which releases the first
 * job's buffers), encode and decode. Returns the live GPUBuffers and 'uncapturederror'
 * listeners at each point, and the runtime's counters beside the census's.
 */
export async function lifecycle() {
  // A device with the engine's limits, from a runtime that lets go of it at once.
  const lender = await Gpu.create();
  const { device, software } = lender;
  lender.destroy();
  const census = censusOf(device);
  // The caller's own buffer: the runtime must neither count it as its own nor free it.
  const callers = device.createBuffer({ label: 'caller before', size: 16, usage: GPUBufferUsage.STORAGE });
  const at = () => ({ buffers: census.live.size, listeners: census.uncapturedListeners.size });
  const out: Record<string, unknown> = { before: at() };

  const uncaptured: string[] = [];
  const g = await Gpu.create({ device, software, onUncapturedError: (e) => uncaptured.push(e.message) });
  const start = g.counters();
  const counted = countsOf(census);
  out.adopted = at();
  const count = 200;
  const D = 784;
  const pixels = new Uint8Array(count * D);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  const images = uploadImages(g, 'census images', pixels, count);
  g.bufferWith('odd-sized bytes', new Uint8Array(5)); // writeBuffer takes whole words: 8 bytes cross
  const model = await VaeModel.create(g, {
    sizes: { D, hidden: [32, 16], L: 4 },
    batchSize: 64,
    seed: 3,
    adam: adamAt(1e-3),
    train: images,
    test: images,
  });
  const trainer = new Trainer(model, { stepsPerSubmit: 2 });
  const epoch = await trainer.trainEpoch(1);
  await trainer.testPass(1);
  await trainer.images();
  await model.exportState();
  await model.configure({ ...model.config, batchSize: 48 }); // frees the first job's buffers
  await trainer.trainEpoch(2);
  const inference = new Inference(model);
  const mulv = await inference.encode(new Float32Array(3 * D).fill(0.5), 3);
  const decoded = await inference.decode(new Float32Array(3 * 4), 3);
  out.work = { batches: epoch.batches, loss: epoch.averageLoss, mulv: mulv.length, decoded: decoded.length };
  out.alive = { ...at(), runtimeSays: g.liveBuffers };
  const census0 = countsOf(census);
  out.measured = {
    runtime: g.countersSince(start),
    device: Object.fromEntries(Object.entries(census0).map(([k, v]) => [k, v - counted[k as keyof typeof counted]])),
  };
  model.destroy();
  out.afterModelDestroy = at();
  g.destroy();
  out.afterGpuDestroy = at();
  // A detached runtime hears nothing more from the device it was lent.
  try {
    device.dispatchEvent(
      new GPUUncapturedErrorEvent('uncapturederror', { error: new GPUValidationError('after destroy') }),
    );
    out.heardAfterDestroy = { callbacks: uncaptured.length, recorded: g.uncapturedError?.message ?? null };
  } catch (e) {
    out.heardAfterDestroy = { error: (e as Error).message };
  }
  // The caller's device outlives the runtime.
  const own = device.createBuffer({ label: 'caller after', size: 16, usage: GPUBufferUsage.STORAGE });
  out.deviceUsable = own.size === 16 && census.live.has(callers) && !g.lostError;
  own.destroy();
  callers.destroy();
  device.destroy();
  return out;
}

/** Observations of the runtime's own behaviour: compile errors, the cache, loss. */
export async function runtime() {
  const g = await Gpu.create();
  const out: Record<string, unknown> = {};
  try {
    await g.kernel({
      label: 'broken',
      entryPoint: 'main',
      bindings: [],
      code: '@compute @workgroup_size(1)\nfn main() {\n  let x: f32 = 1u;\n}\n',
    });
    out.compileError = null;
  } catch (e) {
    out.compileError = { name: (e as Error).name, kind: (e as { kind?: string }).kind, message: (e as Error).message };
  }
  const source = {
    label: 'ok',
    entryPoint: 'main',
    bindings: ['storage'] as const,
    code: '@group(0) @binding(0) var<storage, read_write> b: array<f32>;\n@compute @workgroup_size(1)\nfn main() { b[0] = 1.0; }\n',
  };
  const before = g.pipelineCount;
  const k1 = await g.kernel(source);
  const k2 = await g.kernel({ ...source, label: 'same code, other label' });
  out.cache = { added: g.pipelineCount - before, same: k1 === k2 };
  const buffer = g.buffer('runtime test', 16);
  g.run([{ kernel: k1, bindGroup: k1.bind('runtime test', [buffer]), workgroups: [1, 1, 1], cost: {} }]);
  out.value = (await g.readFloats(buffer, 0, 1))[0];
  g.destroy();
  g.device.destroy();
  // A lost device: every later operation says so.
  const lost = await Gpu.create();
  lost.device.destroy();
  await new Promise((r) => setTimeout(r, 50));
  try {
    lost.buffer('after loss', 16);
    out.lost = null;
  } catch (e) {
    out.lost = { kind: (e as { kind?: string }).kind, message: (e as Error).message };
  }
  return out;
}

/**
 * A device lost in the middle of an epoch: the trainer must reject with GpuError('lost'), and
 * the last epoch's checkpoint must resume on a new device exactly as an uninterrupted run.
 */
/**
 * Exact resume under the hardware plan: epochs 1 and 2 straight, against epoch 1, a checkpoint,
 * and epoch 2 on a new runtime opened from the checkpoint (the opener takes its plan) — and one
 * built under the adapter's plan that imports the checkpoint's weights alone.
 */
export async function resumeUnderPlan() {
  const count = 384;
  const pixels = new Uint8Array(count * 784);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  const config = { sizes: { D: 784, hidden: [32], L: 4 }, batchSize: 64, seed: 6, adam: adamAt(1e-3) };
  const fresh = async (plan?: KernelPlan, checkpoint?: Uint8Array) => {
    const g = await Gpu.create();
    const images = { pixels, count };
    const { model, trainer } = await openModel(g, {
      sizes: config.sizes,
      job: { batchSize: config.batchSize, seed: config.seed, lr: config.adam.lr },
      train: images,
      test: images,
      plan,
      checkpoint,
      stepsPerSubmit: 2,
    });
    return { g, model, trainer };
  };
  const hardware = planFor(false);
  const straight = await fresh(hardware);
  await straight.trainer.trainEpoch(1);
  const straightEpoch2 = (await straight.trainer.trainEpoch(2)).averageLoss;
  straight.g.destroy();
  const first = await fresh(hardware);
  await first.trainer.trainEpoch(1);
  const checkpoint = encodeRunCheckpoint(first.model.layout, await first.model.exportState(), {
    epoch: 1,
    seed: config.seed,
    plan: first.model.plan,
  });
  first.g.destroy();
  const resume = async (opened: Awaited<ReturnType<typeof fresh>>) => {
    const loss = (await opened.trainer.trainEpoch(2)).averageLoss;
    const kind = opened.model.plan.kind;
    opened.g.destroy();
    return { loss, kind };
  };
  const ignoring = await fresh();
  ignoring.model.importState(decodeCheckpoint(checkpoint, ignoring.model.layout));
  const recorded = readRunMetadata(checkpointSizes(checkpoint).metadata).plan;
  return {
    straightEpoch2,
    adopted: await resume(await fresh(undefined, checkpoint)),
    ignored: await resume(ignoring),
    recordedKind: recorded?.kind,
  };
}

export async function lostDevice() {
  const count = 640;
  const pixels = new Uint8Array(count * 784);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
  const config = {
    sizes: { D: 784, hidden: [64], L: 8 },
    batchSize: 64,
    seed: 5,
    adam: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
  };
  const fresh = async () => {
    const g = await Gpu.create();
    const images = uploadImages(g, 'images', pixels, count);
    const model = await VaeModel.create(g, { ...config, train: images, test: images });
    return { g, model, trainer: new Trainer(model, { stepsPerSubmit: 1 }) };
  };
  // Uninterrupted: epochs 1 and 2.
  const straight = await fresh();
  await straight.trainer.trainEpoch(1);
  const straightEpoch2 = await straight.trainer.trainEpoch(2);
  straight.model.destroy();
  // Interrupted: epoch 1, a checkpoint, then the device dies three submits into epoch 2.
  const a = await fresh();
  await a.trainer.trainEpoch(1);
  const checkpoint = encodeCheckpoint(a.model.layout, { ...(await a.model.exportState()), metadata: { epoch: '1' } });
  let polls = 0;
  let error: { name: string; kind?: string; message: string } | null = null;
  try {
    await a.trainer.trainEpoch(2, undefined, () => {
      if (++polls === 3) a.g.device.destroy();
      return false;
    });
  } catch (e) {
    error = { name: (e as Error).name, kind: (e as { kind?: string }).kind, message: (e as Error).message };
  }
  // Resume on a new device from the checkpoint.
  const b = await fresh();
  b.model.importState(decodeCheckpoint(checkpoint, b.model.layout));
  const resumedEpoch2 = await b.trainer.trainEpoch(2);
  b.model.destroy();
  return { error, straight: straightEpoch2.averageLoss, resumed: resumedEpoch2.averageLoss };
}

/** The quad self-check with `layout`, on a Gpu of its own so nothing is cached from earlier tests. */
export async function quadCheck(layout: QuadLayout, entry?: GPU): Promise<boolean> {
  const g = await Gpu.create({ gpu: entry });
  try {
    return await quadSharingWorks(g, layout);
  } finally {
    g.destroy();
    g.device.destroy();
  }
}

export async function adapter(entry?: GPU) {
  const g = await gpu(entry);
  return { features: [...g.device.features], hasTimestamps: g.hasTimestamps };
}

/** Destroys the shared runtime of `entry` (and its device), for a host that is done with it. */
export async function releaseRuntime(entry?: GPU): Promise<void> {
  const g = runtimes.get(entry);
  runtimes.delete(entry);
  if (!g) return;
  const runtime = await g;
  runtime.destroy();
  runtime.device.destroy();
}
