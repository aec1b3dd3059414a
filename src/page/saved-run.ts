/**
 * The run kept in browser storage (./storage.ts): saved after every completed epoch, with the
 * picked files its dataset came from, restored when the page opens, deleted by Reset. One tab at
 * a time owns it (./tab-lock.ts), so no other tab of this page overwrites or deletes it meanwhile.
 * The model is the checkpoint's (a spec model's spec is in its metadata), which the picker then
 * shows; an image folder's size, fit and colour are kept with its files.
 */
import { sameSizes, sizesName } from '../model/graph';
import { CHANNELS_DEFAULT, type Channels, type FitRule } from '../model/settings';
import { failed, type App, type Session } from './app';
import type { LossHistory } from './charts';
import { SETTING_NAMES, type Settings } from './controls';
import { loadImages, loadPicked, type DatasetKind, type PickedFile } from './data';
import { chosenDataset, showDatasetChoice } from './dataset-choice';
import { checkpointBytes, createSession, readCheckpoint } from './engine';
import { showModel } from './model-views';
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
const DATASET_KINDS: readonly DatasetKind[] = ['mnist', 'fashion', 'files', 'cifar10', 'images'];

/**
 * Saves the session's latest epoch in browser storage, in place of whatever is there, with the
 * picked files its dataset came from (a reload rebuilds the dataset from them; MNIST comes from
 * the site) in the same transaction, so the stored run and its files always belong together.
 */
export async function saveLatest(app: App, s: Session): Promise<void> {
  const { state } = app;
  try {
    const record: SavedRun = {
      version: SAVE_VERSION,
      checkpoint: await checkpointBytes(s),
      settings: { ...s.settings, epochs: app.controls.read()?.epochs ?? s.settings.epochs },
      datasetKind: s.dataset.kind,
      epoch: s.epochsDone,
      savedAt: Date.now(),
      history: app.chart.data,
    };
    const records: Record<string, unknown> = { [LATEST]: record };
    if (s.files !== state.storedFiles) {
      const images = s.dataset.images && {
        size: s.dataset.images.size,
        fit: s.dataset.images.fit,
        channels: s.dataset.images.channels,
        folder: s.dataset.name,
      };
      records[PICKED_FILES] = s.files ? { kind: s.dataset.kind, files: s.files, images } : undefined;
    }
    await storage.write(records);
    const replaced =
      state.stored === 'unrestorable'
        ? ' in place of the record this page could not restore'
        : state.stored && state.stored.owner !== s
          ? ` in place of the run saved after epoch ${state.stored.epoch}`
          : '';
    state.stored = { epoch: s.epochsDone, owner: s };
    state.storedFiles = s.files;
    showSaved(
      app,
      `Epoch ${s.epochsDone} is saved in this browser${replaced} (${new Date(record.savedAt).toLocaleTimeString()}); it is restored when the page is opened again.`,
    );
  } catch (e) {
    app.say(
      `Could not save the checkpoint in browser storage: ${(e as Error).message}. Download it to keep it.`,
      'error',
    );
  }
}

/** Shows what storage holds, then whether the browser promised to keep it. */
function showSaved({ el, state }: App, text: string): void {
  el.saved.textContent = text;
  state.persistence ??= (navigator.storage?.persist?.() ?? Promise.resolve(false)).catch(() => false);
  void state.persistence.then((kept) => {
    if (el.saved.textContent !== text) return; // something newer is shown
    el.saved.textContent = `${text} ${
      kept
        ? 'The browser granted persistent storage: it will not clear this on its own.'
        : 'The browser did not grant persistent storage, so it may clear this when disk space runs low: download checkpoints you want to keep.'
    }`;
  });
}

/** Deletes every record (Reset). Throws when storage cannot be cleared; the state then still says what it holds. */
export async function clearSaved({ el, state }: App): Promise<void> {
  await storage.clear();
  state.stored = null;
  state.storedFiles = null;
  el.saved.textContent = 'Nothing is saved in this browser.';
}

/** Restores the stored run, if there is one, as the session; or says why it cannot. */
export async function restoreLatest(app: App): Promise<void> {
  const { el, state, say } = app;
  let record: unknown;
  try {
    record = await storage.get(LATEST);
  } catch (e) {
    say(`${(e as Error).message}: runs will not be kept across reloads.`, 'error');
    return;
  }
  if (record === undefined) return;
  const problem = savedRunProblem(app, record);
  if (problem) {
    unrestorable(app, problem);
    return;
  }
  const saved = record as SavedRun;
  state.phase = 'busy';
  app.updateButtons();
  say(`Restoring the run saved after epoch ${saved.epoch} (${new Date(saved.savedAt).toLocaleString()})…`);
  try {
    el.dataset.value = saved.datasetKind;
    if (saved.datasetKind !== 'mnist') {
      const files = await storage.get<{
        kind: 'fashion' | 'files' | 'cifar10' | 'images';
        files: PickedFile[];
        // channels absent: stored before the page had colour folders, grayscale.
        images?: { size: number; fit: FitRule; channels?: Channels; folder: string };
      }>(PICKED_FILES);
      if (!files)
        throw new Error(
          'its dataset files are no longer in browser storage; pick them again, then load a downloaded checkpoint',
        );
      if (files.kind === 'images' && files.images) {
        el.imageSize.value = String(files.images.size);
        el.imageFit.value = files.images.fit;
        const channels = files.images.channels ?? CHANNELS_DEFAULT;
        el.imageChannels.value = String(channels);
        state.picked = {
          kind: 'images',
          files: files.files,
          dataset: await loadImages(files.images.folder, files.files, { ...files.images, channels }),
        };
        state.pickedFolder = { name: files.images.folder, files: files.files, skipped: [] };
      } else {
        if (files.kind === 'images')
          throw new Error("its image folder's size and fit are not in browser storage; pick the folder again");
        state.picked = { kind: files.kind, files: files.files, dataset: await loadPicked(files.kind, files.files) };
      }
    }
    const { ckpt, dataset } = await readCheckpoint(app.controls, saved.checkpoint, () => chosenDataset(app));
    // An mlp's widths are in its settings too, which must agree; a spec model's are its checkpoint's alone (the spec in its metadata).
    if (!sameSizes(ckpt.sizes, { ...ckpt.sizes, hidden: saved.settings.hidden, L: saved.settings.latent })) {
      throw new Error(
        `its settings (hidden widths ${saved.settings.hidden}, latent size ${saved.settings.latent}) do not match its checkpoint's ${sizesName(ckpt.sizes)} model`,
      );
    }
    const session = (state.session = await createSession(app, dataset, saved.settings, ckpt, saved.epoch));
    state.stored = { epoch: saved.epoch, owner: session };
    state.storedFiles = session.files;
    app.controls.set({ epochs: saved.settings.epochs });
    app.chart.data = saved.history;
    app.chart.setEpochs(saved.settings.epochs);
    await session.trainer.testPass();
    await showModel(app, session);
    showDatasetChoice(app);
    showSaved(app, `Restored epoch ${saved.epoch} from this browser's storage.`);
    say(`Restored the run saved after epoch ${saved.epoch}. Continue trains further; Reset starts over.`);
  } catch (e) {
    if (!failed(app)) unrestorable(app, (e as Error).message);
  } finally {
    if (!failed(app)) state.phase = 'ready';
    app.updateButtons();
  }
}

/** Why a stored record is not a run this page can restore (written by another version of the page, or damaged), or ''. */
function savedRunProblem({ controls }: App, record: unknown): string {
  if (typeof record !== 'object' || record === null) return 'the record is not a saved run';
  const r = record as Partial<Record<keyof SavedRun, unknown>>;
  if (r.version !== SAVE_VERSION) {
    // Records before the version field are format 1.
    const version = r.version ?? 1;
    const which = typeof version === 'number' && version > SAVE_VERSION ? 'a newer' : 'an older';
    return `it was saved by ${which} version of this page (format ${String(version)}; this page reads format ${SAVE_VERSION})`;
  }
  if (!(r.checkpoint instanceof Uint8Array)) return 'its checkpoint is missing';
  if (!DATASET_KINDS.includes(r.datasetKind as DatasetKind))
    return `its dataset kind ${JSON.stringify(r.datasetKind)} is not one this page knows`;
  if (!Number.isSafeInteger(r.epoch) || (r.epoch as number) < 0)
    return `its epoch count ${JSON.stringify(r.epoch)} is not a count`;
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
function unrestorable({ el, state, say }: App, why: string): void {
  state.stored = 'unrestorable';
  say(
    `The run saved in this browser cannot be restored: ${why}. Reset deletes it; a model you train replaces it after its first epoch.`,
    'error',
  );
  el.saved.textContent = 'Browser storage holds a run this page cannot restore; Reset deletes it.';
}
