/**
 * The training page: a person picks a dataset and settings, presses Start and watches the VAE
 * learn. The engine runs on the main thread: every GPU call is asynchronous and the trainer
 * awaits between submits, so the page stays responsive without a Worker; views redraw a few
 * times a second at most, whatever the rate at which losses come back.
 *
 * One model (a "session") exists at a time. Its shape, batch size, learning rate, seed and
 * dataset are fixed until Reset; the epoch target stays editable, and Start continues a
 * stopped, finished or restored run up to it.
 */
import { adapterName } from '../gpu/adapter';
import { IdxError, MAX_IDX_FILE_BYTES } from '../data/idx';
import { Gpu, GpuError, LOST_DEVICE_ADVICE } from '../gpu/device';
import { checkpointSizes, decodeCheckpoint, encodeRunCheckpoint, readRunMetadata, type CheckpointData } from '../model/checkpoint';
import { RunGate, runTraining, type EpochReport } from '../model/driver';
import { Inference } from '../model/inference';
import { arenaLayout, classesOf, sameSizes, sizesName, type VaeSizes } from '../model/graph';
import { classCountOf, labelsReason } from '../model/labels';
import { PHILOX_STREAM } from '../../shaders/philox.wgsl';
import { normals } from '../model/philox';
import { DEFAULT_OBJECTIVE, STEPS_PER_SUBMIT, weightedKl } from '../model/settings';
import { ObjectiveControls, type PageObjective } from './objective';
import { Trainer } from '../model/trainer';
import { autotuneLines, browserMajor, describePlan, type AutotuneResult } from '../model/autotune';
import { openModel } from '../model/open';
import { indexedDbCache } from './tune-cache';
import { RECON_COUNT, SAMPLES_PER_CLASS, sampleCountOf, type VaeModel } from '../model/vae';
import { clearCanvas, drawGrid, LossChart, type LossHistory } from './charts';
import { Controls, DEFAULT_SETTINGS, integerReason, SETTING_NAMES, type Settings } from './controls';
import { describeDataset, limitDataset, loadMnist, loadPicked, type Dataset, type DatasetKind, type PickedFile } from './data';
import { loadImages } from './data';
import { gatherDropped, gatherPicked, type GatheredFolder } from './image-folder';
import { HELD_OUT_RULE, LUMA_WEIGHTS as W } from '../data/image-folder';
import { FIT_DEFAULT, FIT_RULES, IMAGE_SIZE_DEFAULT, IMAGE_SIZE_RANGE, type FitRule } from '../model/settings';
import { Explorer } from './explorer';
import { ProgressView } from './progress';
import { storage } from './storage';


/**
 * The format of SavedRun: raise it whenever the record changes, so a record written by
 * another version of the page is reported as such instead of being misread.
 */
const SAVE_VERSION = 3; // 3: settings.hidden is a list of widths

/** The browser-storage record of the latest completed epoch. */
interface SavedRun {
  version: typeof SAVE_VERSION;
  checkpoint: Uint8Array;
  settings: Settings;
  datasetKind: DatasetKind;
  epoch: number;
  savedAt: number;
  history: LossHistory;
}
const LATEST = 'latest';
/** Files picked from disk for the saved run, so a reload can rebuild its dataset. */
const PICKED_FILES = 'dataset-files';
const DATASET_KINDS: readonly DatasetKind[] = ['mnist', 'fashion', 'files', 'images'];

interface Session {
  dataset: Dataset;
  settings: Settings;
  model: VaeModel;
  trainer: Trainer;
  inference: Inference;
  /** Completed epochs (a stopped epoch does not count; Start repeats it). */
  epochsDone: number;
  /** The picked files the dataset came from (null for MNIST), stored beside the run. */
  files: PickedFile[] | null;
}

type Phase = 'booting' | 'ready' | 'busy' | 'running' | 'failed';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const el = {
  adapter: $('adapter'), noWebgpu: $('no-webgpu'), noWebgpuTitle: $('no-webgpu-title'), noWebgpuDetail: $('no-webgpu-detail'), app: $('app'),
  dataset: $<HTMLSelectElement>('dataset'), datasetFilesRow: $('dataset-files-row'), datasetFiles: $<HTMLInputElement>('dataset-files'),
  datasetHint: $('dataset-hint'), datasetStatus: $('dataset-status'),
  start: $<HTMLButtonElement>('start'), pause: $<HTMLButtonElement>('pause'), stop: $<HTMLButtonElement>('stop'), reset: $<HTMLButtonElement>('reset'),
  message: $('message'),
  recon: $<HTMLCanvasElement>('recon'), samples: $<HTMLCanvasElement>('samples'), imagesEpoch: $('images-epoch'),
  imagesRow: $('dataset-images-row'), folder: $<HTMLInputElement>('dataset-folder'),
  imagesHint: $('images-hint'), imageSize: $<HTMLInputElement>('image-size'), imageSizeReason: $('image-size-reason'), imageFit: $<HTMLSelectElement>('image-fit'),
  autotune: $<HTMLInputElement>('autotune'),
  download: $<HTMLButtonElement>('download'), checkpointFile: $<HTMLInputElement>('checkpoint-file'), saved: $('saved'),
  conditional: $<HTMLInputElement>('conditional'), samplesCaption: $('samples-caption'),
  classDraw: $('class-draw'), drawClass: $<HTMLSelectElement>('draw-class'), drawAgain: $<HTMLButtonElement>('draw-again'),
  classSamples: $<HTMLCanvasElement>('class-samples'),
};

const query = new URLSearchParams(location.search);
const TRAIN_LIMIT = positiveInteger(query.get('limit'));
const TEST_LIMIT = positiveInteger(query.get('testLimit'));

let gpu: Gpu | null = null;
let session: Session | null = null;
let phase: Phase = 'booting';
let picked: { kind: 'fashion' | 'files' | 'images'; files: PickedFile[]; dataset: Dataset } | null = null;
/** The image folder last picked or dropped, kept so another size or fit rule decodes it again. */
let pickedFolder: GatheredFolder | null = null;
let mnist: Promise<Dataset> | null = null;
/** The running training's pause and stop (null when nothing trains). */
let gate: RunGate | null = null;
/** Every epoch this page completed, as the driver reported it (for tests, and the same figures the CLI writes to metrics.jsonl). */
const epochReports: { epoch: number; trainLoss: number; testLoss: number }[] = [];
/** Images per second of each completed epoch this page trained. */
const epochRates: number[] = [];
/** What browser storage holds: nothing, a run (and the session that saved or restored it), or a record this page could not restore. */
let stored: { epoch: number; owner: Session } | 'unrestorable' | null = null;
/** The picked files in storage (null: none; undefined: not known yet). */
let storedFiles: PickedFile[] | null | undefined;
/** Whether the browser promised to keep our storage under disk pressure; asked once, when there is first something to keep. */
let persistence: Promise<boolean> | null = null;

const controls = new Controls(() => updateButtons());
const objectiveControls = new ObjectiveControls(() => updateButtons());
const chart = new LossChart($<HTMLCanvasElement>('loss-chart'));
const progress = new ProgressView();
const explorer = new Explorer((e) => say(`Latent explorer: ${e.message}`, 'error'));

function positiveInteger(text: string | null): number | undefined {
  if (text === null) return undefined;
  const v = Number(text);
  return Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

function say(text: string, kind: 'info' | 'error' = 'info'): void {
  el.message.textContent = text;
  el.message.className = `message ${kind}`;
  if (kind === 'error') console.error(text);
}

function updateButtons(): void {
  const ready = phase === 'ready';
  const training = phase === 'running';
  const kind = el.dataset.value as DatasetKind;
  const datasetChosen = kind === 'mnist' || picked?.kind === kind || session !== null;
  el.start.disabled = !ready || !controls.valid || !datasetChosen || (kind === 'images' && !imageOptions()) || (!session && !objectiveControls.valid);
  el.start.textContent = session ? 'Continue' : 'Start';
  el.pause.disabled = !training;
  el.pause.textContent = gate?.state === 'paused' ? 'Resume' : 'Pause';
  el.stop.disabled = !training;
  el.reset.disabled = !ready; // with no model too: it also clears storage, which may hold a run that cannot be restored
  el.download.disabled = !session || phase === 'busy' || phase === 'failed';
  el.checkpointFile.disabled = !ready;
  el.dataset.disabled = el.datasetFiles.disabled = !ready || session !== null;
  el.folder.disabled = el.imageSize.disabled = el.imageFit.disabled = !ready || session !== null;
  el.conditional.disabled = !ready || session !== null;
  el.autotune.disabled = !ready || session !== null; // the plan is chosen when a model is made
  controls.setLocked(session !== null || !(ready || training));
  objectiveControls.setLocked(session !== null || !(ready || training));
}

// ---- Start-up: adapter report, or the no-WebGPU message --------------------------------------

async function boot(): Promise<void> {
  try {
    gpu = await Gpu.create({
      onLost: (e) => fail(e),
      onUncapturedError: (e) => fail(e),
    });
  } catch (e) {
    // WebGPU is there but the adapter falls short of the model's limits: a different headline.
    if (e instanceof GpuError && e.kind === 'limits') el.noWebgpuTitle.textContent = 'This WebGPU adapter cannot hold the model';
    else el.adapter.textContent = 'No WebGPU adapter.';
    el.noWebgpuDetail.textContent = (e as Error).message;
    el.noWebgpu.hidden = false;
    el.app.hidden = true;
    phase = 'failed';
    return;
  }
  reportAdapter(gpu);
  phase = 'ready';
  showDatasetChoice();
  updateButtons();
  await restoreLatest();
}

/** Names the adapter the engine acquired and says plainly when it is a software one. */
function reportAdapter(g: Gpu): void {
  const a = g.adapter!; // Gpu.create() requested it
  el.adapter.textContent = `WebGPU adapter: ${adapterName(a)}. ` + (a.software
    ? (a.forcedFallback ? 'The browser offered no GPU adapter, only its fallback: ' : '') +
      'This is a software (fallback) adapter: the GPU work runs on the CPU, so training is far slower than on a real GPU and its speeds are not a GPU\'s.'
    : 'A hardware adapter.');
  el.adapter.classList.toggle('software', a.software);
}

/** Read through a call: `phase` changes under awaits (device loss), which TypeScript's narrowing cannot see. */
function failed(): boolean {
  return phase === 'failed';
}

function fail(e: Error): void {
  if (phase === 'failed') return;
  phase = 'failed';
  gate?.stop();
  // The engine's advice (load the checkpoint on a new device) is what a reload does here.
  const what = e.message.replace(` ${LOST_DEVICE_ADVICE}`, '');
  const saved = session?.epochsDone ? `epoch ${session.epochsDone}, saved in this browser, is restored` : 'nothing had been saved yet';
  say(`${what} Training stopped; reload the page: ${saved}.`, 'error');
  updateButtons();
}

// ---- Dataset choice ------------------------------------------------------------------------

const HINTS: Record<'fashion' | 'files', string> = {
  fashion: 'Pick the four Fashion-MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, ' +
    't10k-labels-idx1-ubyte.gz) from github.com/zalandoresearch/fashion-mnist; Debian\'s dataset-fashion-mnist package puts them in /usr/share/datasets/fashion-mnist.',
  files: 'Pick two idx images files (training and test; the larger set trains) and, for a coloured scatter, their labels files. Plain or gzipped.',
};

/** The URL's cut of the dataset, in words. */
function limits(): string {
  const parts = [TRAIN_LIMIT && `the first ${TRAIN_LIMIT} training`, TEST_LIMIT && `the first ${TEST_LIMIT} test`].filter(Boolean);
  return parts.length ? ` (this address uses only ${parts.join(' and ')} images)` : '';
}

function showDatasetChoice(): void {
  const kind = el.dataset.value as DatasetKind;
  el.datasetFilesRow.hidden = kind === 'mnist' || kind === 'images';
  el.imagesRow.hidden = kind !== 'images';
  if (kind !== 'mnist' && kind !== 'images') el.datasetHint.textContent = HINTS[kind];
  el.datasetStatus.textContent = session ? describeDataset(session.dataset)
    : kind === 'mnist' ? `MNIST: 60,000 training and 10,000 test digits, fetched from this site when you press Start${limits()}.`
    : picked?.kind === kind ? describeDataset(picked.dataset) : 'No files chosen yet.';
  el.datasetStatus.classList.remove('error');
  updateButtons();
}

el.dataset.addEventListener('change', showDatasetChoice);

el.datasetFiles.addEventListener('change', async () => {
  const kind = el.dataset.value as 'fashion' | 'files';
  const chosen = [...(el.datasetFiles.files ?? [])];
  el.datasetFiles.value = '';
  if (chosen.length === 0) return;
  phase = 'busy';
  updateButtons();
  el.datasetStatus.textContent = `Reading ${chosen.length} file${chosen.length === 1 ? '' : 's'}…`;
  try {
    const big = chosen.find((f) => f.size > MAX_IDX_FILE_BYTES);
    if (big) throw new IdxError(`${big.name}: ${big.size} bytes is more than ${MAX_IDX_FILE_BYTES}; it is not an MNIST-sized idx file`);
    const files = await Promise.all(chosen.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
    const dataset = await loadPicked(kind, files);
    picked = { kind, files, dataset };
    phase = 'ready';
    showDatasetChoice();
  } catch (e) {
    const kept = picked?.kind === kind ? ` The files chosen before are still in use: ${describeDataset(picked.dataset)}.` : '';
    el.datasetStatus.textContent = `Not loaded: ${(e as Error).message}.${kept}`;
    el.datasetStatus.classList.add('error');
    phase = 'ready';
  }
  updateButtons();
});

// ---- Image folders: picked with the folder input or dropped on the page, decoded by this browser ----

el.imageSize.value = String(IMAGE_SIZE_DEFAULT);
el.imagesHint.textContent = `PNG or JPEG files, one subfolder per class (the classes are the subfolders' names, sorted). ` +
  `With train/ and test/ subfolders those are the splits; otherwise the test images are ${HELD_OUT_RULE}. Images become size×size grayscale (luma ${W.r} R + ${W.g} G + ${W.b} B; transparency and padding are black): ` +
  'center-crop scales the short side and keeps the centre, fit scales the long side and pads, stretch scales each side. ' +
  'Files that cannot be used are named and skipped.';
for (const rule of FIT_RULES) el.imageFit.add(new Option(rule, rule, rule === FIT_DEFAULT, rule === FIT_DEFAULT));

/** The size and fit fields, or null (with the reason shown) when the size is not one the engine takes. */
function imageOptions(): { size: number; fit: FitRule } | null {
  const reason = integerReason(el.imageSize.value, ...IMAGE_SIZE_RANGE);
  el.imageSize.setCustomValidity(reason);
  el.imageSizeReason.textContent = reason;
  return reason ? null : { size: Number(el.imageSize.value), fit: el.imageFit.value as FitRule };
}

async function decodeFolder(folder: GatheredFolder, options: { size: number; fit: FitRule }): Promise<Dataset> {
  const dataset = await loadImages(folder.name, folder.files, options, folder.skipped);
  pickedFolder = folder;
  // A new array for each decoding: saveLatest stores the files (and their size and fit) when the array changes.
  picked = { kind: 'images', files: [...folder.files], dataset };
  return dataset;
}

/**
 * Decodes the folder with the current size and fit into `picked`; on failure the earlier choice
 * stays. With the size field invalid the folder is kept undecoded, and fixing the size decodes it.
 */
async function useFolder(folder: GatheredFolder | null): Promise<void> {
  if (!folder || phase !== 'ready' || session) return;
  const before = pickedFolder;
  pickedFolder = folder; // first: the folder just picked is the one a fixed size decodes
  const options = imageOptions();
  if (!options) {
    el.datasetStatus.textContent = `${folder.name}: ${folder.files.length} files picked, not decoded yet: the image size ${el.imageSizeReason.textContent}; fix it to decode them.`;
    el.datasetStatus.classList.add('error');
    updateButtons();
    return;
  }
  phase = 'busy';
  updateButtons();
  el.datasetStatus.classList.remove('error');
  el.datasetStatus.textContent = `Decoding ${folder.files.length} files of ${folder.name} to ${options.size}×${options.size}…`;
  try {
    await decodeFolder(folder, options);
    phase = 'ready';
    showDatasetChoice();
  } catch (e) {
    pickedFolder = before; // a size change must not decode the folder that failed in place of the one in use
    const kept = picked?.kind === 'images' ? ` The folder chosen before is still in use: ${describeDataset(picked.dataset)}` : '';
    el.datasetStatus.textContent = `Not loaded: ${(e as Error).message}${kept}`;
    el.datasetStatus.classList.add('error');
    phase = 'ready';
  }
  updateButtons();
}

el.folder.addEventListener('change', async () => {
  const chosen = [...(el.folder.files ?? [])];
  el.folder.value = '';
  if (chosen.length > 0) await useFolder(await gatherPicked(chosen));
});
// On change (Enter or leaving the field), not on each keystroke: "64" typed is not a decode at 6, then one at 64.
el.imageSize.addEventListener('input', () => { imageOptions(); updateButtons(); });
el.imageSize.addEventListener('change', () => void useFolder(pickedFolder));
el.imageFit.addEventListener('change', () => void useFolder(pickedFolder));

// A file dropped anywhere must not navigate away from a training page; a folder dropped while no
// model exists becomes the image dataset.
window.addEventListener('dragover', (e) => {
  e.preventDefault();
  el.imagesRow.classList.toggle('dragging', phase === 'ready' && !session);
});
window.addEventListener('dragleave', () => el.imagesRow.classList.remove('dragging'));
window.addEventListener('drop', async (e) => {
  e.preventDefault();
  el.imagesRow.classList.remove('dragging');
  if (!e.dataTransfer || phase !== 'ready' || session) return;
  el.dataset.value = 'images';
  showDatasetChoice();
  await useFolder(await gatherDropped(e.dataTransfer));
});

/** The chosen dataset, cut to the URL's limits. */
async function chosenDataset(): Promise<Dataset> {
  const kind = el.dataset.value as DatasetKind;
  let full: Dataset;
  if (kind === 'mnist') {
    mnist ??= loadMnist(import.meta.env.BASE_URL);
    try {
      full = await mnist;
    } catch (e) {
      mnist = null;
      throw e;
    }
  } else {
    if (picked?.kind !== kind) throw new Error('choose the dataset files first');
    full = picked.dataset;
    // A size or fit changed since the folder was decoded (the field not yet left): decode it again now.
    const options = kind === 'images' ? imageOptions() : null;
    if (kind === 'images' && !options) throw new Error(`the image size ${el.imageSizeReason.textContent}`);
    if (options && pickedFolder && (options.size !== full.images?.size || options.fit !== full.images?.fit)) full = await decodeFolder(pickedFolder, options);
  }
  return limitDataset(full, TRAIN_LIMIT, TEST_LIMIT);
}

// ---- Sessions: a model on the GPU with its dataset ------------------------------------------

/**
 * Classes of a new conditional model on `dataset` (0: unconditional): as many as its labels use,
 * counted as the CLI counts them (classCountOf, over the whole files, not the URL's cut); both
 * splits must carry labels within them. Throws, saying what is missing.
 */
function conditionalClasses(dataset: Dataset, wanted: boolean): number {
  if (!wanted) return 0;
  const classes = dataset.labelClasses;
  const bad = labelsReason('training', dataset.train.labels, dataset.train.count, classes) ??
    labelsReason('test', dataset.test.labels, dataset.test.count, classes);
  if (bad || classes < 2) {
    throw new Error(`a conditional VAE needs labels for every image (at least 2 classes): ${bad ?? `${dataset.name} has ${classes} class`}. ` +
      'Pick the labels files too, or untick "Conditional on the labels"');
  }
  return classes;
}

async function createSession(dataset: Dataset, settings: Settings, checkpoint: CheckpointData | null, epochsDone: number): Promise<Session> {
  if (settings.batchSize > dataset.train.count) {
    throw new Error(`the batch size (${settings.batchSize}) is larger than the ${dataset.train.count} training images; lower it`);
  }
  // A checkpoint says whether its model is conditional (readCheckpoint checked the dataset's labels against its classes); a new model follows the checkbox.
  const classes = checkpoint ? classesOf(checkpoint.sizes) : conditionalClasses(dataset, el.conditional.checked);
  // A checkpoint's objective is its own (the likelihood in its sizes, β and the warm-up in its metadata); a new model takes the fields'.
  const run = checkpoint && readRunMetadata(checkpoint.metadata);
  const objective: PageObjective | null = checkpoint
    ? { beta: run!.beta ?? DEFAULT_OBJECTIVE.beta, klWarmup: run!.klWarmup ?? DEFAULT_OBJECTIVE.klWarmup, likelihood: checkpoint.sizes.likelihood }
    : objectiveControls.read();
  if (!objective) throw new Error('an objective field (β, KL warm-up, likelihood or σ) is invalid; its reason is shown beside it');
  dropSession();
  const g = gpu!;
  try {
    const labelsIf = (labels?: Uint8Array) => (classes > 0 ? labels : undefined);
    const sizes: VaeSizes = {
      D: dataset.rows * dataset.cols, hidden: settings.hidden, L: settings.latent,
      ...(classes > 0 ? { classes } : {}), ...(objective.likelihood ? { likelihood: objective.likelihood } : {}),
    };
    // The opener keeps a checkpoint's kernel plan (it sums in that order) and skips the autotune for it.
    const { model, trainer, tune, messages } = await openModel(g, {
      sizes, job: { batchSize: settings.batchSize, seed: settings.seed, lr: settings.lr, beta: objective.beta, klWarmup: objective.klWarmup },
      train: { pixels: dataset.train.pixels, count: dataset.train.count, labels: labelsIf(dataset.train.labels) },
      test: { pixels: dataset.test.pixels, count: dataset.test.count, labels: labelsIf(dataset.test.labels) },
      checkpoint: checkpoint ?? undefined, classNames: classNamesOf(dataset), stepsPerSubmit: STEPS_PER_SUBMIT,
      autotune: el.autotune.checked ? {
        browserMajor: browserMajor(navigator.userAgent), cache: indexedDbCache(),
        onStart: () => say('Autotuning the kernels at these sizes (timing each matmul variant, then a 16-step check)…'),
      } : undefined,
    });
    if (tune && tune.from !== 'skipped') sayTune(tune);
    for (const line of messages) say(`${line[0].toUpperCase()}${line.slice(1)}.`); // a skipped autotune, a resume's differences
    const s: Session = {
      dataset, settings, model, epochsDone,
      files: dataset.kind === 'mnist' ? null : picked!.files, // chosenDataset() made it from `picked`
      trainer,
      inference: new Inference(model),
    };
    explorer.attach({ inference: s.inference, latent: settings.latent, rows: dataset.rows, cols: dataset.cols, test: dataset.test, classNames: dataset.classNames, classes });
    controls.set(settings);
    el.conditional.checked = classes > 0;
    showClassControls(dataset, classes);
    objectiveControls.set(objective);
    return s;
  } catch (e) {
    g.freeBuffers(); // whatever was made before the failure
    throw e;
  }
}

/** What the opt-in start-up autotune (src/model/autotune.ts, cached in this browser's storage) did, said. */
function sayTune(tune: AutotuneResult): void {
  console.info(`webgpu-vae: ${autotuneLines(tune)}`);
  say(tune.from === 'cache'
    ? `Kernel plan from this browser's tune cache: ${describePlan(tune.plan)}.`
    : `Autotuned (${tune.report.timing}): ${tune.report.reason}; running ${describePlan(tune.plan)}. The report is in the console.`);
}

/** An image folder's class names (recorded in its checkpoints, checked on resume); idx datasets name none. */
function classNamesOf(dataset: Dataset): string[] | undefined {
  return dataset.kind === 'images' ? dataset.classNames : undefined;
}

/** Frees the model's buffers (datasets included); compiled pipelines stay cached on the device. */
function dropSession(): void {
  session?.model.destroy();
  session = null;
  explorer.attach(null);
}

// ---- Training ------------------------------------------------------------------------------

async function train(s: Session): Promise<void> {
  phase = 'running';
  const run = (gate = new RunGate(() => failed(), (paused) => {
    if (paused) {
      progress.meter.stop();
      say('Paused. Resume continues where training stopped; the explorer and Download work meanwhile.');
    } else {
      progress.meter.start();
    }
    updateButtons();
  }));
  updateButtons();
  const n = s.dataset.train.count;
  const batches = s.model.trainBatches;
  const target = () => controls.read()?.epochs ?? s.settings.epochs;
  chart.truncate(s.epochsDone); // a stopped epoch's steps are trained again
  progress.startRun();
  try {
    const result = await runTraining(s.trainer, { firstEpoch: s.epochsDone + 1, lastEpoch: target, test: true, images: true }, run, {
      onEpochStart(epoch, last) {
        chart.setEpochs(last);
        progress.startEpoch(epoch, last, batches, n);
        say(`Training epoch ${epoch} of ${last}…`);
      },
      onLosses(l) {
        l.losses.forEach((loss, i) => {
          const batch = l.firstBatch + i;
          const rows = s.model.rowsOf(batch, n);
          chart.addTrain(l.epoch - 1 + (batch + 1) / batches, loss / rows);
          progress.addBatch(batch, rows);
        });
      },
      async onEpoch(r) {
        progress.meter.stop();
        if (!r.completed) return;
        s.epochsDone = r.epoch;
        epochReports.push({ epoch: r.epoch, trainLoss: r.trainLoss, testLoss: r.test!.loss });
        progress.testSeconds = r.test!.seconds;
        chart.addTest(r.epoch, r.test!.loss);
        await showModel(s, r);
        await saveLatest(s);
        // The trainer's own clock over the whole epoch: the figure the headless CLI's epoch time gives too.
        epochRates.push(n / r.seconds);
        // With β ≠ 1 or a warm-up the objective optimized is not the loss: say both, labelled as the CLI labels them.
        const { beta = DEFAULT_OBJECTIVE.beta, klWarmup = DEFAULT_OBJECTIVE.klWarmup } = s.model.config;
        const objective = weightedKl(s.model.config) && r.trainObjective !== undefined
          ? ` (objective recon + β·KL, β = ${beta}${klWarmup ? `, warmed up over ${klWarmup} steps` : ''}: ` +
            `${r.trainObjective.toFixed(2)} and ${r.test!.objective!.toFixed(2)})` : '';
        say(`Epoch ${r.epoch}: training loss ${r.trainLoss.toFixed(2)}, test loss ${r.test!.loss.toFixed(2)} per image${objective}; ` +
          `${Math.round(n / r.seconds).toLocaleString('en')} images/s.`);
      },
    });
    const last = result.epochs.at(-1);
    if (failed()) return;
    if (last && !last.completed) {
      // Show what the partly trained weights do (a display only: noise of epoch 0); storage keeps the last completed epoch.
      await s.trainer.testPass();
      await showModel(s);
      say(`Stopped during epoch ${last.epoch}. Continue repeats it; browser storage holds epoch ${s.epochsDone}.`);
    } else if (!result.stopped) {
      progress.finish();
      say(`Done: ${s.epochsDone} epoch${s.epochsDone === 1 ? '' : 's'}. Raise Epochs and press Continue to train further.`);
    }
  } finally {
    gate = null;
  }
}

/**
 * Grids from the last test pass and the fixed prior draw (read now, or the ones an epoch's
 * report brought), and the explorer, for the current weights.
 */
async function showModel(s: Session, report?: EpochReport): Promise<void> {
  const { recon, samples } = report?.images ?? await s.trainer.images();
  const { rows, cols } = s.dataset;
  drawGrid(el.recon, recon, 2 * RECON_COUNT, rows, cols, RECON_COUNT);
  drawGrid(el.samples, samples, sampleCountOf(s.model.sizes), rows, cols, classesOf(s.model.sizes) > 0 ? SAMPLES_PER_CLASS : 8);
  el.imagesEpoch.textContent = `after epoch ${s.epochsDone}`;
  await drawClassSamples(s);
  try {
    await explorer.refresh();
  } catch (e) {
    say(`Latent explorer: ${(e as Error).message}`, 'error');
  }
}

async function checkpointBytes(s: Session): Promise<Uint8Array> {
  return encodeRunCheckpoint(s.model.layout, await s.model.exportState(), {
    epoch: s.epochsDone, seed: s.settings.seed, lr: s.settings.lr, batchSize: s.settings.batchSize, dataset: s.dataset.name, plan: s.model.plan, ...(classNamesOf(s.dataset) ? { classNames: classNamesOf(s.dataset) } : {}),
    ...(s.model.generalObjective ? { beta: s.model.config.beta, klWarmup: s.model.config.klWarmup } : {}),
  });
}

/**
 * Saves the session's latest epoch in browser storage, in place of whatever is there, with the
 * picked files its dataset came from (a reload rebuilds the dataset from them; MNIST comes from
 * the site) in the same transaction, so the stored run and its files always belong together.
 */
async function saveLatest(s: Session): Promise<void> {
  try {
    const record: SavedRun = {
      version: SAVE_VERSION,
      checkpoint: await checkpointBytes(s),
      settings: { ...s.settings, epochs: controls.read()?.epochs ?? s.settings.epochs },
      datasetKind: s.dataset.kind,
      epoch: s.epochsDone,
      savedAt: Date.now(),
      history: chart.data,
    };
    const records: Record<string, unknown> = { [LATEST]: record };
    if (s.files !== storedFiles) {
      const images = s.dataset.images && { size: s.dataset.images.size, fit: s.dataset.images.fit, folder: s.dataset.name };
      records[PICKED_FILES] = s.files ? { kind: s.dataset.kind, files: s.files, images } : undefined;
    }
    await storage.write(records);
    const replaced = stored === 'unrestorable' ? ' in place of the record this page could not restore'
      : stored && stored.owner !== s ? ` in place of the run saved after epoch ${stored.epoch}` : '';
    stored = { epoch: s.epochsDone, owner: s };
    storedFiles = s.files;
    showSaved(`Epoch ${s.epochsDone} is saved in this browser${replaced} (${new Date(record.savedAt).toLocaleTimeString()}); it is restored when the page is opened again.`);
  } catch (e) {
    say(`Could not save the checkpoint in browser storage: ${(e as Error).message}. Download it to keep it.`, 'error');
  }
}

/** Shows what storage holds, then whether the browser promised to keep it. */
function showSaved(text: string): void {
  el.saved.textContent = text;
  persistence ??= (navigator.storage?.persist?.() ?? Promise.resolve(false)).catch(() => false);
  void persistence.then((kept) => {
    if (el.saved.textContent !== text) return; // something newer is shown
    el.saved.textContent = `${text} ${kept
      ? 'The browser granted persistent storage: it will not clear this on its own.'
      : 'The browser did not grant persistent storage, so it may clear this when disk space runs low: download checkpoints you want to keep.'}`;
  });
}

el.start.addEventListener('click', async () => {
  const settings = controls.read();
  if (!settings || phase !== 'ready') return;
  phase = 'busy';
  updateButtons();
  try {
    if (!session) {
      say('Loading the dataset…');
      const dataset = await chosenDataset();
      say(`Compiling the kernels and uploading ${dataset.name}…`);
      session = await createSession(dataset, settings, null, 0);
      chart.clear();
      showDatasetChoice();
    }
    if (session.epochsDone >= settings.epochs) {
      say(`The model has trained ${session.epochsDone} epochs already: raise Epochs to train further.`, 'error');
    } else {
      await train(session);
    }
  } catch (e) {
    if (!failed()) say(`Training failed: ${(e as Error).message}`, 'error');
  } finally {
    if (!failed()) phase = 'ready';
    updateButtons();
  }
});

el.pause.addEventListener('click', () => {
  if (phase !== 'running' || !gate) return;
  if (gate.state === 'paused') {
    gate.resume();
    say('Resumed.');
  } else {
    gate.pause();
    say('Pausing after the steps already queued…');
  }
  updateButtons();
});

el.stop.addEventListener('click', () => {
  if (phase !== 'running' || !gate) return;
  gate.stop();
  say('Stopping after the steps already queued…');
  updateButtons();
});

el.reset.addEventListener('click', async () => {
  if (phase !== 'ready') return;
  phase = 'busy';
  updateButtons();
  dropSession();
  chart.clear();
  clearCanvas(el.recon);
  clearCanvas(el.samples);
  clearCanvas(el.classSamples);
  el.classDraw.hidden = true;
  el.imagesEpoch.textContent = '';
  progress.clear();
  try {
    await storage.clear();
    stored = null;
    storedFiles = null;
    el.saved.textContent = 'Nothing is saved in this browser.';
    say('Reset: no model is loaded and nothing is saved in this browser. Change the settings and press Start.');
  } catch (e) {
    say(`Reset: the model is gone, but browser storage could not be cleared (${(e as Error).message}); a reload may bring the saved run back.`, 'error');
  }
  phase = 'ready';
  showDatasetChoice();
});

// ---- A conditional model: the per-class grid and "draw digits of class k" --------------------

/** Draws for "Draw digits of class k": each press of Draw again takes the next (the library's sample() scheme). */
const CLASS_DRAW_COUNT = 16;
let classDraws = 0;

function showClassControls(dataset: Dataset, classes: number): void {
  el.classDraw.hidden = classes === 0;
  el.samplesCaption.textContent = classes > 0
    ? `One row per class (${dataset.classNames.slice(0, classes).join(', ') || classes}), top to bottom: each row decodes ${SAMPLES_PER_CLASS} draws of z ~ N(0, I) with that label, the same draws every epoch`
    : '64 decodes of one fixed draw z ~ N(0, I)';
  const options = Array.from({ length: classes }, (_, k) => {
    const option = document.createElement('option');
    option.value = String(k);
    option.textContent = dataset.classNames[k] ?? String(k);
    return option;
  });
  el.drawClass.replaceChildren(...options);
}

/** CLASS_DRAW_COUNT decodes of z ~ N(0, I) with the chosen label, from the current weights. */
async function drawClassSamples(s: Session): Promise<void> {
  const classes = classesOf(s.model.sizes);
  if (classes === 0) return;
  const k = Number(el.drawClass.value) || 0;
  const { L } = s.model.sizes;
  const z = Float32Array.from(normals(CLASS_DRAW_COUNT * L, s.settings.seed, classDraws, PHILOX_STREAM.sample));
  // Through the explorer's queue: the two share the session's Inference buffers.
  const images = await explorer.serial(() => s.inference.decode(z, CLASS_DRAW_COUNT, new Uint32Array(CLASS_DRAW_COUNT).fill(k)));
  if (s !== session) return;
  drawGrid(el.classSamples, images, CLASS_DRAW_COUNT, s.dataset.rows, s.dataset.cols, 8);
}

const redrawClass = (next: boolean) => {
  if (!session) return;
  if (next) classDraws++;
  void drawClassSamples(session).catch((e) => say(`Drawing class samples: ${(e as Error).message}`, 'error'));
};
el.drawClass.addEventListener('change', () => redrawClass(false));
el.drawAgain.addEventListener('click', () => redrawClass(true));

// ---- Checkpoints: download, load from a file, restore on reload ------------------------------

/**
 * A checkpoint file and the dataset it trains on, checked before anything is allocated for
 * the file: the sizes its header declares against the bytes it holds (checkpointSizes) and
 * this page's ranges (the settings fields'), then against the dataset, then its tensors.
 */
async function readCheckpoint(bytes: Uint8Array, dataset: () => Promise<Dataset>): Promise<{ ckpt: CheckpointData; dataset: Dataset }> {
  const { sizes } = checkpointSizes(bytes);
  for (const [field, what, value] of [['hidden', 'hidden widths', sizes.hidden], ['latent', 'latent size', sizes.L]] as const) {
    const reason = controls.reasonAgainst(field, value);
    if (reason) throw new Error(`its ${what} ${Array.isArray(value) ? 'are' : 'is'} ${value}, and this page's ${what} ${reason}`);
  }
  const d = await dataset();
  const D = d.rows * d.cols;
  if (sizes.D !== D) {
    throw new Error(`it is for images of ${sizes.D} pixels, but ${d.name} has ${d.rows}×${d.cols} = ${D}; choose its dataset first`);
  }
  // A label at or past the checkpoint's class count would reach the GPU as an all-zero one-hot.
  const classes = classesOf(sizes);
  const bad = classes > 0 && (labelsReason('training', d.train.labels, d.train.count, classes) ?? labelsReason('test', d.test.labels, d.test.count, classes));
  if (bad) {
    const top = classCountOf(d.train.labels, d.test.labels) - 1;
    const why = d.train.labels && d.test.labels && top >= classes ? `${d.name}'s labels go up to ${top}` : bad;
    throw new Error(`this checkpoint is a conditional VAE of ${classes} classes (labels 0 … ${classes - 1}); ${why}: choose the dataset it was trained on`);
  }
  return { ckpt: decodeCheckpoint(bytes, arenaLayout(sizes)), dataset: d };
}

/** Settings for a loaded checkpoint: its sizes, and its optimiser settings when it names them within the page's ranges. */
function settingsFor(ckpt: CheckpointData): Settings {
  const base = controls.read() ?? DEFAULT_SETTINGS;
  const run = readRunMetadata(ckpt.metadata);
  const pick = (field: 'seed' | 'lr' | 'batchSize') => {
    const v = run[field];
    return v !== undefined && controls.reasonAgainst(field, v) === '' ? v : base[field];
  };
  return { ...base, hidden: [...ckpt.sizes.hidden], latent: ckpt.sizes.L, seed: pick('seed'), lr: pick('lr'), batchSize: pick('batchSize') };
}

function epochOf(ckpt: CheckpointData): number {
  return readRunMetadata(ckpt.metadata).epoch;
}

el.download.addEventListener('click', async () => {
  const s = session;
  if (!s) return;
  try {
    const bytes = await checkpointBytes(s);
    const name = `vae-${s.dataset.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${sizesName(s.model.config.sizes)}-epoch${s.epochsDone}.safetensors`;
    const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/octet-stream' }));
    const a = Object.assign(document.createElement('a'), { href: url, download: name });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    say(`Downloaded ${name} (${(bytes.byteLength / 1e6).toFixed(1)} MB: the weights under PyTorch's names, and the Adam state).`);
  } catch (e) {
    say(`Download failed: ${(e as Error).message}`, 'error');
  }
});

el.checkpointFile.addEventListener('change', async () => {
  const file = el.checkpointFile.files?.[0];
  el.checkpointFile.value = '';
  if (!file || phase !== 'ready') return;
  phase = 'busy';
  updateButtons();
  say(`Reading ${file.name}…`);
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const { ckpt, dataset } = await readCheckpoint(bytes, async () => session?.dataset ?? chosenDataset());
    const epoch = epochOf(ckpt);
    session = await createSession(dataset, settingsFor(ckpt), ckpt, epoch);
    chart.clear();
    await session.trainer.testPass();
    await showModel(session);
    showDatasetChoice();
    const loaded = `Loaded ${file.name}: a ${sizesName(ckpt.sizes)} model after ${epoch} epoch${epoch === 1 ? '' : 's'} (${ckpt.step} steps).`;
    if (stored === null) {
      say(`${loaded} Continue trains it further.`);
      await saveLatest(session); // into empty storage: nothing is replaced
    } else {
      // Opening a file to look at it must not replace the run kept in storage: the loaded model
      // takes its place only when it completes an epoch, and the page says so.
      const kept = stored === 'unrestorable' ? 'the record this page could not restore' : `the run saved after epoch ${stored.epoch}`;
      el.saved.textContent = `${file.name} is not saved in this browser: storage keeps ${kept}` +
        `${stored === 'unrestorable' ? ' (Reset deletes it)' : ', which a reload restores,'} until this model completes an epoch.`;
      say(`${loaded} It is not saved in this browser: storage keeps ${kept} until Continue completes an epoch of this model.`);
    }
  } catch (e) {
    say(`Could not load ${file.name}: ${(e as Error).message}. Nothing was changed.`, 'error');
  } finally {
    if (!failed()) phase = 'ready';
    updateButtons();
  }
});

async function restoreLatest(): Promise<void> {
  let record: unknown;
  try {
    record = await storage.get(LATEST);
  } catch (e) {
    say(`${(e as Error).message}: runs will not be kept across reloads.`, 'error');
    return;
  }
  if (record === undefined) return;
  const problem = savedRunProblem(record);
  if (problem) {
    unrestorable(problem);
    return;
  }
  const saved = record as SavedRun;
  phase = 'busy';
  updateButtons();
  say(`Restoring the run saved after epoch ${saved.epoch} (${new Date(saved.savedAt).toLocaleString()})…`);
  try {
    el.dataset.value = saved.datasetKind;
    if (saved.datasetKind !== 'mnist') {
      const files = await storage.get<{ kind: 'fashion' | 'files' | 'images'; files: PickedFile[]; images?: { size: number; fit: FitRule; folder: string } }>(PICKED_FILES);
      if (!files) throw new Error('its dataset files are no longer in browser storage; pick them again, then load a downloaded checkpoint');
      if (files.kind === 'images' && files.images) {
        el.imageSize.value = String(files.images.size);
        el.imageFit.value = files.images.fit;
        picked = { kind: 'images', files: files.files, dataset: await loadImages(files.images.folder, files.files, files.images) };
        pickedFolder = { name: files.images.folder, files: files.files, skipped: [] };
      } else {
        if (files.kind === 'images') throw new Error('its image folder\'s size and fit are not in browser storage; pick the folder again');
        picked = { kind: files.kind, files: files.files, dataset: await loadPicked(files.kind, files.files) };
      }
    }
    const { ckpt, dataset } = await readCheckpoint(saved.checkpoint, chosenDataset);
    if (!sameSizes(ckpt.sizes, { ...ckpt.sizes, hidden: saved.settings.hidden, L: saved.settings.latent })) {
      throw new Error(`its settings (hidden widths ${saved.settings.hidden}, latent size ${saved.settings.latent}) do not match its checkpoint's ${sizesName(ckpt.sizes)} model`);
    }
    session = await createSession(dataset, saved.settings, ckpt, saved.epoch);
    stored = { epoch: saved.epoch, owner: session };
    storedFiles = session.files;
    controls.set({ epochs: saved.settings.epochs });
    chart.data = saved.history;
    chart.setEpochs(saved.settings.epochs);
    await session.trainer.testPass();
    await showModel(session);
    showDatasetChoice();
    showSaved(`Restored epoch ${saved.epoch} from this browser's storage.`);
    say(`Restored the run saved after epoch ${saved.epoch}. Continue trains further; Reset starts over.`);
  } catch (e) {
    if (!failed()) unrestorable((e as Error).message);
  } finally {
    if (!failed()) phase = 'ready';
    updateButtons();
  }
}

/** Why a stored record is not a run this page can restore (written by another version of the page, or damaged), or ''. */
function savedRunProblem(record: unknown): string {
  if (typeof record !== 'object' || record === null) return 'the record is not a saved run';
  const r = record as Partial<Record<keyof SavedRun, unknown>>;
  if (r.version !== SAVE_VERSION) {
    // Records before the version field are format 1.
    const version = r.version ?? 1;
    const which = typeof version === 'number' && version > SAVE_VERSION ? 'a newer' : 'an older';
    return `it was saved by ${which} version of this page (format ${String(version)}; this page reads format ${SAVE_VERSION})`;
  }
  if (!(r.checkpoint instanceof Uint8Array)) return 'its checkpoint is missing';
  if (!DATASET_KINDS.includes(r.datasetKind as DatasetKind)) return `its dataset kind ${JSON.stringify(r.datasetKind)} is not one this page knows`;
  if (!Number.isSafeInteger(r.epoch) || (r.epoch as number) < 0) return `its epoch count ${JSON.stringify(r.epoch)} is not a count`;
  if (typeof r.savedAt !== 'number') return 'its date is missing';
  const settings = (r.settings ?? {}) as Record<string, unknown>;
  for (const name of SETTING_NAMES) {
    const reason = controls.reasonAgainst(name, settings[name]);
    if (reason) return `its setting ${name} is ${JSON.stringify(settings[name])}, which ${reason}`;
  }
  const h = r.history as Partial<LossHistory> | undefined;
  const points = (a: unknown) => Array.isArray(a) && a.length % 2 === 0 && a.every((v) => typeof v === 'number');
  if (!points(h?.train) || !points(h?.test)) return 'its loss history is damaged';
  return '';
}

/** Says why the stored run cannot be restored, once, at start-up; Reset deletes it, and nothing replaces it unasked. */
function unrestorable(why: string): void {
  stored = 'unrestorable';
  say(`The run saved in this browser cannot be restored: ${why}. Reset deletes it; a model you train replaces it after its first epoch.`, 'error');
  el.saved.textContent = 'Browser storage holds a run this page cannot restore; Reset deletes it.';
}

/** The page's state, read-only: for the end-to-end test and the curious (`vaePage` in the console). */
export interface PageState {
  readonly phase: Phase;
  /** Completed epochs of the current model (0 without one). */
  readonly epochsDone: number;
  /** Training rate of the current run (pauses and test passes excluded). */
  readonly imagesPerSecond: number;
  /** Images per second of each epoch completed since the page loaded, by the trainer's clock. */
  readonly epochRates: number[];
  /** GPU submits of the page's runtime, as it counts them at queue.submit. */
  readonly submits: number;
  /** Every epoch completed since the page loaded: the driver's train and test losses. */
  readonly epochReports: { epoch: number; trainLoss: number; testLoss: number }[];
  readonly lossHistory: LossHistory;
}

declare global {
  interface Window {
    vaePage?: PageState;
  }
}

window.vaePage = {
  get phase() { return phase; },
  get epochsDone() { return session?.epochsDone ?? 0; },
  get imagesPerSecond() { return progress.meter.rate; },
  get epochRates() { return [...epochRates]; },
  get submits() { return gpu?.counters().submits ?? 0; },
  get epochReports() { return [...epochReports]; },
  get lossHistory() { return chart.data; },
};

void boot().catch((e) => {
  if (e instanceof GpuError) fail(e);
  else say(`The page failed to start: ${(e as Error).message}`, 'error');
});
