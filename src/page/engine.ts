/**
 * Sessions: a model on the GPU with its dataset, made new or from a checkpoint, and the
 * checkpoint bytes a session saves. The page's resume rules live here: a checkpoint's sizes,
 * plan and objective win over the fields, and its file is checked against the page's ranges and
 * the dataset before anything is allocated for it.
 */
import { autotuneLines, browserMajor, describePlan, type AutotuneResult } from '../model/autotune';
import {
  checkpointSizes,
  decodeCheckpoint,
  encodeRunCheckpoint,
  readRunMetadata,
  type CheckpointData,
} from '../model/checkpoint';
import { arenaLayout, classesOf, type VaeSizes } from '../model/graph';
import { Inference } from '../model/inference';
import { classCountOf, labelsReason } from '../model/labels';
import { openModel } from '../model/open';
import { modelSizes } from '../model/spec';
import { DEFAULT_OBJECTIVE, STEPS_PER_SUBMIT } from '../model/settings';
import type { App, Session } from './app';
import { DEFAULT_SETTINGS, type Controls, type Settings } from './controls';
import { valuesPerImage, type Dataset } from './data';
import { choiceOf, type ModelChoice } from './model-picker';
import { showClassControls } from './model-views';
import type { PageObjective } from './objective';

/**
 * Classes of a new conditional model on `dataset` (0: unconditional): as many as its labels use,
 * counted as the CLI counts them (classCountOf, over the whole files, not the URL's cut); both
 * splits must carry labels within them. Throws, saying what is missing.
 */
function conditionalClasses(dataset: Dataset, wanted: boolean): number {
  if (!wanted) return 0;
  const classes = dataset.labelClasses;
  const bad =
    labelsReason('training', dataset.train.labels, dataset.train.count, classes) ??
    labelsReason('test', dataset.test.labels, dataset.test.count, classes);
  if (bad || classes < 2) {
    throw new Error(
      `a conditional VAE needs labels for every image (at least 2 classes): ${bad ?? `${dataset.name} has ${classes} class`}. ` +
        'Pick the labels files too, or untick "Conditional on the labels"',
    );
  }
  return classes;
}

/** One image's shape, [C, H, W]: a spec's input. */
export function inputOf(d: { rows: number; cols: number; channels?: number }): number[] {
  return [d.channels ?? 1, d.rows, d.cols];
}

/**
 * A new session (the model, its trainer and inference, the dataset uploaded) in place of the
 * current one, which is dropped once the settings, the model and the objective are known to be
 * usable. A new model is the picker's, made by the one path from options to a model
 * (spec.ts modelSizes); a checkpoint's is its own, and the picker then shows it.
 */
export async function createSession(
  app: App,
  dataset: Dataset,
  settings: Settings,
  checkpoint: CheckpointData | null,
  epochsDone: number,
): Promise<Session> {
  const { el, controls, objectiveControls, modelPicker, explorer, say } = app;
  if (settings.batchSize > dataset.train.count) {
    throw new Error(
      `the batch size (${settings.batchSize}) is larger than the ${dataset.train.count} training images; lower it`,
    );
  }
  // A checkpoint says whether its model is conditional (readCheckpoint checked the dataset's labels against its classes); a new model follows the checkbox.
  const classes = checkpoint ? classesOf(checkpoint.sizes) : conditionalClasses(dataset, el.conditional.checked);
  // A checkpoint's objective is its own (the likelihood in its sizes, β and the warm-up in its metadata); a new model takes the fields'.
  const run = checkpoint && readRunMetadata(checkpoint.metadata);
  const objective: PageObjective | null = checkpoint
    ? {
        beta: run!.beta ?? DEFAULT_OBJECTIVE.beta,
        klWarmup: run!.klWarmup ?? DEFAULT_OBJECTIVE.klWarmup,
        likelihood: checkpoint.sizes.likelihood,
      }
    : objectiveControls.read();
  if (!objective)
    throw new Error('an objective field (β, KL warm-up, likelihood or σ) is invalid; its reason is shown beside it');
  const input = inputOf(dataset);
  let sizes: VaeSizes;
  let choice: ModelChoice;
  if (checkpoint) {
    sizes = checkpoint.sizes;
    choice = choiceOf(sizes, input);
  } else {
    const picked = modelPicker.read();
    if (picked === null)
      throw new Error('the model spec is not one this page can train; its reason is shown beside it');
    choice = picked;
    sizes = modelSizes(choice, {
      input,
      ...(choice === 'mlp' ? { hidden: settings.hidden } : {}),
      ...(typeof choice === 'string' ? { latent: settings.latent } : {}),
      classes,
      // What the Likelihood field shows trains: it replaces a spec's (the mlp keeps Bernoulli as absent, the reference model's sizes).
      likelihood: objective.likelihood ?? (choice === 'mlp' ? undefined : { kind: 'bernoulli' }),
    });
  }
  // A spec names its latent size (the explorer's axes); the hidden widths field keeps the mlp's.
  settings = { ...settings, latent: sizes.L, ...(sizes.spec ? {} : { hidden: [...sizes.hidden] }) };
  dropSession(app);
  const g = app.state.gpu!;
  try {
    const labelsIf = (labels?: Uint8Array) => (classes > 0 ? labels : undefined);
    // The opener keeps a checkpoint's kernel plan (it sums in that order) and skips the autotune for it.
    const { model, trainer, tune, messages } = await openModel(g, {
      sizes,
      job: {
        batchSize: settings.batchSize,
        seed: settings.seed,
        lr: settings.lr,
        beta: objective.beta,
        klWarmup: objective.klWarmup,
      },
      train: { pixels: dataset.train.pixels, count: dataset.train.count, labels: labelsIf(dataset.train.labels) },
      test: { pixels: dataset.test.pixels, count: dataset.test.count, labels: labelsIf(dataset.test.labels) },
      checkpoint: checkpoint ?? undefined,
      classNames: classNamesOf(dataset),
      stepsPerSubmit: STEPS_PER_SUBMIT,
      autotune: el.autotune.checked
        ? {
            browserMajor: browserMajor(navigator.userAgent),
            cache: app.tuneCache,
            onStart: () =>
              say('Autotuning the kernels at these sizes (timing each matmul variant, then a 16-step check)…'),
          }
        : undefined,
    });
    if (tune && tune.from !== 'skipped') sayTune(app, tune);
    for (const line of messages) say(`${line[0].toUpperCase()}${line.slice(1)}.`); // a skipped autotune, a resume's differences
    const s: Session = {
      dataset,
      settings,
      model,
      choice,
      epochsDone,
      files: dataset.kind === 'mnist' ? null : app.state.picked!.files, // chosenDataset() made it from `picked`
      trainer,
      inference: new Inference(model),
    };
    explorer.attach({
      inference: s.inference,
      latent: settings.latent,
      rows: dataset.rows,
      cols: dataset.cols,
      channels: dataset.channels,
      test: dataset.test,
      classNames: dataset.classNames,
      classes,
    });
    modelPicker.set(choice);
    controls.set(settings);
    el.conditional.checked = classes > 0;
    showClassControls(app, dataset, classes);
    objectiveControls.set(objective);
    return s;
  } catch (e) {
    g.freeBuffers(); // whatever was made before the failure
    throw e;
  }
}

/** What the opt-in start-up autotune (src/model/autotune.ts, cached in this browser's storage) did, said. */
function sayTune({ say, tuneCache }: App, tune: AutotuneResult): void {
  console.info(`webgpu-vae: ${autotuneLines(tune)}`);
  const unkept =
    tuneCache.putFailure &&
    ` The plan could not be kept in this browser's storage (${tuneCache.putFailure}): the next start tunes again.`;
  say(
    tune.from === 'cache'
      ? `Kernel plan from this browser's tune cache: ${describePlan(tune.plan)}.`
      : `Autotuned (${tune.report.timing}): ${tune.report.reason}; running ${describePlan(tune.plan)}. The report is in the console.${unkept}`,
  );
}

/** An image folder's class names (recorded in its checkpoints, checked on resume); idx datasets name none. */
function classNamesOf(dataset: Dataset): string[] | undefined {
  return dataset.kind === 'images' ? dataset.classNames : undefined;
}

/** Frees the model's buffers (datasets included); compiled pipelines stay cached on the device. */
export function dropSession({ state, explorer }: App): void {
  state.session?.model.destroy();
  state.session = null;
  explorer.attach(null);
}

/** The session's checkpoint: its weights and Adam state, and the run metadata a resume reads back. */
export async function checkpointBytes(s: Session): Promise<Uint8Array> {
  return encodeRunCheckpoint(s.model.layout, await s.model.exportState(), {
    epoch: s.epochsDone,
    seed: s.settings.seed,
    lr: s.settings.lr,
    batchSize: s.settings.batchSize,
    dataset: s.dataset.name,
    plan: s.model.plan,
    // As the CLI records an image folder's decoding and colour, so a resume can say what to pick.
    ...(s.dataset.images ? { imageSize: s.dataset.images.size, fit: s.dataset.images.fit } : {}),
    ...((s.dataset.channels ?? 1) !== 1 ? { channels: s.dataset.channels } : {}),
    ...(classNamesOf(s.dataset) ? { classNames: classNamesOf(s.dataset) } : {}),
    ...(s.model.generalObjective ? { beta: s.model.config.beta, klWarmup: s.model.config.klWarmup } : {}),
  });
}

/**
 * A checkpoint file and the dataset it trains on, checked before anything is allocated for
 * the file: the sizes its header declares against the bytes it holds (checkpointSizes) and
 * this page's ranges (the settings fields'), then against the dataset, then its tensors.
 */
export async function readCheckpoint(
  controls: Controls,
  bytes: Uint8Array,
  dataset: () => Promise<Dataset>,
): Promise<{ ckpt: CheckpointData; dataset: Dataset }> {
  const { sizes, metadata } = checkpointSizes(bytes);
  // A spec's widths are its own (parseSpec checked them against the engine's limits); its latent size still needs the explorer's two axes.
  for (const [field, what, value] of [
    ...(sizes.spec ? [] : ([['hidden', 'hidden widths', sizes.hidden]] as const)),
    ['latent', 'latent size', sizes.L],
  ] as const) {
    const reason = controls.reasonAgainst(field, value);
    if (reason)
      throw new Error(`its ${what} ${Array.isArray(value) ? 'are' : 'is'} ${value}, and this page's ${what} ${reason}`);
  }
  const d = await dataset();
  const D = valuesPerImage(d);
  if (sizes.D !== D) {
    const shape = (d.channels ?? 1) === 1 ? `${d.rows}×${d.cols}` : `${d.channels}×${d.rows}×${d.cols}`;
    const channels = readRunMetadata(metadata).channels ?? 1;
    const colour =
      d.kind === 'images' && channels !== (d.channels ?? 1)
        ? ` (it was trained on ${channels === 3 ? 'colour' : 'grayscale'} images: set Colour to ${channels === 3 ? 'colour (RGB)' : 'grayscale'})`
        : '';
    throw new Error(
      `it is for images of ${sizes.D} pixels, but ${d.name} has ${shape} = ${D}${colour}; choose its dataset first`,
    );
  }
  // A label at or past the checkpoint's class count would reach the GPU as an all-zero one-hot.
  const classes = classesOf(sizes);
  const bad =
    classes > 0 &&
    (labelsReason('training', d.train.labels, d.train.count, classes) ??
      labelsReason('test', d.test.labels, d.test.count, classes));
  if (bad) {
    const top = classCountOf(d.train.labels, d.test.labels) - 1;
    const why = d.train.labels && d.test.labels && top >= classes ? `${d.name}'s labels go up to ${top}` : bad;
    throw new Error(
      `this checkpoint is a conditional VAE of ${classes} classes (labels 0 … ${classes - 1}); ${why}: choose the dataset it was trained on`,
    );
  }
  return { ckpt: decodeCheckpoint(bytes, arenaLayout(sizes)), dataset: d };
}

/** Settings for a loaded checkpoint: its sizes, and its optimiser settings when it names them within the page's ranges. */
export function settingsFor(controls: Controls, ckpt: CheckpointData): Settings {
  const base = controls.read() ?? DEFAULT_SETTINGS;
  const run = readRunMetadata(ckpt.metadata);
  const pick = (field: 'seed' | 'lr' | 'batchSize') => {
    const v = run[field];
    return v !== undefined && controls.reasonAgainst(field, v) === '' ? v : base[field];
  };
  return {
    ...base,
    // A spec's widths are its own: the hidden widths field keeps the mlp's.
    hidden: ckpt.sizes.spec ? base.hidden : [...ckpt.sizes.hidden],
    latent: ckpt.sizes.L,
    seed: pick('seed'),
    lr: pick('lr'),
    batchSize: pick('batchSize'),
  };
}

export function epochOf(ckpt: CheckpointData): number {
  return readRunMetadata(ckpt.metadata).epoch;
}
