/**
 * The TensorFlow.js peer, inside the browser: the PyTorch-examples VAE written the way a tfjs
 * user writes a custom model (tf.variable weights, a loss closure, `optimizer.minimize`), and
 * plain `tf.matMul` at the engine's matmul shapes. Nothing here shares code with the engine.
 *
 * tfjs comes from its UMD bundles (page.html), the way a page loads it from a CDN.
 */
import type * as TF from '@tensorflow/tfjs';
import type * as TFWasm from '@tensorflow/tfjs-backend-wasm';

type Tf = typeof TF & { wasm: typeof TFWasm };
const tf = (globalThis as unknown as { tf: Tf }).tf;

export type Backend = 'webgpu' | 'wasm';

export interface BackendInfo {
  backend: string;
  version: string;
  /** WASM: which binary ran (SIMD, threads), the threads asked for and whether the page could have had threads. */
  wasm?: { simd: boolean; threads: boolean; threadsCount: number; crossOriginIsolated: boolean; variant: string };
  flags: Record<string, unknown>;
}

/**
 * Selects and initialises a backend; WASM binaries are served from node_modules. WASM runs on
 * `threads` threads (its threaded binary needs a cross-origin isolated page, which the bench's
 * server makes); tfjs fixes the count when the backend starts, so a page measures one count.
 */
async function setup(backend: Backend, threads = 1): Promise<BackendInfo> {
  if (backend === 'wasm') {
    tf.wasm.setWasmPaths('/node_modules/@tensorflow/tfjs-backend-wasm/dist/');
    tf.wasm.setThreadsCount(threads);
  }
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs could not initialise its ${backend} backend`);
  await tf.ready();
  const info: BackendInfo = { backend: tf.getBackend(), version: tf.version_core, flags: {} };
  if (backend === 'wasm') {
    const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    const multithread = Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'));
    if (threads > 1 && !multithread)
      throw new Error(
        `tfjs WASM on ${threads} threads needs its threaded binary, which this page cannot run (crossOriginIsolated: ${globalThis.crossOriginIsolated === true})`,
      );
    info.wasm = {
      simd,
      threads: multithread,
      threadsCount: multithread ? threads : 1,
      crossOriginIsolated: globalThis.crossOriginIsolated === true,
      variant: !simd
        ? 'plain (no SIMD, single thread)'
        : multithread
          ? `SIMD, ${threads} thread${threads > 1 ? 's' : ''} (threaded binary)`
          : 'SIMD (single thread)',
    };
  } else {
    for (const flag of [
      'WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE',
      'WEBGPU_CPU_HANDOFF_SIZE_THRESHOLD',
      'WEBGPU_MATMUL_PROGRAM_TYPE',
    ]) {
      try {
        info.flags[flag] = tf.env().get(flag);
      } catch {
        // a flag this tfjs version does not have
      }
    }
  }
  return info;
}

// ---------------------------------------------------------------- the VAE

interface Linear {
  W: TF.Variable;
  b: TF.Variable;
}

/** nn.Linear's default initialisation: weights and bias uniform in ±1/√fan_in. */
function linear(inF: number, outF: number, seed: number): Linear {
  const k = 1 / Math.sqrt(inF);
  return {
    W: tf.variable(tf.randomUniform([inF, outF], -k, k, 'float32', seed)),
    b: tf.variable(tf.randomUniform([outF], -k, k, 'float32', seed + 1)),
  };
}

const dense = (x: TF.Tensor2D, l: Linear): TF.Tensor2D => tf.add(tf.matMul(x, l.W), l.b);

function createVae(seed: number) {
  const fc1 = linear(784, 400, seed);
  const fc21 = linear(400, 20, seed + 2);
  const fc22 = linear(400, 20, seed + 4);
  const fc3 = linear(20, 400, seed + 6);
  const fc4 = linear(400, 784, seed + 8);
  /** BCE (summed) + KL of one batch, as the reference's loss_function. */
  const loss = (x: TF.Tensor2D): TF.Scalar => {
    const h1 = tf.relu(dense(x, fc1));
    const mu = dense(h1, fc21);
    const logvar = dense(h1, fc22);
    // reparameterize: z = mu + eps * exp(logvar / 2)
    const z = tf.add(mu, tf.mul(tf.randomNormal(mu.shape), tf.exp(tf.mul(0.5, logvar))));
    const logits = dense(tf.relu(dense(z as TF.Tensor2D, fc3)), fc4);
    // BCE(sigmoid(logits), x) summed over pixels and batch, in tfjs's numerically stable form.
    const bce = tf.losses.sigmoidCrossEntropy(x, logits, undefined, 0, tf.Reduction.SUM);
    // KLD = -0.5 * sum(1 + logvar - mu^2 - exp(logvar))
    const kld = tf.mul(-0.5, tf.sum(tf.sub(tf.sub(tf.add(1, logvar), tf.square(mu)), tf.exp(logvar))));
    return tf.add(bce, kld);
  };
  return { loss, variables: [fc1, fc21, fc22, fc3, fc4].flatMap((l) => [l.W, l.b]) };
}

/** A conv2d layer: filter [k, k, in, out] (tfjs's layout) and bias, initialised as nn.Conv2d's (fan-in in·k²). */
function convWeights(shape: [number, number, number, number], fanIn: number, outC: number, seed: number): Linear {
  const k = 1 / Math.sqrt(fanIn);
  return {
    W: tf.variable(tf.randomUniform(shape, -k, k, 'float32', seed)),
    b: tf.variable(tf.randomUniform([outC], -k, k, 'float32', seed + 1)),
  };
}

/**
 * The filter gradient of tf.conv2d(x, w, stride, pad) (NHWC, square, the output exactly covering
 * the padded input as in the conv preset), for backends without a Conv2DBackpropFilter kernel
 * (tfjs-WASM 4.22 has none, so its conv layers cannot train as they are): it is itself a
 * convolution, of x with dy read as a filter, batch as the channels summed over and dilated by the
 * stride — dw[ky, kx, ci, co] = Σ_b,oy,ox x[b, oy·s − p + ky, ox·s − p + kx, ci] · dy[b, oy, ox, co].
 */
function conv2dFilterGradient(x: TF.Tensor4D, dy: TF.Tensor4D, stride: number, pad: number): TF.Tensor4D {
  const xT = tf.transpose(x, [3, 1, 2, 0]) as TF.Tensor4D; // [ci, H, W, b]
  const dyT = tf.transpose(dy, [1, 2, 0, 3]) as TF.Tensor4D; // [Ho, Wo, b, co]
  const r = tf.conv2d(xT, dyT, 1, pad, 'NHWC', stride); // [ci, k, k, co]
  return tf.transpose(r, [1, 2, 0, 3]) as TF.Tensor4D;
}

/**
 * tf.conv2d and tf.conv2dTranspose (stride, pad) whose gradients run where the backend lacks
 * Conv2DBackpropFilter: the input gradients are the usual ops (each the other's), the filter
 * gradients conv2dFilterGradient. Where the backend has the kernel, the plain ops.
 */
function convOps(stride: number, pad: number) {
  const plain = {
    conv: (x: TF.Tensor4D, w: TF.Tensor4D) => tf.conv2d(x, w, stride, pad),
    convT: (x: TF.Tensor4D, w: TF.Tensor4D, out: [number, number, number, number]) =>
      tf.conv2dTranspose(x, w, out, stride, pad),
  };
  if (tf.getKernel('Conv2DBackpropFilter', tf.getBackend())) return plain;
  const conv = tf.customGrad((x, w, save) => {
    (save as (t: TF.Tensor[]) => void)([x as TF.Tensor4D, w as TF.Tensor4D]);
    const y = plain.conv(x as TF.Tensor4D, w as TF.Tensor4D);
    return {
      value: y,
      gradFunc: (dy, [xs, ws]) => [
        tf.conv2dTranspose(
          dy as TF.Tensor4D,
          ws as TF.Tensor4D,
          xs!.shape as [number, number, number, number],
          stride,
          pad,
        ),
        conv2dFilterGradient(xs as TF.Tensor4D, dy as TF.Tensor4D, stride, pad),
      ],
    };
  }) as (x: TF.Tensor4D, w: TF.Tensor4D) => TF.Tensor4D;
  // conv2dTranspose is conv2d's input gradient: its x is that conv's dy, its output that conv's x.
  const convT = (x: TF.Tensor4D, w: TF.Tensor4D, out: [number, number, number, number]) =>
    (
      tf.customGrad((xi, wi, save) => {
        (save as (t: TF.Tensor[]) => void)([xi as TF.Tensor4D, wi as TF.Tensor4D]);
        const y = plain.convT(xi as TF.Tensor4D, wi as TF.Tensor4D, out);
        return {
          value: y,
          gradFunc: (dy, [xs, ws]) => [
            plain.conv(dy as TF.Tensor4D, ws as TF.Tensor4D),
            conv2dFilterGradient(dy as TF.Tensor4D, xs as TF.Tensor4D, stride, pad),
          ],
        };
      }) as (x: TF.Tensor4D, w: TF.Tensor4D) => TF.Tensor4D
    )(x, w);
  return { conv, convT };
}

/**
 * The conv preset (src/model/spec.ts) as a tfjs user writes it, in tfjs's own NHWC layout (what
 * its conv2d computes by default; with one input channel the batch's floats are the same as
 * NCHW's): Conv2d(1,32,4,2,1), Conv2d(32,64,4,2,1), Linear(3136,256), the heads, Linear(20,256),
 * Linear(256,3136), ConvTranspose2d(64,32,4,2,1), ConvTranspose2d(32,1,4,2,1), ReLUs between.
 * Flatten and Unflatten walk 7×7×64 in NHWC order rather than NCHW's: a fixed relabelling of the
 * Linears' rows and columns, so the same model up to a permutation of its weights and the same work.
 */
function createConvVae(seed: number, B: number) {
  const c1 = convWeights([4, 4, 1, 32], 1 * 16, 32, seed);
  const c2 = convWeights([4, 4, 32, 64], 32 * 16, 64, seed + 2);
  const fc = linear(3136, 256, seed + 4);
  const fcMu = linear(256, 20, seed + 6);
  const fcLogvar = linear(256, 20, seed + 8);
  const d0 = linear(20, 256, seed + 10);
  const d2 = linear(256, 3136, seed + 12);
  // ConvTranspose2d(in, out): tfjs's conv2dTranspose filter is [k, k, out, in]; PyTorch's fan-in is out·k².
  const t5 = convWeights([4, 4, 32, 64], 32 * 16, 32, seed + 14);
  const t7 = convWeights([4, 4, 1, 32], 1 * 16, 1, seed + 16);
  const ops = convOps(2, 1);
  const conv = (x: TF.Tensor4D, l: Linear) => tf.add(ops.conv(x, l.W as TF.Tensor4D), l.b) as TF.Tensor4D;
  const convT = (x: TF.Tensor4D, l: Linear, out: [number, number, number, number]) =>
    tf.add(ops.convT(x, l.W as TF.Tensor4D, out), l.b) as TF.Tensor4D;
  const loss = (x: TF.Tensor2D): TF.Scalar => {
    const image = tf.reshape(x, [B, 28, 28, 1]) as TF.Tensor4D;
    const h = tf.relu(conv(tf.relu(conv(image, c1)), c2));
    const h1 = tf.relu(dense(tf.reshape(h, [B, 3136]) as TF.Tensor2D, fc));
    const mu = dense(h1, fcMu);
    const logvar = dense(h1, fcLogvar);
    const z = tf.add(mu, tf.mul(tf.randomNormal(mu.shape), tf.exp(tf.mul(0.5, logvar)))) as TF.Tensor2D;
    const d = tf.relu(dense(tf.relu(dense(z, d0)), d2));
    const u = tf.relu(convT(tf.reshape(d, [B, 7, 7, 64]) as TF.Tensor4D, t5, [B, 14, 14, 32]));
    const logits = tf.reshape(convT(u, t7, [B, 28, 28, 1]), [B, 784]);
    const bce = tf.losses.sigmoidCrossEntropy(x, logits, undefined, 0, tf.Reduction.SUM);
    const kld = tf.mul(-0.5, tf.sum(tf.sub(tf.sub(tf.add(1, logvar), tf.square(mu)), tf.exp(logvar))));
    return tf.add(bce, kld);
  };
  return { loss, variables: [c1, c2, fc, fcMu, fcLogvar, d0, d2, t5, t7].flatMap((l) => [l.W, l.b]) };
}

/** A small seeded PRNG for the shuffle (tfjs has none for plain JS arrays). */
function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The models the peer has: the reference MLP, and the conv preset. */
export type PeerModel = 'mlp' | 'conv';

/** How a run (or one interleaved block) times its steps. */
export interface VaeBlock {
  /** Steps run (each awaited) before timing: shader compilation, allocation. */
  warmup: number;
  /** Timing samples; each times `stepsPerSample` steps, awaiting only the last one's loss. */
  samples: number;
  stepsPerSample: number;
}

export interface VaeOpen {
  trainUrl: string;
  count: number;
  batchSize: number;
  seed: number;
  model?: PeerModel;
}

export type VaeCase = VaeOpen & VaeBlock;

export interface VaeTiming {
  msPerStep: number;
  p10: number;
  p90: number;
  perSample: number[];
  timedSteps: number;
  firstMs: number;
  /** Loss per image: after the first warm-up step and after the last timed step. */
  lossFirst: number;
  lossLast: number;
  tensorsBefore: number;
  tensorsAfter: number;
}

function quantiles(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { median: at(0.5), p10: at(0.1), p90: at(0.9) };
}

/** The model trained by open/block/close: one per page (a page holds one backend). */
let session: { step: () => TF.Scalar; B: number; dispose: () => void } | undefined;

/** Opens the model on the page's backend, with its data and optimizer, for blocks of steps. */
async function open(c: VaeOpen): Promise<void> {
  close();
  const response = await fetch(c.trainUrl);
  if (!response.ok) throw new Error(`fetching ${c.trainUrl}: HTTP ${response.status}`);
  const pixels = new Uint8Array(await response.arrayBuffer());
  const B = c.batchSize;
  const D = 784;

  // A DataLoader(shuffle=True) in plain JS: a shuffled order, batches copied out as floats in [0, 1].
  const random = mulberry32(c.seed);
  const order = Array.from({ length: c.count }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  let next = 0;
  const batch = new Float32Array(B * D);
  const nextBatch = () => {
    if (next + B > order.length) next = 0;
    for (let r = 0; r < B; r++) {
      const src = order[next + r] * D;
      for (let p = 0; p < D; p++) batch[r * D + p] = pixels[src + p] / 255;
    }
    next += B;
    return batch;
  };

  const model = c.model === 'conv' ? createConvVae(c.seed, B) : createVae(c.seed);
  const optimizer = tf.train.adam(1e-3, 0.9, 0.999, 1e-8);
  const step = (): TF.Scalar =>
    tf.tidy(() => {
      const x = tf.tensor2d(nextBatch(), [B, D]);
      return optimizer.minimize(() => model.loss(x), true, model.variables) as TF.Scalar;
    });
  session = {
    step,
    B,
    dispose: () => {
      optimizer.dispose();
      model.variables.forEach((v) => v.dispose());
    },
  };
}

/** Releases the open model. */
function close(): void {
  session?.dispose();
  session = undefined;
}

/** Times the open model: `warmup` awaited steps, then `samples` samples of `stepsPerSample` queued steps. */
async function block(c: VaeBlock): Promise<VaeTiming> {
  if (!session) throw new Error('peers: block() before open()');
  const { step, B } = session;
  const tensorsBefore = tf.memory().numTensors;
  let lossFirst = NaN;
  let firstMs = NaN;
  for (let i = 0; i < c.warmup; i++) {
    const t0 = performance.now();
    const loss = step();
    const value = (await loss.data())[0];
    loss.dispose();
    if (i === 0) {
      lossFirst = value / B;
      firstMs = performance.now() - t0;
    }
  }
  const perSample: number[] = [];
  let lossLast = NaN;
  for (let s = 0; s < c.samples; s++) {
    const t0 = performance.now();
    let last: TF.Scalar | undefined;
    for (let k = 0; k < c.stepsPerSample; k++) {
      const loss = step();
      last?.dispose();
      last = loss;
    }
    lossLast = (await last!.data())[0] / B; // the one readback a tfjs user needs
    perSample.push((performance.now() - t0) / c.stepsPerSample);
    last!.dispose();
  }
  const tensorsAfter = tf.memory().numTensors;
  const q = quantiles(perSample);
  return {
    msPerStep: q.median,
    p10: q.p10,
    p90: q.p90,
    perSample,
    timedSteps: c.samples * c.stepsPerSample,
    firstMs,
    lossFirst,
    lossLast,
    tensorsBefore,
    tensorsAfter,
  };
}

/** One measured run: open, one block, close. */
async function vae(c: VaeCase): Promise<VaeTiming> {
  await open(c);
  try {
    return await block(c);
  } finally {
    close();
  }
}

// ---------------------------------------------------------------- tf.matMul

export interface MatmulCase {
  name: string;
  /** C[M×N] = op(A)·op(B), K the inner size. */
  M: number;
  K: number;
  N: number;
  transA: boolean;
  transB: boolean;
}

export interface MatmulTiming {
  name: string;
  ms: number;
  p10: number;
  p90: number;
  reps: number;
  samples: number;
  gflops: number;
}

/**
 * `tf.matMul` at each shape: one warm-up (compile), then `samples` samples of `reps` calls in a
 * row, awaiting only the last result's data; `reps` is sized so a sample lasts about `targetMs`.
 */
async function matmul(c: {
  cases: MatmulCase[];
  samples: number;
  targetMs: number;
  maxReps: number;
}): Promise<MatmulTiming[]> {
  const out: MatmulTiming[] = [];
  for (const m of c.cases) {
    const a = tf.randomUniform(m.transA ? [m.K, m.M] : [m.M, m.K], -1, 1, 'float32', 1) as TF.Tensor2D;
    const b = tf.randomUniform(m.transB ? [m.N, m.K] : [m.K, m.N], -1, 1, 'float32', 2) as TF.Tensor2D;
    const run = async (reps: number) => {
      const t0 = performance.now();
      let last: TF.Tensor | undefined;
      for (let r = 0; r < reps; r++) {
        const y = tf.matMul(a, b, m.transA, m.transB);
        last?.dispose();
        last = y;
      }
      await last!.data();
      last!.dispose();
      return (performance.now() - t0) / reps;
    };
    await run(1); // compile
    const probe = await run(1);
    // As many as make about targetMs, and never a span under 2 ms (the engine's rule, bench/page.ts).
    const reps = Math.max(
      1,
      Math.ceil(2 / Math.max(probe, 1e-3)),
      Math.min(c.maxReps, Math.round(c.targetMs / Math.max(probe, 1e-3))),
    );
    const times: number[] = [];
    for (let s = 0; s < c.samples; s++) times.push(await run(reps));
    a.dispose();
    b.dispose();
    const q = quantiles(times);
    out.push({
      name: m.name,
      ms: q.median,
      p10: q.p10,
      p90: q.p90,
      reps,
      samples: c.samples,
      gflops: (2 * m.M * m.N * m.K) / (q.median * 1e6),
    });
  }
  return out;
}

declare global {
  interface Window {
    peers: {
      setup: typeof setup;
      vae: typeof vae;
      open: typeof open;
      block: typeof block;
      close: typeof close;
      matmul: typeof matmul;
    };
  }
}
window.peers = { setup, vae, open, block, close, matmul };
