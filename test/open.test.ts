/**
 * The resume rules of the model opener (src/model/resume.ts), once, in Node: which plan a model
 * opens under, what must match a checkpoint, what continues from it, and what may differ with a
 * warning. The hosts' own tests check only that they pass the user's choices through (and the
 * cross-host and resume tests that the opened models train as before).
 */
import { describe, expect, it } from 'vitest';
import { checkResume } from '../src/cli/resume';
import { frozenPlan, planFor, type KernelPlan } from '../src/gpu/plan';
import { SafetensorsError } from '../src/io/safetensors';
import { checkpointSizes, encodeRunCheckpoint, readRunMetadata, type RunMetadata } from '../src/model/checkpoint';
import { arenaLayout, type VaeSizes } from '../src/model/graph';
import {
  AUTOTUNE_SKIPPED_ON_RESUME,
  autotuneRuns,
  classNamesReason,
  decideResume,
  differenceWarnings,
  openingPlan,
  ResumeError,
  resumedClasses,
  resumedLikelihood,
} from '../src/model/resume';

const SIZES: VaeSizes = { D: 16, hidden: [8], L: 2 };
const CONDITIONAL: VaeSizes = { ...SIZES, classes: 3 };
const tuned: KernelPlan = {
  ...planFor(true),
  overrides: { 'NT 128×400×784': { variant: 'splitK', tileM: 4, tileN: 1 } },
};

/** A checkpoint of `sizes` with the run metadata `run`, as a host reads it back (sizes, metadata, step). */
function checkpoint(sizes: VaeSizes, run: RunMetadata, step = 0) {
  const layout = arenaLayout(sizes);
  const bytes = encodeRunCheckpoint(layout, { params: new Float32Array(layout.length), step }, run);
  return { ...checkpointSizes(bytes), step };
}

const RUN = { seed: 1, lr: 1e-3, batchSize: 128 };

describe('the plan a model opens under', () => {
  it("is the checkpoint's over a given or tuned one, the given one over the adapter's default", () => {
    const software = planFor(true);
    const hardware = planFor(false);
    expect(openingPlan(hardware, tuned, software)).toBe(hardware);
    expect(openingPlan(undefined, tuned, software)).toBe(tuned);
    expect(openingPlan(undefined, undefined, software)).toBe(software);
  });

  it('is kept frozen by a model: neither it nor the plan it was copied from can change what the programs were built under', () => {
    const given = { ...planFor(true), overrides: { 'NN 1×1×1': { variant: 'register' as const, tileM: 4, tileN: 4 } } };
    const kept = frozenPlan(given);
    given.overrides['NN 1×1×1'].tileN = 1;
    expect(kept.overrides['NN 1×1×1']).toEqual({ variant: 'register', tileM: 4, tileN: 4 });
    const writable = kept as unknown as {
      lossGroups: number;
      adam: { layout: string };
      overrides: Record<string, unknown>;
    };
    expect(() => {
      writable.lossGroups = 64;
    }).toThrow(TypeError);
    expect(() => {
      writable.adam.layout = 'gridStride';
    }).toThrow(TypeError);
    expect(() => {
      writable.overrides['NT 2×2×2'] = { variant: 'splitK', tileM: 4, tileN: 1 };
    }).toThrow(TypeError);
  });

  it('skips an autotune when the checkpoint records a plan, and says why', () => {
    expect(autotuneRuns(true, planFor(false))).toBe(false);
    expect(autotuneRuns(true, undefined)).toBe(true);
    expect(autotuneRuns(false, undefined)).toBe(false);
    expect(AUTOTUNE_SKIPPED_ON_RESUME).toMatch(/^the checkpoint records its kernel plan/);
  });

  it("comes from the checkpoint's metadata in the decision", () => {
    const c = checkpoint(SIZES, { epoch: 1, seed: 1, plan: tuned });
    expect(decideResume(c, RUN).plan).toEqual(tuned);
    expect(decideResume(checkpoint(SIZES, { epoch: 1, seed: 1 }), RUN).plan).toBeUndefined();
  });
});

describe('what must match a checkpoint', () => {
  it("an image folder's class names, for a conditional model: a renamed or swapped folder is refused", () => {
    const names = ['Cat', 'dog', 'fox'];
    expect(classNamesReason(names, ['Cat', 'dog', 'fox'], 3)).toBeNull();
    expect(classNamesReason(names, ['cat', 'dog', 'fox'], 3)).toMatch(
      /trained on the classes "Cat", "dog", "fox" .*this folder's classes are "cat", "dog", "fox": a label would mean another class/,
    );
    expect(classNamesReason(names, ['Cat', 'dog'], 3)).not.toBeNull();
    // Nothing to compare: an idx dataset names no classes, an older checkpoint records none, an unconditional model reads no labels.
    expect(classNamesReason(undefined, names, 3)).toBeNull();
    expect(classNamesReason(names, undefined, 3)).toBeNull();
    expect(classNamesReason(names, ['fox', 'dog', 'Cat'], 0)).toBeNull();
  });

  it('refuses a resume whose class names differ, through the decision every host takes', () => {
    const c = checkpoint(CONDITIONAL, { epoch: 1, seed: 1, classNames: ['circle', 'cross', 'square'] });
    expect(() => decideResume(c, { ...RUN, classNames: ['circle', 'cross', 'square'] })).not.toThrow();
    expect(() => decideResume(c, { ...RUN, classNames: ['cross', 'square', 'zircle'] })).toThrow(ResumeError);
    expect(() =>
      checkResume('ck.safetensors', c, {
        ...RUN,
        epochs: 2,
        trainCount: 128,
        classNames: ['Circle', 'cross', 'square'],
      }),
    ).toThrow(/^ck\.safetensors: it was trained on the classes "circle", "cross", "square"/);
  });

  it('the classes: a conditional checkpoint continues as one; an unconditional one cannot become conditional', () => {
    expect(resumedClasses(CONDITIONAL, false)).toBe(3);
    expect(resumedClasses(CONDITIONAL, true)).toBe(3);
    expect(resumedClasses(SIZES, false)).toBe(0);
    expect(() => resumedClasses(SIZES, true)).toThrow(
      /it is an unconditional VAE, and --conditional makes a conditional one: drop --conditional/,
    );
  });

  it('a step count the engine can count', () => {
    const c = checkpoint(SIZES, { epoch: 1, seed: 1 }, 0xfffffff0);
    expect(() => decideResume(c, { ...RUN, trainCount: 1280, epochs: 3 })).toThrow(
      /would take \d+ Adam steps, more than the 4294967295/,
    );
  });
});

describe('what continues from a checkpoint, and what may differ with a warning', () => {
  it("the likelihood, β and the warm-up are the checkpoint's unless given", () => {
    const gaussian: VaeSizes = { ...SIZES, likelihood: { kind: 'gaussian', sigma: 'learned' } };
    expect(resumedLikelihood(gaussian, undefined)).toEqual(gaussian.likelihood);
    expect(resumedLikelihood(gaussian, { kind: 'bernoulli' })).toEqual({ kind: 'bernoulli' });
    const c = checkpoint(SIZES, { epoch: 1, seed: 1, beta: 2, klWarmup: 100 });
    expect(decideResume(c, RUN)).toMatchObject({ beta: 2, klWarmup: 100, differences: [] });
    const given = decideResume(c, { ...RUN, beta: 1, klWarmup: 100 });
    expect(given).toMatchObject({ beta: 1, klWarmup: 100 });
    expect(given.differences).toEqual([{ setting: 'beta', was: 2, is: 1, why: '' }]);
  });

  it('the seed, learning rate, batch size, dataset and fit rule differ with a warning each', () => {
    const c = checkpoint(SIZES, {
      epoch: 1,
      seed: 3,
      lr: 2e-3,
      batchSize: 64,
      dataset: 'mnist',
      imageSize: 4,
      fit: 'fit',
    });
    const d = decideResume(c, {
      seed: 4,
      lr: 1e-3,
      batchSize: 128,
      dataset: '/data/shapes',
      images: { size: 4, fit: 'stretch' },
    });
    expect(d.differences.map((x) => x.setting)).toEqual(['seed', 'lr', 'batchSize', 'dataset', 'fit']);
    expect(differenceWarnings('the checkpoint', d.differences)).toEqual([
      "warning: the checkpoint was trained with seed 3; this run uses seed 4, so its shuffles and noise differ from the original run's (use seed 3 to continue it as it was)",
      'warning: the checkpoint was trained with learning rate 0.002; this run uses learning rate 0.001 (use learning rate 0.002 to continue it as it was)',
      'warning: the checkpoint was trained with batch size 64; this run uses batch size 128 (use batch size 64 to continue it as it was)',
      'warning: the checkpoint was trained with dataset mnist; this run uses dataset /data/shapes (use dataset mnist to continue it as it was)',
      'warning: the checkpoint was trained with fit rule fit; this run uses fit rule stretch, so the same files become other images (use fit rule fit to continue it as it was)',
    ]);
    expect(decideResume(c, { seed: 3, lr: 2e-3, batchSize: 64, dataset: 'mnist' }).differences).toEqual([]);
  });

  it("with the run's image count, the batch size is said through the step count (the CLI's words: its flags)", () => {
    const c = checkpoint(SIZES, { epoch: 1, seed: 3, lr: 2e-3, batchSize: 128, dataset: '/data/idx' }, 1);
    const r = checkResume('ck', c, {
      seed: 4,
      lr: 1e-3,
      batchSize: 64,
      dataset: 'mnist',
      trainCount: 128,
      epochs: 2,
      beta: 2,
    });
    expect(r.warnings).toEqual([
      'warning: ck was trained with --beta 1; this run uses --beta 2 (pass --beta 1 to continue it as it was)',
      "warning: ck was trained with --seed 3; this run uses --seed 4, so its shuffles and noise differ from the original run's (pass --seed 3 to continue it as it was)",
      'warning: ck was trained with --lr 0.002; this run uses --lr 0.001 (pass --lr 0.002 to continue it as it was)',
      'warning: ck was trained with --data /data/idx; this run uses --dataset mnist (pass --data /data/idx to continue it as it was)',
      'warning: ck is at epoch 1 after 1 Adam steps, but 1 epochs of this run take 2 (2 batches of 64 from 128 images): ' +
        'it was trained with another --batch-size, --train-limit or dataset, or saved mid-epoch; Adam continues from step 1',
    ]);
    expect(r).toMatchObject({ epoch: 1, beta: 2 });
  });
});

describe('class names in the run metadata', () => {
  it('are written and read back, label 0 first', () => {
    const c = checkpoint(CONDITIONAL, { epoch: 1, seed: 1, classNames: ['b "quoted"', 'ä', 'c,d'] });
    expect(c.metadata.class_names).toBe(JSON.stringify(['b "quoted"', 'ä', 'c,d']));
    expect(readRunMetadata(c.metadata).classNames).toEqual(['b "quoted"', 'ä', 'c,d']);
    expect(readRunMetadata(checkpoint(SIZES, { epoch: 1, seed: 1 }).metadata).classNames).toBeUndefined();
  });

  it('that are not a list of names are refused as metadata', () => {
    for (const text of ['cat,dog', '[1, 2]', '{"a": "b"}', JSON.stringify(Array(1025).fill('x'))]) {
      expect(() => readRunMetadata({ class_names: text }), text).toThrow(SafetensorsError);
    }
    expect(() => readRunMetadata({ class_names: 'cat,dog' })).toThrow(/class_names is not a list of class names/);
  });
});
