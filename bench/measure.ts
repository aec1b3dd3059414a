/**
 * The bench's measurements of the engine, on whatever WebGPU the host brings: headless Chromium's
 * page (bench/page.ts) or Dawn in Node (`--runtime node`, bench/bench.ts). GPU time from timestamp
 * queries (pass begin/end around back-to-back copies of a dispatch, as many as make a span of
 * MIN_SPAN_MS), falling back to wall time over the same repetitions when the adapter lacks
 * timestamp-query. Results are plain data, so they cross from a page to Node as JSON.
 */
import { convInvocations, convProductShape, type ConvProduct, type ConvTile } from '../shaders/conv.wgsl';
import type { MatmulOptions } from '../shaders/matmul.wgsl';
import { convGeometry, productOf, type ConvPass } from '../src/gpu/conv-ops';
import { chooseConv, convKey } from '../src/gpu/conv-plan';
import type { Dispatch, Gpu } from '../src/gpu/device';
import { matmulOp } from '../src/gpu/ops';
import { planFor, type KernelPlan } from '../src/gpu/plan';
import { spanTimer } from '../src/gpu/timing';
import { MIN_SPAN_MS, type TuneCache } from '../src/gpu/tuner';
import { autotuneLines, autotunePlan } from '../src/model/autotune';
import { RunGate, runTraining } from '../src/model/driver';
import { vaeGraph, type VaeSizes } from '../src/model/graph';
import { convLayer } from '../src/model/layers/conv2d';
import { openModel } from '../src/model/open';
import { modelSizes } from '../src/model/spec';
import type { Trainer } from '../src/model/trainer';
import type { VaeModel } from '../src/model/vae';

export interface Timing {
  /** Milliseconds per repetition: median, and the 10th/90th percentiles over the samples. */
  median: number;
  p10: number;
  p90: number;
  source: 'timestamp' | 'wall';
  /** Repetitions per timed span (grown until a span lasts MIN_SPAN_MS). */
  reps: number;
}

export interface MatmulCase {
  M: number;
  N: number;
  K: number;
  options: Partial<MatmulOptions> & Pick<MatmulOptions, 'transA' | 'transB'>;
}

function summarize(samples: number[], source: Timing['source']): Omit<Timing, 'reps'> {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { median: at(0.5), p10: at(0.1), p90: at(0.9), source };
}

/**
 * A timed span lasts at least this long (the tuner's figure, one source): Chrome's timestamps are
 * exact only with WebGPU developer features on (100 µs steps otherwise), and wall clocks jitter,
 * so a span is never near either.
 */
export { MIN_SPAN_MS };

/**
 * Times `dispatches` (one repetition) `samples` times after a warm-up, each sample a span of
 * back-to-back repetitions: `reps` at least, doubled until a span lasts MIN_SPAN_MS.
 */
export async function time(g: Gpu, dispatches: readonly Dispatch[], minReps: number, samples: number): Promise<Timing> {
  // The tuner's span timer (src/gpu/timing.ts): one pass of back-to-back repetitions, timed by
  // timestamp queries at its beginning and end, or by the wall clock to onSubmittedWorkDone.
  const timer = spanTimer(g);
  try {
    let reps = minReps;
    await timer.time(dispatches, reps); // warm-up: first use of the pipelines and buffers
    // Grow the span, on the clock that times it, until it is long enough; then sample at that count,
    // and start over at twice the count if the samples' median span still falls short.
    while ((await timer.time(dispatches, reps)) < MIN_SPAN_MS && reps < 1 << 14) reps *= 2;
    let times: number[] = [];
    for (;;) {
      times = [];
      for (let i = 0; i < samples; i++) times.push((await timer.time(dispatches, reps)) / reps);
      if (summarize(times, 'wall').median * reps >= MIN_SPAN_MS || reps >= 1 << 14) break;
      reps *= 2;
    }
    return { ...summarize(times, timer.clock), reps };
  } finally {
    timer.destroy();
  }
}

/**
 * The models the bench trains, on MNIST's 1×28×28 images: `mlp`, the reference model (784-400-20,
 * the default), and `conv`, the conv preset (src/model/spec.ts). The tfjs peer has both.
 */
export const BENCH_MODELS = ['mlp', 'conv'] as const;
export type BenchModel = (typeof BENCH_MODELS)[number];

export function benchSizes(model: BenchModel = 'mlp'): VaeSizes {
  return model === 'mlp' ? { D: 784, hidden: [400], L: 20 } : modelSizes(model, { input: [1, 28, 28] });
}

/** A conv product of the step as the plans launch it (the launch table's conv columns). */
export interface ConvLaunch {
  product: ConvProduct;
  /** rows × cols × K of the implicit matrix product (shaders/conv.wgsl.ts convProductShape). */
  rows: number;
  cols: number;
  K: number;
  /** The tile of the plan in use (`tuned`: an override of that plan's, a tuner's or a checkpoint's, chose it), and of the hardware plan with the invocations it launches. */
  tile: ConvTile;
  tuned: boolean;
  hardwareTile: ConvTile;
  hardwareInvocations: number;
}

/**
 * The conv products of a model's training step at `batch`, keyed by the label their dispatches
 * carry (`train[128] encoder.2 dW`): the layer's product, its shape, and the tile each plan
 * chooses for it (src/gpu/conv-plan.ts).
 */
export function convLaunches(sizes: VaeSizes, batch: number, plan: KernelPlan): Map<string, ConvLaunch> {
  const out = new Map<string, ConvLaunch>();
  for (const layer of vaeGraph(sizes)) {
    if (!('unit' in layer) || (layer.kind !== 'Conv2d' && layer.kind !== 'ConvTranspose2d')) continue;
    const transpose = layer.kind === 'ConvTranspose2d';
    const g = convGeometry(convLayer(transpose, layer.args as number[]), { batch, H: layer.in[1]!, W: layer.in[2]! });
    for (const pass of ['forward', 'dX', 'dW'] as ConvPass[]) {
      const product = productOf({ transpose }, pass);
      const hardwareTile = chooseConv(planFor(false), product, g);
      out.set(`train[${batch}] ${layer.names[0]}${pass === 'forward' ? '' : ` ${pass}`}`, {
        product,
        ...convProductShape(product, g),
        tile: chooseConv(plan, product, g),
        tuned: convKey(product, g) in plan.overrides,
        hardwareTile,
        hardwareInvocations: convInvocations({ ...hardwareTile, product }, g),
      });
    }
  }
  return out;
}

/** A dispatch's launch: its workgroups and the invocations they hold. */
function occupancy(d: Dispatch): { workgroups: readonly number[]; invocations: number } {
  return {
    workgroups: d.workgroups,
    invocations: d.workgroups[0] * d.workgroups[1] * d.workgroups[2] * d.kernel.workgroupSize,
  };
}

/**
 * Warm-up: exactly one submit's worth of steps, so first-use costs (pipeline creation in the
 * driver, page faults on the dataset) are not billed to the epoch. A direct call, because its
 * stop is "after the first submit": a RunGate stopped from onLosses would let up to maxInFlight
 * more submits through, since losses come back asynchronously.
 */
async function warmUp(trainer: Trainer): Promise<void> {
  let n = 0;
  await trainer.trainEpoch(0, undefined, () => n++ > 0);
}

/**
 * One epoch trained by the engine's one driver, timed on the wall clock around awaited work; its
 * traffic is what the runtime measured at its WebGPU calls (Gpu.counters()), not a tally the
 * trainer keeps.
 */
async function timedEpoch(trainer: Trainer, number: number) {
  const { model } = trainer;
  const g = model.gpu;
  const before = g.counters();
  const {
    epochs: [epoch],
  } = await runTraining(
    trainer,
    { firstEpoch: number, lastEpoch: number, test: false, images: false },
    new RunGate(),
    {},
  );
  const run = g.countersSince(before);
  return {
    steps: epoch.batches,
    trainSeconds: epoch.seconds,
    averageLoss: epoch.trainLoss,
    counters: {
      /** The training step's dispatch list: a fact of the program, beside the measured count. */
      dispatchesPerStep: model.trainStep(model.config.batchSize).length,
      dispatches: run.dispatches,
      submits: run.submits,
      bytesUploaded: run.bytesWritten,
      bytesReadBack: run.bytesRead,
      buffersCreated: run.buffersCreated,
    },
  };
}

/** What the autotune needs from its host besides the images: the cache, and what the cache key names the runtime by. */
export interface BenchAutotuneHost {
  cache: TuneCache;
  /** The browser's major version (0 outside a browser). */
  browserMajor: number;
  /** The WebGPU implementation's full version, where the host knows it better than the browser's user agent does. */
  runtimeVersion?: string;
}

/** The engine's measurements on one Gpu. */
export class EngineBench {
  /** The plan `--autotune` chose, which every later section passes to what it builds (none: the adapter's default). */
  private tunedPlan: KernelPlan | undefined;

  constructor(readonly gpu: Gpu) {}

  private get plan(): KernelPlan {
    return this.tunedPlan ?? this.gpu.defaultPlan;
  }

  async matmul(c: MatmulCase, reps = 20, samples = 7): Promise<Timing & { gflops: number }> {
    const g = this.gpu;
    const { M, N, K } = c;
    const A = g.buffer('A', M * K * 4);
    const B = g.buffer('B', K * N * 4);
    const C = g.buffer('C', M * N * 4);
    const d = await matmulOp(g, 'bench matmul', { M, N, K }, c.options, { A, B, C }, this.plan);
    const t = await time(g, [d], reps, samples);
    g.release(A);
    g.release(B);
    g.release(C);
    return { ...t, gflops: (2 * M * N * K) / (t.median * 1e6) };
  }

  /** Per-dispatch GPU time of one training step, and the whole step, on synthetic images. */
  async step(c: { batchSize: number; reps: number; samples: number; model?: BenchModel }) {
    const g = this.gpu;
    const sizes = benchSizes(c.model);
    const D = sizes.D;
    const count = c.batchSize * 4;
    const pixels = new Uint8Array(count * D);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 2654435761) >>> 24;
    const images = { pixels, count };
    const open = (plan: KernelPlan) =>
      openModel(g, {
        sizes,
        job: { batchSize: c.batchSize, seed: 1, lr: 1e-3 },
        train: images,
        test: images,
        plan,
      });
    const { model, plan } = await open(this.plan);
    const dispatches = model.trainStep(c.batchSize);
    // Each conv product's shape and the tiles the plans give it, matched to its dispatch by label.
    const convs = convLaunches(sizes, c.batchSize, plan);
    const perDispatch = [];
    for (const d of dispatches) {
      g.write(model.trainState, new Uint32Array([0, 0]));
      const conv = d.kernel.label === 'conv' ? convs.get(d.bindGroup.label) : undefined;
      perDispatch.push({
        label: d.bindGroup.label,
        cost: d.cost,
        ...occupancy(d),
        ...(conv ? { conv } : {}),
        ...(await time(g, [d], c.reps, c.samples)),
      });
    }
    // The same step under the hardware plan, built but not timed: its launch sizes are the
    // occupancy evidence a software adapter can give for a GPU.
    const { model: hardware } = await open(planFor(false));
    const hardwarePlan = hardware.trainStep(c.batchSize).map((d) => ({ label: d.bindGroup.label, ...occupancy(d) }));
    // The whole step as training records it. (Each repetition advances the batch index past the
    // four synthetic batches; the reads stay in bounds through robust buffer access.)
    g.write(model.trainState, new Uint32Array([0, 0]));
    const whole = await time(g, dispatches, 1, c.samples);
    model.destroy();
    return {
      plan: Object.keys(plan.overrides).length ? `${plan.kind} (tuned)` : plan.kind,
      perDispatch,
      hardwarePlan,
      whole,
      dispatchesPerStep: dispatches.length,
    };
  }

  /**
   * Training as `npm run train` does it, on real MNIST: the steps of `train` (one epoch when it
   * holds the set, trained by the engine's one driver) and, unless told not to, one full test pass, timed on the wall
   * clock around awaited work. The epoch's traffic is what the runtime measured at its WebGPU
   * calls (Gpu.counters()), not a tally the trainer keeps.
   */
  async endToEnd(c: {
    train: Uint8Array;
    trainCount: number;
    test: Uint8Array;
    testCount: number;
    batchSize: number;
    stepsPerSubmit: number;
    /** Also time one full test pass (false: the training steps only, for short blocks). */
    testPass?: boolean;
    model?: BenchModel;
  }) {
    const g = this.gpu;
    const { model, trainer } = await openModel(g, {
      sizes: benchSizes(c.model),
      job: { batchSize: c.batchSize, seed: 1, lr: 1e-3 },
      train: { pixels: c.train, count: c.trainCount },
      test: { pixels: c.test, count: c.testCount },
      plan: this.plan,
      stepsPerSubmit: c.stepsPerSubmit,
    });
    await warmUp(trainer);
    const epoch = await timedEpoch(trainer, 1);
    const testPass = c.testPass === false ? undefined : await trainer.testPass(1);
    model.destroy();
    return { ...epoch, testSeconds: testPass?.seconds };
  }

  /** The model the interleaved blocks train (openBlocks … closeBlocks). */
  private blocks: { model: VaeModel; trainer: Trainer; epoch: number } | undefined;

  /**
   * Interleaved comparisons: opens the model once, on `train` (one block's images: a block is
   * one epoch of them, in one submit), and warms it up; each `block()` then times one such epoch
   * on the wall clock, with the runtime's counters, until closeBlocks.
   */
  async openBlocks(c: { train: Uint8Array; trainCount: number; batchSize: number; model?: BenchModel }) {
    this.closeBlocks();
    const steps = Math.ceil(c.trainCount / c.batchSize);
    const images = { pixels: c.train, count: c.trainCount };
    const { model, trainer } = await openModel(this.gpu, {
      sizes: benchSizes(c.model),
      job: { batchSize: c.batchSize, seed: 1, lr: 1e-3 },
      train: images,
      test: images,
      plan: this.plan,
      stepsPerSubmit: steps,
    });
    this.blocks = { model, trainer, epoch: 1 };
    await warmUp(trainer);
  }

  async block() {
    if (!this.blocks) throw new Error('bench: block() before openBlocks()');
    return timedEpoch(this.blocks.trainer, this.blocks.epoch++);
  }

  closeBlocks() {
    this.blocks?.model.destroy();
    this.blocks = undefined;
  }

  /**
   * `--autotune`: tunes the plan at the VAE's real shapes (src/model/autotune.ts, the hosts' one
   * autotune), through the host's cache; every later section builds under it (tunedPlan).
   */
  async autotune(
    c: { images: Uint8Array; count: number; batchSize: number; model?: BenchModel },
    host: BenchAutotuneHost,
  ) {
    const result = await autotunePlan(this.gpu, {
      sizes: benchSizes(c.model),
      batchSize: c.batchSize,
      seed: 1,
      lr: 1e-3,
      images: c.images,
      count: c.count,
      browserMajor: host.browserMajor,
      runtimeVersion: host.runtimeVersion,
      cache: host.cache,
    });
    this.tunedPlan = result.plan;
    return { from: result.from, key: result.key, text: autotuneLines(result), plan: result.plan };
  }

  /**
   * The engine's matmul timed the way the tfjs peer times `tf.matMul` (bench/peers/page.ts), for a
   * comparison under one clock: the wall clock (performance.now) around `reps` back-to-back
   * products — one submit of `reps` dispatches — ending in one readback of the whole C (mapAsync),
   * as tfjs's span ends in one data() of the last result. The plain product, no epilogue, as
   * tf.matMul computes it; the kernel the plan in use picks. `reps` doubles until a span lasts
   * MIN_SPAN_MS; the median of `samples` spans is reported per product.
   */
  async matmulWallClock(c: { cases: MatmulCase[]; samples: number }) {
    const g = this.gpu;
    const out = [];
    for (const m of c.cases) {
      const { M, N, K } = m;
      const values = (n: number) => Float32Array.from({ length: n }, (_, i) => ((i * 2654435761) >>> 24) / 128 - 1);
      const A = g.bufferWith('A', values(M * K));
      const B = g.bufferWith('B', values(K * N));
      const C = g.buffer('C', M * N * 4);
      const d = await matmulOp(g, 'bench matmul (wall clock)', { M, N, K }, m.options, { A, B, C }, this.plan);
      const span = async (reps: number) => {
        const t0 = performance.now();
        g.run(
          Array.from({ length: reps }, () => d),
          'bench matmul (wall clock)',
        );
        await g.read(C);
        return performance.now() - t0;
      };
      await span(1); // warm-up: the pipeline's first use
      let reps = 1;
      while ((await span(reps)) < MIN_SPAN_MS && reps < 1 << 14) reps *= 2;
      let times: number[];
      for (;;) {
        // as time() does: start over at twice the count if the median span fell short
        times = [];
        for (let i = 0; i < c.samples; i++) times.push((await span(reps)) / reps);
        if (summarize(times, 'wall').median * reps >= MIN_SPAN_MS || reps >= 1 << 14) break;
        reps *= 2;
      }
      g.release(A);
      g.release(B);
      g.release(C);
      const t = summarize(times, 'wall');
      out.push({
        ms: t.median,
        p10: t.p10,
        p90: t.p90,
        reps,
        samples: c.samples,
        gflops: (2 * M * N * K) / (t.median * 1e6),
      });
    }
    return out;
  }
}
