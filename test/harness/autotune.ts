/**
 * Runs inside headless Chromium for test/autotune.test.ts: the start-up autotune
 * (src/model/autotune.ts) on the real adapter, observed from outside — the runtime's
 * live buffers, a model's weights read back before and after, the cache's contents — and the
 * end-to-end check's loss differences under every candidate.
 */
import { convBindings, convWGSL } from '../../shaders/conv.wgsl';
import { convProductKey, convProductOf, plannedConvOptions } from '../../src/gpu/conv-ops';
import { convTuneAlternatives } from '../../src/gpu/conv-plan';
import { Gpu } from '../../src/gpu/device';
import { matmulProductOf } from '../../src/gpu/ops';
import { encodePlan, matmulKey, type KernelPlan, type MatmulChoice } from '../../src/gpu/plan';
import { describeChoice, type TuneCache } from '../../src/gpu/tuner';
import {
  autotunePlan,
  checkLosses,
  checkModel,
  CHECK_STEPS,
  largestDifference,
  lossesMatch,
  TUNE_ALTERNATIVES,
  type AutotuneJob,
} from '../../src/model/autotune';
import type { VaeSizes } from '../../src/model/graph';
import { adamAt } from '../../src/model/settings';
import { uploadImages, VaeModel } from '../../src/model/vae';

function images(n: number, D: number): Uint8Array {
  return Uint8Array.from({ length: n * D }, (_, i) => (Math.imul(i, 2654435761) >>> 24) & 0xff);
}

/** Image i's class in a conditional model (cycling through them all). */
const labels = (n: number, classes: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7) % classes);

const job = (sizes: VaeSizes, batchSize: number, cache?: TuneCache, lr = 1e-3): AutotuneJob => ({
  sizes,
  batchSize,
  seed: 1,
  lr,
  images: images(3 * batchSize, sizes.D),
  count: 3 * batchSize,
  cache,
  browserMajor: 156,
  ...(sizes.classes ? { labels: labels(3 * batchSize, sizes.classes) } : {}),
});

/**
 * autotunePlan twice on one runtime with an in-memory cache, a model built before it: what a
 * host can see changed (its plan, its live buffers, the model's weights, Adam state and step).
 */
async function twice(c: { sizes: VaeSizes; batchSize: number }) {
  const gpu = await Gpu.create();
  try {
    const data = uploadImages(gpu, 'model images', images(2 * c.batchSize, c.sizes.D), 2 * c.batchSize);
    const model = await VaeModel.create(gpu, {
      sizes: c.sizes,
      batchSize: c.batchSize,
      seed: 7,
      adam: adamAt(1e-3),
      train: data,
      test: data,
    });
    await gpu.device.queue.onSubmittedWorkDone();
    const bytes = async () => {
      const s = await model.exportState();
      return [...new Uint8Array(s.params.buffer), ...new Uint8Array(s.m.buffer), ...new Uint8Array(s.v.buffer), s.step];
    };
    const state = await bytes(); // before the count: its readback's staging buffers are the model's, not the tuner's
    const before = { liveBuffers: gpu.liveBuffers, state };
    const store = new Map<string, string>();
    const calls: string[] = [];
    const cache: TuneCache = {
      get: async (key) => {
        calls.push('get');
        return store.get(key);
      },
      put: async (key, text) => {
        calls.push('put');
        store.set(key, text);
      },
    };
    const first = await autotunePlan(gpu, job(c.sizes, c.batchSize, cache));
    const afterFirst = { liveBuffers: gpu.liveBuffers };
    const second = await autotunePlan(gpu, job(c.sizes, c.batchSize, cache));
    const afterSecond = { liveBuffers: gpu.liveBuffers };
    const stateAfter = await bytes();
    return {
      hasTimestamps: gpu.hasTimestamps,
      software: gpu.software,
      before: { liveBuffers: before.liveBuffers },
      afterFirst,
      afterSecond,
      stateUnchanged: stateAfter.length === before.state.length && stateAfter.every((b, i) => b === before.state[i]),
      first: {
        from: first.from,
        key: first.key,
        plan: encodePlan(first.plan),
        report: first.from === 'tuner' ? first.report : null,
      },
      second: { from: second.from, key: second.key, plan: encodePlan(second.plan) },
      cached: [...store.entries()],
      calls,
    };
  } finally {
    gpu.destroy();
    gpu.device.destroy();
  }
}

/**
 * The end-to-end check's largest loss difference from the base plan (relative to its largest loss), for each candidate
 * forced on every matmul of the step, and for the base plan at a learning rate 1 % off (a run
 * that is slightly wrong, which the check must tell apart). A conditional model (`sizes.classes`)
 * trains on labels, so its conditioned dz→dmulv product runs under every candidate too.
 */
async function checkDifferences(c: { sizes: VaeSizes; batchSize: number }) {
  const gpu = await Gpu.create();
  try {
    const j = job(c.sizes, c.batchSize);
    const n = CHECK_STEPS * c.batchSize;
    const checkImages = {
      pixels: images(n, c.sizes.D),
      ...(c.sizes.classes ? { labels: labels(n, c.sizes.classes) } : {}),
    };
    const base = gpu.defaultPlan;
    const baseModel = await checkModel(gpu, base, j, checkImages);
    const keys = [
      ...new Set(
        baseModel
          .trainStep(c.batchSize)
          .map(matmulProductOf)
          .filter((p) => p !== undefined)
          .map((p) => matmulKey({ ...p.dims, transA: p.options.transA, transB: p.options.transB })),
      ),
    ];
    const baseLosses = await checkLosses(baseModel);
    const out: { choice: string; difference: number; match: boolean }[] = [];
    const forced = (choice: MatmulChoice): KernelPlan => ({
      ...base,
      overrides: Object.fromEntries(keys.map((k) => [k, choice])),
    });
    for (const choice of TUNE_ALTERNATIVES) {
      const losses = await checkLosses(await checkModel(gpu, forced(choice), j, checkImages));
      out.push({
        choice: describeChoice(choice),
        difference: largestDifference(baseLosses, losses),
        match: lossesMatch(baseLosses, losses),
      });
    }
    const off = await checkLosses(
      await checkModel(gpu, base, job(c.sizes, c.batchSize, undefined, 1.01e-3), checkImages),
    );
    return {
      products: keys.length,
      baseLosses: [...baseLosses],
      candidates: out,
      lrOff: { difference: largestDifference(baseLosses, off), match: lossesMatch(baseLosses, off) },
    };
  } finally {
    gpu.destroy();
    gpu.device.destroy();
  }
}

/**
 * checkDifferences for the conv products: each of the adapter's conv candidates forced on every
 * conv product of the step, the matmuls left to the base plan. Besides the losses, whether each
 * forced model's conv dispatch runs the pipeline of the forced tile's WGSL (from the choice
 * itself, plannedConvOptions, not through the plan's overrides; the runtime caches pipelines by
 * their WGSL), so a plan whose conv override did not reach the kernels cannot pass for one that did.
 */
async function checkConvDifferences(c: { sizes: VaeSizes; batchSize: number }) {
  const gpu = await Gpu.create();
  try {
    const j = job(c.sizes, c.batchSize);
    const checkImages = { pixels: images(CHECK_STEPS * c.batchSize, c.sizes.D) };
    const base = gpu.defaultPlan;
    const baseModel = await checkModel(gpu, base, j, checkImages);
    const keys = [
      ...new Set(
        baseModel
          .trainStep(c.batchSize)
          .map(convProductOf)
          .filter((p) => p !== undefined)
          .map(convProductKey),
      ),
    ];
    const baseLosses = await checkLosses(baseModel);
    const out: { choice: string; difference: number; match: boolean; kernels: [string, boolean][] }[] = [];
    const alternatives = convTuneAlternatives(gpu.software);
    for (const choice of alternatives) {
      const plan: KernelPlan = { ...base, overrides: Object.fromEntries(keys.map((k) => [k, choice])) };
      const model = await checkModel(gpu, plan, j, checkImages);
      const kernels: [string, boolean][] = [];
      for (const d of model.trainStep(c.batchSize)) {
        const p = convProductOf(d);
        if (!p) continue;
        // The forced tile's kernel, as convOp compiles it: the pipeline cache must hand back the same one.
        const o = plannedConvOptions(p, choice);
        const forced = await gpu.kernel({
          label: 'conv',
          code: convWGSL(o),
          entryPoint: 'conv',
          bindings: convBindings(o),
        });
        kernels.push([d.bindGroup.label ?? '', forced === d.kernel]);
      }
      const losses = await checkLosses(model);
      out.push({
        choice: describeChoice(choice),
        difference: largestDifference(baseLosses, losses),
        match: lossesMatch(baseLosses, losses),
        kernels,
      });
    }
    return { keys, alternatives: alternatives.length, baseLosses: [...baseLosses], candidates: out };
  } finally {
    gpu.destroy();
    gpu.device.destroy();
  }
}

declare global {
  interface Window {
    autotune: {
      twice: typeof twice;
      checkDifferences: typeof checkDifferences;
      checkConvDifferences: typeof checkConvDifferences;
    };
  }
}
window.autotune = { twice, checkDifferences, checkConvDifferences };
