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
import { checkpointSizes, decodeCheckpoint, encodeCheckpoint, type CheckpointData } from '../model/checkpoint';
import { Inference } from '../model/inference';
import { arenaLayout } from '../model/params';
import { Trainer } from '../model/trainer';
import { RECON_COUNT, SAMPLE_COUNT, uploadImages, VaeModel } from '../model/vae';
import { clearCanvas, drawGrid, LossChart, type LossHistory } from './charts';
import { Controls, DEFAULT_SETTINGS, type Settings } from './controls';
import { describeDataset, limitDataset, loadMnist, loadPicked, type Dataset, type DatasetKind, type PickedFile } from './data';
import { Explorer } from './explorer';
import { ProgressView } from './progress';
import { storage } from './storage';

/** As the headless CLI's default, so the page and the CLI measure the same schedule. */
const STEPS_PER_SUBMIT = 16;

/** The browser-storage record of the latest completed epoch. */
interface SavedRun {
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

interface Session {
  dataset: Dataset;
  settings: Settings;
  model: VaeModel;
  trainer: Trainer;
  inference: Inference;
  /** Completed epochs (a stopped epoch does not count; Start repeats it). */
  epochsDone: number;
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
  download: $<HTMLButtonElement>('download'), checkpointFile: $<HTMLInputElement>('checkpoint-file'), saved: $('saved'),
};

const query = new URLSearchParams(location.search);
const TRAIN_LIMIT = positiveInteger(query.get('limit'));
const TEST_LIMIT = positiveInteger(query.get('testLimit'));

let gpu: Gpu | null = null;
let session: Session | null = null;
let phase: Phase = 'booting';
let picked: { kind: 'fashion' | 'files'; files: PickedFile[]; dataset: Dataset } | null = null;
let mnist: Promise<Dataset> | null = null;
let paused = false;
let stopRequested = false;
let resumeTraining: (() => void) | null = null;
/** Images per second of each completed epoch this page trained. */
const epochRates: number[] = [];

const controls = new Controls(() => updateButtons());
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
  el.start.disabled = !ready || !controls.valid || !datasetChosen;
  el.start.textContent = session ? 'Continue' : 'Start';
  el.pause.disabled = !training;
  el.pause.textContent = paused ? 'Resume' : 'Pause';
  el.stop.disabled = !training;
  el.reset.disabled = !ready || !session;
  el.download.disabled = !session || phase === 'busy' || phase === 'failed';
  el.checkpointFile.disabled = !ready;
  el.dataset.disabled = el.datasetFiles.disabled = !ready || session !== null;
  controls.setLocked(session !== null || !(ready || training));
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
  paused = false;
  stopRequested = true;
  resumeTraining?.();
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
  el.datasetFilesRow.hidden = kind === 'mnist';
  if (kind !== 'mnist') el.datasetHint.textContent = HINTS[kind];
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
  }
  return limitDataset(full, TRAIN_LIMIT, TEST_LIMIT);
}

// ---- Sessions: a model on the GPU with its dataset ------------------------------------------

async function createSession(dataset: Dataset, settings: Settings, checkpoint: CheckpointData | null, epochsDone: number): Promise<Session> {
  if (settings.batchSize > dataset.train.count) {
    throw new Error(`the batch size (${settings.batchSize}) is larger than the ${dataset.train.count} training images; lower it`);
  }
  dropSession();
  const g = gpu!;
  try {
    const train = uploadImages(g, 'train', dataset.train.pixels, dataset.train.count);
    const test = uploadImages(g, 'test', dataset.test.pixels, dataset.test.count);
    const model = await VaeModel.create(g, {
      sizes: { D: dataset.rows * dataset.cols, H: settings.hidden, L: settings.latent },
      batchSize: settings.batchSize,
      seed: settings.seed,
      adam: { lr: settings.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
    }, train, test);
    if (checkpoint) model.importState(checkpoint);
    const s: Session = {
      dataset, settings, model, epochsDone,
      trainer: new Trainer(model, { stepsPerSubmit: STEPS_PER_SUBMIT }),
      inference: new Inference(model),
    };
    explorer.attach({ inference: s.inference, latent: settings.latent, rows: dataset.rows, cols: dataset.cols, test: dataset.test, classNames: dataset.classNames });
    controls.set(settings);
    return s;
  } catch (e) {
    g.destroy(); // whatever was made before the failure
    throw e;
  }
}

/** Frees the model's buffers (datasets included); compiled pipelines stay cached on the device. */
function dropSession(): void {
  session?.model.destroy();
  session = null;
  explorer.attach(null);
}

// ---- Training ------------------------------------------------------------------------------

/** Polled by the trainer between submits: true stops; while paused it returns a promise settled on Resume or Stop. */
function shouldStop(): boolean | Promise<boolean> {
  if (stopRequested) return true;
  if (!paused) return false;
  progress.meter.stop();
  say('Paused. Resume continues where training stopped; the explorer and Download work meanwhile.');
  return new Promise((resolve) => {
    resumeTraining = () => {
      resumeTraining = null;
      progress.meter.start();
      resolve(stopRequested);
    };
  });
}

async function train(s: Session): Promise<void> {
  phase = 'running';
  paused = false;
  stopRequested = false;
  updateButtons();
  const n = s.dataset.train.count;
  const batches = s.model.trainBatches;
  chart.truncate(s.epochsDone); // a stopped epoch's steps are trained again
  progress.startRun();
  let stoppedInEpoch = 0;
  for (;;) {
    const target = controls.read()?.epochs ?? s.settings.epochs;
    if (stopRequested || s.epochsDone >= target) break;
    const epoch = s.epochsDone + 1;
    chart.setEpochs(target);
    progress.startEpoch(epoch, target, batches, n);
    say(`Training epoch ${epoch} of ${target}…`);
    const result = await s.trainer.trainEpoch(epoch, (l) => {
      l.losses.forEach((loss, i) => {
        const batch = l.firstBatch + i;
        const rows = s.model.rowsOf(batch, n);
        chart.addTrain(epoch - 1 + (batch + 1) / batches, loss / rows);
        progress.addBatch(batch, rows);
      });
    }, shouldStop);
    progress.meter.stop();
    if (!result.completed) {
      stoppedInEpoch = epoch;
      break;
    }
    s.epochsDone = epoch;
    say(`Epoch ${epoch}: average training loss ${result.averageLoss.toFixed(2)}; testing…`);
    const test = await s.trainer.testPass();
    progress.testSeconds = test.seconds;
    chart.addTest(epoch, test.averageLoss);
    await showModel(s);
    await saveLatest(s);
    // The trainer's own clock over the whole epoch: the figure the headless CLI's epoch time gives too.
    epochRates.push(n / result.seconds);
    say(`Epoch ${epoch}: training loss ${result.averageLoss.toFixed(2)}, test loss ${test.averageLoss.toFixed(2)} per image; ` +
      `${Math.round(n / result.seconds).toLocaleString('en')} images/s.`);
  }
  if (stoppedInEpoch) {
    // Show what the partly trained weights do; storage keeps the last completed epoch.
    await s.trainer.testPass();
    await showModel(s);
    say(`Stopped during epoch ${stoppedInEpoch}. Continue repeats it; browser storage holds epoch ${s.epochsDone}.`);
  } else if (!stopRequested) {
    progress.finish();
    say(`Done: ${s.epochsDone} epoch${s.epochsDone === 1 ? '' : 's'}. Raise Epochs and press Continue to train further.`);
  }
}

/** Grids from the last test pass and the fixed prior draw, and the explorer, for the current weights. */
async function showModel(s: Session): Promise<void> {
  const { recon, samples } = await s.trainer.images();
  const { rows, cols } = s.dataset;
  drawGrid(el.recon, recon, 2 * RECON_COUNT, rows, cols, RECON_COUNT);
  drawGrid(el.samples, samples, SAMPLE_COUNT, rows, cols, 8);
  el.imagesEpoch.textContent = `after epoch ${s.epochsDone}`;
  try {
    await explorer.refresh();
  } catch (e) {
    say(`Latent explorer: ${(e as Error).message}`, 'error');
  }
}

async function checkpointBytes(s: Session): Promise<Uint8Array> {
  const state = await s.model.exportState();
  return encodeCheckpoint(s.model.layout, {
    ...state,
    metadata: {
      epoch: String(s.epochsDone), seed: String(s.settings.seed), lr: String(s.settings.lr),
      batch_size: String(s.settings.batchSize), dataset: s.dataset.name,
    },
  });
}

/** A reload rebuilds a picked dataset from storage (MNIST comes from the site). */
async function rememberPickedFiles(dataset: Dataset): Promise<void> {
  if (dataset.kind === 'mnist' || !picked) return;
  try {
    await storage.put(PICKED_FILES, { kind: picked.kind, files: picked.files });
  } catch (e) {
    el.saved.textContent = `The dataset files could not be kept in browser storage (${(e as Error).message}): after a reload, pick them again and load a downloaded checkpoint.`;
  }
}

async function saveLatest(s: Session): Promise<void> {
  try {
    const record: SavedRun = {
      checkpoint: await checkpointBytes(s),
      settings: { ...s.settings, epochs: controls.read()?.epochs ?? s.settings.epochs },
      datasetKind: s.dataset.kind,
      epoch: s.epochsDone,
      savedAt: Date.now(),
      history: chart.data,
    };
    await storage.put(LATEST, record);
    el.saved.textContent = `Epoch ${s.epochsDone} is saved in this browser (${new Date(record.savedAt).toLocaleTimeString()}); it is restored when the page is opened again.`;
  } catch (e) {
    say(`Could not save the checkpoint in browser storage: ${(e as Error).message}. Download it to keep it.`, 'error');
  }
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
      await rememberPickedFiles(dataset);
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
    paused = false;
    if (!failed()) phase = 'ready';
    updateButtons();
  }
});

el.pause.addEventListener('click', () => {
  if (phase !== 'running') return;
  paused = !paused;
  if (paused) say('Pausing after the steps already queued…');
  else {
    say('Resumed.');
    resumeTraining?.();
  }
  updateButtons();
});

el.stop.addEventListener('click', () => {
  if (phase !== 'running') return;
  stopRequested = true;
  paused = false;
  say('Stopping after the steps already queued…');
  resumeTraining?.();
  updateButtons();
});

el.reset.addEventListener('click', async () => {
  if (phase !== 'ready') return;
  phase = 'busy';
  dropSession();
  chart.clear();
  clearCanvas(el.recon);
  clearCanvas(el.samples);
  el.imagesEpoch.textContent = '';
  progress.clear();
  await Promise.all([storage.remove(LATEST), storage.remove(PICKED_FILES)]).catch(() => {});
  el.saved.textContent = 'Nothing is saved in this browser.';
  say('Reset: the model and its saved checkpoint are gone. Change the settings and press Start.');
  phase = 'ready';
  showDatasetChoice();
});

// ---- Checkpoints: download, load from a file, restore on reload ------------------------------

/**
 * A checkpoint file and the dataset it trains on, checked before anything is allocated for
 * the file: the sizes its header declares against the bytes it holds (checkpointSizes) and
 * this page's ranges (the settings fields'), then against the dataset, then its tensors.
 */
async function readCheckpoint(bytes: Uint8Array, dataset: () => Promise<Dataset>): Promise<{ ckpt: CheckpointData; dataset: Dataset }> {
  const { sizes } = checkpointSizes(bytes);
  for (const [field, what, value] of [['hidden', 'hidden units', sizes.H], ['latent', 'latent size', sizes.L]] as const) {
    const reason = controls.reasonAgainst(field, value);
    if (reason) throw new Error(`its ${what} is ${value}, and this page's ${what} ${reason}`);
  }
  const d = await dataset();
  const D = d.rows * d.cols;
  if (sizes.D !== D) {
    throw new Error(`it is for images of ${sizes.D} pixels, but ${d.name} has ${d.rows}×${d.cols} = ${D}; choose its dataset first`);
  }
  return { ckpt: decodeCheckpoint(bytes, arenaLayout(sizes)), dataset: d };
}

/** Settings for a loaded checkpoint: its sizes, and its optimiser settings when it names them within the page's ranges. */
function settingsFor(ckpt: CheckpointData): Settings {
  const base = controls.read() ?? DEFAULT_SETTINGS;
  const meta = (key: string, field: keyof Settings) => {
    const v = Number(ckpt.metadata[key]);
    return ckpt.metadata[key] !== undefined && controls.reasonAgainst(field, v) === '' ? v : base[field];
  };
  return {
    ...base,
    hidden: ckpt.sizes.H,
    latent: ckpt.sizes.L,
    seed: meta('seed', 'seed'),
    lr: meta('lr', 'lr'),
    batchSize: meta('batch_size', 'batchSize'),
  };
}

function epochOf(ckpt: CheckpointData): number {
  const e = Number(ckpt.metadata.epoch);
  return Number.isSafeInteger(e) && e >= 0 ? e : 0;
}

el.download.addEventListener('click', async () => {
  const s = session;
  if (!s) return;
  try {
    const bytes = await checkpointBytes(s);
    const { D, H, L } = s.model.config.sizes;
    const name = `vae-${s.dataset.name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${D}-${H}-${L}-epoch${s.epochsDone}.safetensors`;
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
    await rememberPickedFiles(dataset);
    chart.clear();
    await session.trainer.testPass();
    await showModel(session);
    await saveLatest(session);
    showDatasetChoice();
    say(`Loaded ${file.name}: a ${ckpt.sizes.D}-${ckpt.sizes.H}-${ckpt.sizes.L} model after ${epoch} epochs (${ckpt.step} steps). Continue trains it further.`);
  } catch (e) {
    say(`Could not load ${file.name}: ${(e as Error).message}. Nothing was changed.`, 'error');
  } finally {
    if (!failed()) phase = 'ready';
    updateButtons();
  }
});

async function restoreLatest(): Promise<void> {
  let saved: SavedRun | undefined;
  try {
    saved = await storage.get<SavedRun>(LATEST);
  } catch (e) {
    say(`${(e as Error).message}: runs will not be kept across reloads.`, 'error');
    return;
  }
  if (!saved) return;
  phase = 'busy';
  updateButtons();
  say(`Restoring the run saved after epoch ${saved.epoch} (${new Date(saved.savedAt).toLocaleString()})…`);
  try {
    el.dataset.value = saved.datasetKind;
    if (saved.datasetKind !== 'mnist') {
      const files = await storage.get<{ kind: 'fashion' | 'files'; files: PickedFile[] }>(PICKED_FILES);
      if (!files) throw new Error('its dataset files are no longer in browser storage; pick them again, then load a downloaded checkpoint');
      picked = { ...files, dataset: await loadPicked(files.kind, files.files) };
    }
    const { ckpt, dataset } = await readCheckpoint(saved.checkpoint, chosenDataset);
    if (ckpt.sizes.H !== saved.settings.hidden || ckpt.sizes.L !== saved.settings.latent) {
      throw new Error(`its settings (${saved.settings.hidden} hidden units, latent size ${saved.settings.latent}) do not match its checkpoint's ${ckpt.sizes.D}-${ckpt.sizes.H}-${ckpt.sizes.L} model`);
    }
    session = await createSession(dataset, saved.settings, ckpt, saved.epoch);
    controls.set({ epochs: saved.settings.epochs });
    chart.data = saved.history;
    chart.setEpochs(saved.settings.epochs);
    await session.trainer.testPass();
    await showModel(session);
    showDatasetChoice();
    el.saved.textContent = `Restored epoch ${saved.epoch} from this browser's storage.`;
    say(`Restored the run saved after epoch ${saved.epoch}. Continue trains further; Reset starts over.`);
  } catch (e) {
    say(`Could not restore the saved run: ${(e as Error).message}`, 'error');
  } finally {
    if (!failed()) phase = 'ready';
    updateButtons();
  }
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
  /** GPU submits of the current model's trainer. */
  readonly submits: number;
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
  get submits() { return session?.trainer.counters.submits ?? 0; },
  get lossHistory() { return chart.data; },
};

void boot().catch((e) => {
  if (e instanceof GpuError) fail(e);
  else say(`The page failed to start: ${(e as Error).message}`, 'error');
});
