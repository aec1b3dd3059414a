/**
 * The training page: a person picks a dataset and settings, presses Start and watches the VAE
 * learn. The engine runs on the main thread: every GPU call is asynchronous and the trainer
 * awaits between submits, so the page stays responsive without a Worker; views redraw a few
 * times a second at most, whatever the rate at which losses come back.
 *
 * One model (a "session") exists at a time. Its shape, batch size, learning rate, seed and
 * dataset are fixed until Reset; the epoch target stays editable, and Start continues a
 * stopped, finished or restored run up to it.
 *
 * This file wires the page's buttons to its modules: the state they share (./app.ts), the
 * dataset choice (./dataset-choice.ts), sessions (./engine.ts), training (./training.ts), the
 * run kept in browser storage (./saved-run.ts, owned by one tab at a time: ./tab-lock.ts),
 * checkpoint files (./checkpoint-files.ts), the grids (./model-views.ts) and the test hook.
 */
import { adapterName } from '../gpu/adapter';
import { Gpu, GpuError, LOST_DEVICE_ADVICE } from '../gpu/device';
import { failed, findElements, initialState, type App } from './app';
import { clearCanvas, LossChart } from './charts';
import { wireCheckpointFiles } from './checkpoint-files';
import { Controls, DEFAULT_SETTINGS } from './controls';
import type { DatasetKind } from './data';
import { chosenDataset, imageOptions, showDatasetChoice, wireDatasetChoice } from './dataset-choice';
import { createSession, dropSession, inputOf } from './engine';
import { Explorer } from './explorer';
import { ModelPicker } from './model-picker';
import { wireClassDraws } from './model-views';
import { ObjectiveControls } from './objective';
import { ProgressView } from './progress';
import { clearSaved, restoreLatest } from './saved-run';
import { ownSavedRun } from './tab-lock';
import { installTestHook } from './test-hook';
import { train } from './training';
import { indexedDbCache } from './tune-cache';

function positiveInteger(text: string | null): number | undefined {
  if (text === null) return undefined;
  const v = Number(text);
  return Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

const query = new URLSearchParams(location.search);
const el = findElements();
const state = initialState();

function say(text: string, kind: 'info' | 'error' = 'info'): void {
  el.message.textContent = text;
  el.message.className = `message ${kind}`;
  if (kind === 'error') console.error(text);
}

function updateButtons(): void {
  const { phase, session, gate, picked } = state;
  const ready = phase === 'ready';
  const training = phase === 'running';
  const kind = el.dataset.value as DatasetKind;
  const datasetChosen = kind === 'mnist' || picked?.kind === kind || session !== null;
  // First, so that a field the chosen model does not use blocks nothing below.
  const why = modelPicker.fieldsWhy();
  controls.setApplies('hidden', why.hidden);
  controls.setApplies('latent', why.latent);
  const modelOk = session !== null || modelPicker.valid; // read every time: the dataset's shape may have changed
  el.start.disabled =
    !ready ||
    !controls.valid ||
    !datasetChosen ||
    (kind === 'images' && !imageOptions(app)) ||
    !modelOk ||
    (!session && !objectiveControls.valid);
  el.start.textContent = session ? 'Continue' : 'Start';
  el.pause.disabled = !training;
  el.pause.textContent = gate?.state === 'paused' ? 'Resume' : 'Pause';
  el.stop.disabled = !training;
  el.reset.disabled = !ready; // with no model too: it also clears storage, which may hold a run that cannot be restored
  el.download.disabled = !session || phase === 'busy' || phase === 'failed';
  el.checkpointFile.disabled = !ready;
  el.dataset.disabled = el.datasetFiles.disabled = !ready || session !== null;
  el.folder.disabled =
    el.imageSize.disabled =
    el.imageFit.disabled =
    el.imageChannels.disabled =
      !ready || session !== null;
  el.conditional.disabled = !ready || session !== null;
  el.autotune.disabled = !ready || session !== null; // the plan is chosen when a model is made
  controls.setLocked(session !== null || !(ready || training));
  objectiveControls.setLocked(session !== null || !(ready || training));
  modelPicker.setLocked(session !== null || !(ready || training));
}

const controls = new Controls(() => updateButtons());
const objectiveControls = new ObjectiveControls(() => updateButtons());
const modelPicker = new ModelPicker(
  () => updateButtons(),
  () => ({ input: chosenInput(), latent: controls.read()?.latent ?? DEFAULT_SETTINGS.latent }),
);

/** The shape of the images the next model trains on, when known without loading anything: a spec is checked against it as it is typed. */
function chosenInput(): number[] | null {
  const kind = el.dataset.value as DatasetKind;
  if (state.session) return inputOf(state.session.dataset);
  if (kind === 'mnist') return [1, 28, 28];
  return state.picked?.kind === kind ? inputOf(state.picked.dataset) : null;
}
const app: App = {
  state,
  el,
  controls,
  objectiveControls,
  modelPicker,
  chart: new LossChart(el.lossChart),
  progress: new ProgressView(),
  explorer: new Explorer((e) => say(`Latent explorer: ${e.message}`, 'error')),
  tuneCache: indexedDbCache(),
  limits: { train: positiveInteger(query.get('limit')), test: positiveInteger(query.get('testLimit')) },
  say,
  updateButtons,
};
const { chart, progress } = app;

// ---- Start-up: adapter report, or the no-WebGPU message --------------------------------------

async function boot(): Promise<void> {
  try {
    state.gpu = await Gpu.create({
      onLost: (e) => fail(e),
      onUncapturedError: (e) => fail(e),
    });
  } catch (e) {
    // WebGPU is there but the adapter falls short of the model's limits: a different headline.
    if (e instanceof GpuError && e.kind === 'limits')
      el.noWebgpuTitle.textContent = 'This WebGPU adapter cannot hold the model';
    else el.adapter.textContent = 'No WebGPU adapter.';
    el.noWebgpuDetail.textContent = (e as Error).message;
    el.noWebgpu.hidden = false;
    el.app.hidden = true;
    state.phase = 'failed';
    return;
  }
  reportAdapter(state.gpu);
  let waited = false;
  await ownSavedRun(() => {
    waited = true;
    state.phase = 'waiting';
    say(
      'This page is open in another tab, which owns the run saved in this browser. This tab waits until that one is closed, then restores the run it left.',
    );
    updateButtons();
  });
  if (failed(app)) return;
  if (waited) say('The other tab was closed: this tab owns the run saved in this browser now.');
  state.phase = 'ready';
  showDatasetChoice(app);
  updateButtons();
  await restoreLatest(app);
}

/** Names the adapter the engine acquired and says plainly when it is a software one. */
function reportAdapter(g: Gpu): void {
  const a = g.adapter!; // Gpu.create() requested it
  el.adapter.textContent =
    `WebGPU adapter: ${adapterName(a)}. ` +
    (a.software
      ? (a.forcedFallback ? 'The browser offered no GPU adapter, only its fallback: ' : '') +
        "This is a software (fallback) adapter: the GPU work runs on the CPU, so training is far slower than on a real GPU and its speeds are not a GPU's."
      : 'A hardware adapter.');
  el.adapter.classList.toggle('software', a.software);
}

function fail(e: Error): void {
  if (state.phase === 'failed') return;
  state.phase = 'failed';
  state.gate?.stop();
  // The engine's advice (load the checkpoint on a new device) is what a reload does here.
  const what = e.message.replace(` ${LOST_DEVICE_ADVICE}`, '');
  const saved = state.session?.epochsDone
    ? `epoch ${state.session.epochsDone}, saved in this browser, is restored`
    : 'nothing had been saved yet';
  say(`${what} Training stopped; reload the page: ${saved}.`, 'error');
  updateButtons();
}

// ---- Start, Pause, Stop and Reset ------------------------------------------------------------

el.start.addEventListener('click', async () => {
  const settings = controls.read();
  if (!settings || state.phase !== 'ready') return;
  state.phase = 'busy';
  updateButtons();
  try {
    if (!state.session) {
      say('Loading the dataset…');
      const dataset = await chosenDataset(app);
      say(`Compiling the kernels and uploading ${dataset.name}…`);
      state.session = await createSession(app, dataset, settings, null, 0);
      chart.clear();
      showDatasetChoice(app);
    }
    if (state.session.epochsDone >= settings.epochs) {
      say(`The model has trained ${state.session.epochsDone} epochs already: raise Epochs to train further.`, 'error');
    } else {
      await train(app, state.session);
    }
  } catch (e) {
    if (!failed(app)) say(`Training failed: ${(e as Error).message}`, 'error');
  } finally {
    if (!failed(app)) state.phase = 'ready';
    updateButtons();
  }
});

el.pause.addEventListener('click', () => {
  const { gate } = state;
  if (state.phase !== 'running' || !gate) return;
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
  if (state.phase !== 'running' || !state.gate) return;
  state.gate.stop();
  say('Stopping after the steps already queued…');
  updateButtons();
});

el.reset.addEventListener('click', async () => {
  if (state.phase !== 'ready') return;
  state.phase = 'busy';
  updateButtons();
  dropSession(app);
  chart.clear();
  clearCanvas(el.recon);
  clearCanvas(el.samples);
  clearCanvas(el.classSamples);
  el.classDraw.hidden = true;
  el.imagesEpoch.textContent = '';
  progress.clear();
  try {
    await clearSaved(app);
    say('Reset: no model is loaded and nothing is saved in this browser. Change the settings and press Start.');
  } catch (e) {
    say(
      `Reset: the model is gone, but browser storage could not be cleared (${(e as Error).message}); a reload may bring the saved run back.`,
      'error',
    );
  }
  state.phase = 'ready';
  showDatasetChoice(app);
});

wireDatasetChoice(app);
wireCheckpointFiles(app);
wireClassDraws(app);
installTestHook(app);

void boot().catch((e) => {
  if (e instanceof GpuError) fail(e);
  else say(`The page failed to start: ${(e as Error).message}`, 'error');
});
