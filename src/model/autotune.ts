/**
 * The opt-in start-up autotune every host calls (the CLI's headless page, the training page, the
 * bench): the tuner's rules (src/gpu/tuner.ts) given real GPU callbacks at the model's real
 * shapes, behind a cache keyed by the adapter, the browser's major version, the engine's kernels
 * and the shapes.
 *
 * - The products are the matmuls and convolutions of the model's own training step, read from the
 *   dispatches a scratch model builds (matmulProductOf, convProductOf), so the tuner times exactly
 *   what the step runs — shape, transposes or conv geometry, and fused epilogues — keyed as the
 *   plan keys it (matmulKey, convKey).
 * - `time` dispatches one product back to back on scratch buffers of its own, on the span timer
 *   (GPU timestamps, else the wall clock).
 * - `check` trains CHECK_STEPS steps on scratch models — fresh from the same seed, at the real
 *   sizes and batch — under the base plan and under the tuned one, and compares the losses.
 *
 * Everything is made inside `gpu.collecting` and released before returning: the model the host
 * trains is built afterwards, under the returned plan, and tuning never sees its buffers. Every
 * candidate is built by passing its plan (to the opener, to matmulOp): nothing is set on the
 * runtime, so nothing has to be restored.
 */
import { browserVersion, isLavapipeInfo } from '../gpu/adapter';
import {
  convGeometry,
  convOp,
  convOutputSize,
  convProductKey,
  convProductOf,
  plannedConvKernel,
  productOf,
  type ConvBuffers,
  type ConvProductOf,
} from '../gpu/conv-ops';
import { CONV_SPLIT_ALTERNATIVES, CONV_TUNE_ALTERNATIVES, convTuneAlternatives } from '../gpu/conv-plan';
import type { Dispatch, Gpu } from '../gpu/device';
import { matmulOp, matmulProductOf, matmulUsesQuads, plannedMatmulKernel, type MatmulProduct } from '../gpu/ops';
import {
  matmulKey,
  TUNER_REGISTER_TILES,
  type ConvChoice,
  type KernelPlan,
  type MatmulChoice,
  type PlanChoice,
} from '../gpu/plan';
import { spanTimer } from '../gpu/timing';
import {
  convProductToTune,
  describeChoice,
  formatTuneReport,
  productToTune,
  tuneCacheKey,
  tunePlan,
  tuneWithCache,
  type ProductToTune,
  type TuneCache,
  type TuneReport,
} from '../gpu/tuner';
import type { VaeSizes } from './graph';
import { openModel } from './open';
import { DivergenceError, Trainer } from './trainer';
import type { VaeModel } from './vae';

/** Training steps of the end-to-end check, all in one submit (as many as a host's submit holds). */
export const CHECK_STEPS = 16;

/**
 * How close the tuned plan's per-step losses must be to the base plan's: |tuned − base| ≤
 * CHECK_RTOL·scale at every step, where scale is the largest |base loss| over the check's steps
 * (checkScale). Not bit equality, because a different kernel may sum K in a different order
 * (split-K adds four partial sums; the tiled kernel walks K in tiles), which moves the last bits
 * of a product, and those differences pass through 16 Adam updates. The tolerance sits far above
 * those honest differences and far below what a wrong run gives, such as one at a learning rate
 * 1 % off: test/autotune.test.ts forces each candidate on every product to check both sides, and
 * bench/README.md has the figures.
 */
export const CHECK_RTOL = 1e-5;

/**
 * The loss scale differences are measured against: the largest |loss| of the base run's steps.
 * Not each step's own |loss|: a Gaussian likelihood's loss per pixel, ½·log 2π + log σ +
 * (x − μ)²/(2σ²), has a negative constant part for σ below e^−0.92 ≈ 0.4, so the batch loss can
 * pass through 0 as training brings the squared error down, and a difference relative to a loss
 * near 0 is huge for an honest plan whose sums carry the same float32 rounding as ever. The
 * rounding scales with the terms being summed, which the largest loss (the untrained first
 * steps') bounds; it cannot vanish, as no run's 16 losses are all 0.
 */
function checkScale(base: Float32Array): number {
  let scale = 0;
  for (const b of base) scale = Math.max(scale, Math.abs(b));
  return scale;
}

/**
 * The choices tried for every product besides the base plan's own: the register tiles, split-K
 * and the workgroup-memory tiled kernel at both of its tiles.
 */
export const TUNE_ALTERNATIVES: readonly MatmulChoice[] = [
  { variant: 'register', tileM: 8, tileN: 4 },
  { variant: 'register', tileM: 4, tileN: 4 },
  { variant: 'splitK', tileM: 4, tileN: 1 },
  { variant: 'tiled', tileM: 64, tileN: 64 },
  { variant: 'tiled', tileM: 32, tileN: 32 },
];

/**
 * Lavapipe's candidates: the register tiles, the taller and wider ones its measurements made
 * worth a try (TUNER_REGISTER_TILES), and split-K. Not the workgroup-memory tiled kernel: lavapipe
 * (Mesa 25.0.7) spends about 10 s of CPU compiling each of its 64×64 pipelines, so a start-up tune
 * would spend minutes compiling candidates that SwiftShader's measurements already rank last.
 */
export const LAVAPIPE_TUNE_ALTERNATIVES: readonly MatmulChoice[] = [
  ...TUNE_ALTERNATIVES.filter((c) => c.variant === 'register'),
  ...TUNER_REGISTER_TILES.map(([tileM, tileN]) => ({ variant: 'register' as const, tileM, tileN })),
  ...TUNE_ALTERNATIVES.filter((c) => c.variant === 'splitK'),
];

/** The candidates the tuner tries on an adapter (described by its info; undefined: a device the caller brought). */
export function tuneAlternatives(
  adapter: Pick<GPUAdapterInfo, 'vendor' | 'architecture' | 'description'> | undefined,
): readonly MatmulChoice[] {
  return adapter && isLavapipeInfo(adapter) ? LAVAPIPE_TUNE_ALTERNATIVES : TUNE_ALTERNATIVES;
}

/** FNV-1a, 32 bits, as hex: a short, stable digest for a cache key. */
function digest(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/**
 * The engine version in the cache key: a digest of the WGSL of every kernel the tuner would time
 * — each product's every candidate, compiled as plannedMatmulKernel or plannedConvKernel compiles
 * it, with the product's own transposes or conv geometry, epilogues (a conditional model's
 * reparamConditioned dz→dmulv among them) and vec4/quad path — and of the candidate lists. A
 * kernel or candidate change gives a new key, so a plan tuned for other kernels is never reused;
 * no version number has to be remembered by hand. (It once covered one option set per kernel,
 * which missed the conditioned epilogue, and then the matmuls only; plans cached under those
 * digests are tuned again.)
 */
export function engineVersion(
  products: readonly { product: MatmulProduct; quad: boolean; candidates: readonly PlanChoice[] }[],
  convs: readonly { product: ConvProductOf; candidates: readonly PlanChoice[] }[] = [],
): string {
  const kernels = new Set<string>();
  for (const { product: p, quad, candidates } of products) {
    for (const choice of candidates)
      kernels.add(plannedMatmulKernel(p.dims, p.options, p.epilogues, choice as MatmulChoice, quad).code);
  }
  for (const { product, candidates } of convs)
    for (const choice of candidates) kernels.add(plannedConvKernel(product, choice as ConvChoice));
  // Each list as a set: the order a host lists its candidates in changes no kernel and no choice.
  const lists = new Set(
    [...products, ...convs].map((p) => JSON.stringify(p.candidates.map((c) => JSON.stringify(c)).sort())),
  );
  return digest(
    [
      ...[...kernels].sort(),
      JSON.stringify(TUNE_ALTERNATIVES),
      JSON.stringify(CONV_TUNE_ALTERNATIVES),
      JSON.stringify(CONV_SPLIT_ALTERNATIVES),
      ...[...lists].sort(),
    ].join('\n'),
  );
}

/** The browser's major version from its user agent ("Chrome/156.…"), 0 when it names none. */
export function browserMajor(userAgent: string): number {
  return Number(/(?:Chrome|Chromium|Firefox|Version)\/(\d+)/.exec(userAgent)?.[1] ?? 0);
}

export interface AutotuneJob {
  sizes: VaeSizes;
  batchSize: number;
  seed: number;
  lr: number;
  /** Training images as bytes (`pixels` = count·D); the check cycles through them for CHECK_STEPS batches. */
  images: Uint8Array;
  count: number;
  /** A conditional VAE's class of each image (the check model needs them on the GPU). */
  labels?: ArrayLike<number>;
  /** β and the KL warm-up the run trains with, so the check runs the run's objective. */
  objective?: { beta?: number; klWarmup?: number };
  /** Where tuned plans are kept between starts (omitted: tune every time). */
  cache?: TuneCache;
  /** For the cache key: navigator.userAgent's major version (browserMajor); 0 outside a browser. */
  browserMajor: number;
  /**
   * For the cache key: the WebGPU implementation's full version where no browser names it — in
   * Node, Dawn's binding and the Vulkan driver it runs on (src/node/webgpu.ts runtimeVersion).
   * Omitted: the browser's full version (browserVersion), as a page has it.
   */
  runtimeVersion?: string;
}

export type AutotuneResult =
  | { from: 'cache'; plan: KernelPlan; key: string }
  | {
      from: 'tuner';
      plan: KernelPlan;
      key: string;
      report: TuneReport;
      /** The check's largest |tuned − base| over its steps ÷ its largest |base| (largestDifference; null when no check ran). */
      checkDifference: number | null;
    };

/** One product's scratch dispatches, per choice, built on first use. */
type Scratch = ({ kind: 'matmul'; product: MatmulProduct } | { kind: 'conv'; product: ConvProductOf }) & {
  built: Map<string, Promise<Dispatch>>;
};

/**
 * Tunes `base` (default: the adapter's plan) for `job`, or takes the plan cached for the same
 * key, and returns it.
 */
export async function autotunePlan(
  gpu: Gpu,
  job: AutotuneJob,
  base: KernelPlan = gpu.defaultPlan,
): Promise<AutotuneResult> {
  const made: GPUBuffer[] = [];
  try {
    return await gpu.collecting(made, async () => {
      const checkImages = cycleImages(job, CHECK_STEPS * job.batchSize);
      // The base plan's check model also yields the step's products, from its own dispatches;
      // it trains only if a check is needed (not on a cache hit, nor when nothing changed).
      const baseModel = await checkModel(gpu, base, job, checkImages);
      let baseLosses: Promise<Float32Array> | undefined;
      const scratch = new Map<string, Scratch>();
      for (const d of baseModel.trainStep(job.batchSize)) {
        const product = matmulProductOf(d);
        const conv = convProductOf(d);
        // Two products of one key share the plan's override; the first one's epilogues are timed.
        if (product) {
          const key = matmulKey({ ...product.dims, transA: product.options.transA, transB: product.options.transB });
          if (!scratch.has(key)) scratch.set(key, { kind: 'matmul', product, built: new Map() });
        } else if (conv) {
          const key = convProductKey(conv);
          if (!scratch.has(key)) scratch.set(key, { kind: 'conv', product: conv, built: new Map() });
        }
      }
      const products: ProductToTune[] = [];
      const timed: Parameters<typeof engineVersion>[0][number][] = [];
      const timedConvs: { product: ConvProductOf; candidates: readonly PlanChoice[] }[] = [];
      for (const [, s] of scratch) {
        if (s.kind === 'conv') {
          const { layer, input, pass } = s.product;
          const product = productOf(layer, pass);
          const p = convProductToTune(base, product, convGeometry(layer, input), convTuneAlternatives(gpu.software));
          products.push(p);
          timedConvs.push({ product: s.product, candidates: p.candidates });
          continue;
        }
        const { product } = s;
        const shape = { ...product.dims, transA: product.options.transA, transB: product.options.transB };
        const quad = await matmulUsesQuads(gpu, product.dims, product.options);
        const p = productToTune(base, shape, quad, tuneAlternatives(gpu.adapter ?? gpu.device.adapterInfo));
        products.push(p);
        timed.push({ product, quad, candidates: p.candidates });
      }
      const adapter = gpu.adapter ?? {
        vendor: '',
        architecture: '',
        device: '',
        description: 'a device the caller brought',
      };
      const key = tuneCacheKey({
        adapter,
        browserMajor: job.browserMajor,
        browserVersion: job.runtimeVersion ?? (await browserVersion()),
        engineVersion: engineVersion(timed, timedConvs),
        shapes: products.map((p) => p.key),
      });
      const cache: TuneCache = job.cache ?? { get: async () => undefined, put: async () => {} };
      const timer = spanTimer(gpu);
      let checkDifference: number | null = null;
      try {
        const result = await tuneWithCache(key, cache, () =>
          tunePlan({
            base,
            products,
            clock: timer.clock,
            time: async (productKey, choice, repeats) => {
              const s = scratch.get(productKey)!;
              const name = describeChoice(choice);
              let d = s.built.get(name);
              if (!d) {
                d =
                  s.kind === 'matmul'
                    ? scratchDispatch(gpu, base, productKey, s.product, choice)
                    : scratchConvDispatch(gpu, base, productKey, s.product, choice);
                s.built.set(name, d);
              }
              return timer.time([await d], repeats);
            },
            check: async (plan) => {
              baseLosses ??= checkLosses(baseModel);
              const [b, t] = [await baseLosses, await checkLosses(await checkModel(gpu, plan, job, checkImages))];
              checkDifference = largestDifference(b, t);
              return lossesMatch(b, t);
            },
          }),
        );
        return result.from === 'cache'
          ? { from: 'cache', plan: result.plan, key }
          : { from: 'tuner', plan: result.plan, key, report: result.report, checkDifference };
      } finally {
        timer.destroy();
      }
    });
  } finally {
    for (const b of made) gpu.release(b);
  }
}

/** Every step's loss within CHECK_RTOL·checkScale of the base plan's; a non-finite loss never matches. */
export function lossesMatch(base: Float32Array, tuned: Float32Array): boolean {
  const scale = checkScale(base);
  return (
    base.length === tuned.length &&
    base.every(
      (b, i) => Number.isFinite(b) && Number.isFinite(tuned[i]) && Math.abs(tuned[i] - b) <= CHECK_RTOL * scale,
    )
  );
}

/** The largest difference of two loss sequences relative to checkScale (NaN when either has a non-finite loss). */
export function largestDifference(base: Float32Array, tuned: Float32Array): number {
  const scale = checkScale(base);
  let worst = 0;
  for (let i = 0; i < base.length; i++) worst = Math.max(worst, Math.abs(tuned[i] - base[i]) / scale);
  return worst;
}

/** `n` images (and their labels) taken from the job's in order, from the start again when it has fewer. */
function cycleImages(job: AutotuneJob, n: number): CheckImages {
  const D = job.sizes.D;
  if (job.count < 1 || job.images.length < job.count * D)
    throw new Error(
      `autotune: ${job.count} images of ${D} bytes need ${job.count * D} bytes, got ${job.images.length}`,
    );
  const pixels = new Uint8Array(n * D);
  for (let i = 0; i < n; i++) pixels.set(job.images.subarray((i % job.count) * D, ((i % job.count) + 1) * D), i * D);
  const labels = job.labels && Uint8Array.from({ length: n }, (_, i) => job.labels![i % job.count]);
  return { pixels, labels };
}

export interface CheckImages {
  pixels: Uint8Array;
  labels?: Uint8Array;
}

/** A fresh model (the job's seed, sizes and batch) built under `plan`, training on `images`. */
export async function checkModel(gpu: Gpu, plan: KernelPlan, job: AutotuneJob, images: CheckImages): Promise<VaeModel> {
  const data = { pixels: images.pixels, count: CHECK_STEPS * job.batchSize, labels: images.labels };
  const opened = await openModel(gpu, {
    sizes: job.sizes,
    job: { batchSize: job.batchSize, seed: job.seed, lr: job.lr, ...job.objective },
    train: data,
    test: data,
    plan,
  });
  return opened.model;
}

/** The per-step losses of CHECK_STEPS training steps (one epoch of the check images, one submit). */
export async function checkLosses(model: VaeModel): Promise<Float32Array> {
  const losses = new Float32Array(CHECK_STEPS).fill(NaN);
  try {
    await new Trainer(model, { stepsPerSubmit: CHECK_STEPS }).trainEpoch(1, (l) => losses.set(l.losses, l.firstBatch));
  } catch (e) {
    if (!(e instanceof DivergenceError)) throw e; // a diverging run's losses are NaN, which never match
  }
  return losses;
}

/** A scratch buffer of n values in ±1, a hash of the index and `salt` (the values do not change a product's time). */
function scratchValues(gpu: Gpu, label: string, n: number, salt: number) {
  return gpu.bufferWith(
    `autotune ${label}`,
    Float32Array.from({ length: n }, (_, i) => (Math.imul(i + salt, 2654435761) >>> 8) / 2 ** 23 - 1),
  );
}

/** Scratch buffers of the product's sizes (A, B and the epilogues' inputs hold values in ±1) and its dispatch under `choice`. */
async function scratchDispatch(
  gpu: Gpu,
  base: KernelPlan,
  key: string,
  p: MatmulProduct,
  choice: PlanChoice,
): Promise<Dispatch> {
  const { M, N, K } = p.dims;
  const e = p.epilogues;
  const filled = (label: string, n: number, salt: number) => scratchValues(gpu, label, n, salt);
  const candidate: KernelPlan = { ...base, overrides: { ...base.overrides, [key]: choice } };
  return matmulOp(
    gpu,
    `autotune ${key} ${describeChoice(choice)}`,
    p.dims,
    p.options,
    {
      A: filled('A', M * K, 1),
      B: filled('B', K * N, 2),
      C: gpu.buffer('autotune C', (e.reparamBackward ? 2 : 1) * M * N * 4), // dmulv is (M, 2N) when dz continues into it
      bias: e.bias ? filled('bias', N, 3) : undefined,
      mask: e.reluMask ? filled('mask', M * N, 4) : undefined,
      rowSum: e.rowSum ? gpu.buffer('autotune rowSum', M * 4) : undefined,
      mulv: e.reparamBackward ? filled('mulv', 2 * M * N, 5) : undefined,
      eps: e.reparamBackward ? filled('eps', M * N, 6) : undefined,
    },
    candidate,
  );
}

/**
 * Scratch buffers of a conv product's sizes (its inputs hold values in ±1) and its product
 * dispatch under `choice` (not ConvTranspose2d's channel sum, which no choice changes).
 */
async function scratchConvDispatch(
  gpu: Gpu,
  base: KernelPlan,
  key: string,
  p: ConvProductOf,
  choice: PlanChoice,
): Promise<Dispatch> {
  const { layer, input } = p;
  const k2 = layer.kernel * layer.kernel;
  const x = input.batch * layer.inC * input.H * input.W;
  const y = input.batch * layer.outC * convOutputSize(layer, input.H) * convOutputSize(layer, input.W);
  const filled = (label: string, n: number, salt: number) => scratchValues(gpu, label, n, salt);
  const W = filled('W', layer.inC * layer.outC * k2, 1);
  const buffers: ConvBuffers[typeof p.pass] =
    p.pass === 'forward'
      ? {
          X: filled('X', x, 2),
          W,
          Y: gpu.buffer('autotune Y', 4 * y),
          ...(p.bias ? { bias: filled('bias', layer.outC, 3) } : {}),
        }
      : p.pass === 'dX'
        ? {
            dY: filled('dY', y, 2),
            W,
            dX: gpu.buffer('autotune dX', 4 * x),
            ...(p.epilogue.mask !== 'none' ? { mask: filled('mask', x, 4) } : {}),
          }
        : {
            dY: filled('dY', y, 2),
            X: filled('X', x, 3),
            dW: gpu.buffer('autotune dW', 4 * layer.inC * layer.outC * k2),
            ...(p.db ? { db: gpu.buffer('autotune db', 4 * layer.outC) } : {}),
          };
  const candidate: KernelPlan = { ...base, overrides: { ...base.overrides, [key]: choice } };
  const [d] = await convOp(
    gpu,
    `autotune ${key} ${describeChoice(choice)}`,
    layer,
    input,
    p.pass,
    buffers,
    p.epilogue,
    candidate,
  );
  return d!;
}

/** A plan in a few words: its kind and the products the tuner changed. */
export function describePlan(plan: KernelPlan): string {
  const changes = Object.entries(plan.overrides).map(([key, c]) => `${key} → ${describeChoice(c)}`);
  return `the ${plan.kind} plan${changes.length ? ` with ${changes.join(', ')}` : ', unchanged'}`;
}

/** What a host prints about an autotune: the tuner's report and the check, or where the cached plan came from. */
export function autotuneLines(result: AutotuneResult): string {
  if (result.from === 'cache') {
    return `kernel plan from the tune cache (tuned at an earlier start with this adapter, browser, engine and shapes): ${describePlan(result.plan)}`;
  }
  const check =
    result.checkDifference === null
      ? ''
      : `\n  end-to-end check: ${CHECK_STEPS} training steps, largest loss difference ` +
        `${result.checkDifference.toExponential(1)} of the largest loss (allowed ${CHECK_RTOL})`;
  return `${formatTuneReport(result.report)}${check}\n  running ${describePlan(result.plan)}`;
}
