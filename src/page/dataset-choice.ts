/**
 * The dataset choice: MNIST from the site, idx files picked from disk, or an image folder picked
 * with the folder input or dropped on the page, decoded by this browser. What is picked goes
 * into the page's state (state.picked) only once it has loaded; a failure keeps the earlier choice.
 */
import { IdxError, MAX_IDX_FILE_BYTES } from '../data/idx';
import { CIFAR10, MAX_CIFAR_FILE_BYTES } from '../data/cifar';
import { HELD_OUT_RULE, LUMA_WEIGHTS as W } from '../data/image-folder';
import {
  FIT_DEFAULT,
  FIT_RULES,
  IMAGE_SIZE_DEFAULT,
  IMAGE_SIZE_RANGE,
  imageValuesReason,
  type Channels,
  type FitRule,
} from '../model/settings';
import type { App } from './app';
import { integerReason } from './controls';
import {
  describeDataset,
  limitDataset,
  loadImages,
  loadMnist,
  loadPicked,
  type Dataset,
  type DatasetKind,
  type ImageOptions,
} from './data';
import { gatherDropped, gatherPicked, type GatheredFolder } from './image-folder';

const HINTS: Record<'fashion' | 'files' | 'cifar10', string> = {
  fashion:
    'Pick the four Fashion-MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, ' +
    "t10k-labels-idx1-ubyte.gz) from github.com/zalandoresearch/fashion-mnist; Debian's dataset-fashion-mnist package puts them in /usr/share/datasets/fashion-mnist.",
  files:
    'Pick two idx images files (training and test; the larger set trains) and, for a coloured scatter, their labels files. Plain or gzipped.',
  cifar10:
    `Pick the files of CIFAR-10's binary version (the ${CIFAR10.archiveFolder} folder of cifar-10-binary.tar.gz from cs.toronto.edu/~kriz/cifar.html): ` +
    `${CIFAR10.trainFiles.join(', ')}, ${CIFAR10.testFile} and, for the class names, ${CIFAR10.metaFile}. Colour images of 32×32.`,
};

/** The URL's cut of the dataset, in words. */
function limitsText({ limits }: App): string {
  const parts = [
    limits.train && `the first ${limits.train} training`,
    limits.test && `the first ${limits.test} test`,
  ].filter(Boolean);
  return parts.length ? ` (this address uses only ${parts.join(' and ')} images)` : '';
}

export function showDatasetChoice(app: App): void {
  const { el, state } = app;
  const kind = el.dataset.value as DatasetKind;
  el.datasetFilesRow.hidden = kind === 'mnist' || kind === 'images';
  el.imagesRow.hidden = kind !== 'images';
  if (kind !== 'mnist' && kind !== 'images') el.datasetHint.textContent = HINTS[kind];
  el.datasetStatus.textContent = state.session
    ? describeDataset(state.session.dataset)
    : kind === 'mnist'
      ? `MNIST: 60,000 training and 10,000 test digits, fetched from this site when you press Start${limitsText(app)}.`
      : state.picked?.kind === kind
        ? describeDataset(state.picked.dataset)
        : 'No files chosen yet.';
  el.datasetStatus.classList.remove('error');
  app.updateButtons();
}

/** The size, fit and colour fields, or null (with the reason shown) when the size is not one the engine takes. */
export function imageOptions({ el }: App): ImageOptions | null {
  const channels = Number(el.imageChannels.value) as Channels;
  const reason =
    integerReason(el.imageSize.value, ...IMAGE_SIZE_RANGE) ||
    (imageValuesReason(channels, Number(el.imageSize.value)) ?? '');
  el.imageSize.setCustomValidity(reason);
  el.imageSizeReason.textContent = reason;
  return reason ? null : { size: Number(el.imageSize.value), fit: el.imageFit.value as FitRule, channels };
}

/** Whether `d` was decoded with `options` (else the folder is decoded again). */
const decodedWith = (d: Dataset, o: ImageOptions) =>
  o.size === d.images?.size && o.fit === d.images.fit && o.channels === d.images.channels;

async function decodeFolder({ state }: App, folder: GatheredFolder, options: ImageOptions): Promise<Dataset> {
  const dataset = await loadImages(folder.name, folder.files, options, folder.skipped);
  state.pickedFolder = folder;
  // A new array for each decoding: saveLatest stores the files (and their size and fit) when the array changes.
  state.picked = { kind: 'images', files: [...folder.files], dataset };
  return dataset;
}

/**
 * Decodes the folder with the current size and fit into `picked`; on failure the earlier choice
 * stays. With the size field invalid the folder is kept undecoded, and fixing the size decodes it.
 */
async function useFolder(app: App, folder: GatheredFolder | null): Promise<void> {
  const { el, state } = app;
  if (!folder || state.phase !== 'ready' || state.session) return;
  const before = state.pickedFolder;
  state.pickedFolder = folder; // first: the folder just picked is the one a fixed size decodes
  const options = imageOptions(app);
  if (!options) {
    el.datasetStatus.textContent = `${folder.name}: ${folder.files.length} files picked, not decoded yet: the image size ${el.imageSizeReason.textContent}; fix it to decode them.`;
    el.datasetStatus.classList.add('error');
    app.updateButtons();
    return;
  }
  state.phase = 'busy';
  app.updateButtons();
  el.datasetStatus.classList.remove('error');
  el.datasetStatus.textContent = `Decoding ${folder.files.length} files of ${folder.name} to ${options.channels === 3 ? 'colour ' : ''}${options.size}×${options.size}…`;
  try {
    await decodeFolder(app, folder, options);
    state.phase = 'ready';
    showDatasetChoice(app);
  } catch (e) {
    state.pickedFolder = before; // a size change must not decode the folder that failed in place of the one in use
    const kept =
      state.picked?.kind === 'images'
        ? ` The folder chosen before is still in use: ${describeDataset(state.picked.dataset)}`
        : '';
    el.datasetStatus.textContent = `Not loaded: ${(e as Error).message}${kept}`;
    el.datasetStatus.classList.add('error');
    state.phase = 'ready';
  }
  app.updateButtons();
}

/** The chosen dataset, cut to the URL's limits. */
export async function chosenDataset(app: App): Promise<Dataset> {
  const { el, state } = app;
  const kind = el.dataset.value as DatasetKind;
  let full: Dataset;
  if (kind === 'mnist') {
    state.mnist ??= loadMnist(import.meta.env.BASE_URL);
    try {
      full = await state.mnist;
    } catch (e) {
      state.mnist = null;
      throw e;
    }
  } else {
    if (state.picked?.kind !== kind) throw new Error('choose the dataset files first');
    full = state.picked.dataset;
    // A size, fit or colour changed since the folder was decoded (the field not yet left): decode it again now.
    const options = kind === 'images' ? imageOptions(app) : null;
    if (kind === 'images' && !options) throw new Error(`the image size ${el.imageSizeReason.textContent}`);
    if (options && state.pickedFolder && !decodedWith(full, options)) {
      full = await decodeFolder(app, state.pickedFolder, options);
    }
  }
  return limitDataset(full, app.limits.train, app.limits.test);
}

/** The dataset select, the idx files input, the image folder's fields and input, and drops on the page. */
export function wireDatasetChoice(app: App): void {
  const { el, state } = app;
  el.dataset.addEventListener('change', () => showDatasetChoice(app));

  el.datasetFiles.addEventListener('change', async () => {
    const kind = el.dataset.value as 'fashion' | 'files' | 'cifar10';
    const chosen = [...(el.datasetFiles.files ?? [])];
    el.datasetFiles.value = '';
    if (chosen.length === 0) return;
    state.phase = 'busy';
    app.updateButtons();
    el.datasetStatus.textContent = `Reading ${chosen.length} file${chosen.length === 1 ? '' : 's'}…`;
    try {
      const limit = kind === 'cifar10' ? MAX_CIFAR_FILE_BYTES : MAX_IDX_FILE_BYTES;
      const big = chosen.find((f) => f.size > limit);
      if (big)
        throw new IdxError(
          `${big.name}: ${big.size} bytes is more than ${limit}; it is not ${kind === 'cifar10' ? 'a CIFAR-10 batch' : 'an MNIST-sized idx file'}`,
        );
      const files = await Promise.all(
        chosen.map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })),
      );
      const dataset = await loadPicked(kind, files);
      state.picked = { kind, files, dataset };
      state.phase = 'ready';
      showDatasetChoice(app);
    } catch (e) {
      const kept =
        state.picked?.kind === kind
          ? ` The files chosen before are still in use: ${describeDataset(state.picked.dataset)}.`
          : '';
      el.datasetStatus.textContent = `Not loaded: ${(e as Error).message}.${kept}`;
      el.datasetStatus.classList.add('error');
      state.phase = 'ready';
    }
    app.updateButtons();
  });

  el.imageSize.value = String(IMAGE_SIZE_DEFAULT);
  el.imagesHint.textContent =
    `PNG or JPEG files, one subfolder per class (the classes are the subfolders' names, sorted). ` +
    `With train/ and test/ subfolders those are the splits; otherwise the test images are ${HELD_OUT_RULE}. Images become size×size grayscale (luma ${W.r} R + ${W.g} G + ${W.b} B), or colour (their R, G and B planes, as the CLI's --channels 3); transparency and padding are black: ` +
    'center-crop scales the short side and keeps the centre, fit scales the long side and pads, stretch scales each side. ' +
    'Files that cannot be used are named and skipped.';
  for (const rule of FIT_RULES) el.imageFit.add(new Option(rule, rule, rule === FIT_DEFAULT, rule === FIT_DEFAULT));

  el.folder.addEventListener('change', async () => {
    const chosen = [...(el.folder.files ?? [])];
    el.folder.value = '';
    if (chosen.length > 0) await useFolder(app, await gatherPicked(chosen));
  });
  // On change (Enter or leaving the field), not on each keystroke: "64" typed is not a decode at 6, then one at 64.
  el.imageSize.addEventListener('input', () => {
    imageOptions(app);
    app.updateButtons();
  });
  el.imageSize.addEventListener('change', () => void useFolder(app, state.pickedFolder));
  el.imageFit.addEventListener('change', () => void useFolder(app, state.pickedFolder));
  el.imageChannels.addEventListener('change', () => {
    imageOptions(app); // 3 channels may make the size too large
    app.updateButtons();
    void useFolder(app, state.pickedFolder);
  });

  // A file dropped anywhere must not navigate away from a training page; a folder dropped while no
  // model exists becomes the image dataset.
  window.addEventListener('dragover', (e) => {
    e.preventDefault();
    el.imagesRow.classList.toggle('dragging', state.phase === 'ready' && !state.session);
  });
  window.addEventListener('dragleave', () => el.imagesRow.classList.remove('dragging'));
  window.addEventListener('drop', async (e) => {
    e.preventDefault();
    el.imagesRow.classList.remove('dragging');
    if (!e.dataTransfer || state.phase !== 'ready' || state.session) return;
    el.dataset.value = 'images';
    showDatasetChoice(app);
    await useFolder(app, await gatherDropped(e.dataTransfer));
  });
}
