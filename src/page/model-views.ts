/**
 * What the page shows of a model's weights: the reconstruction and sample grids, the explorer,
 * and for a conditional model the per-class caption and "Draw digits of class k".
 */
import { PHILOX_STREAM } from '../../shaders/philox.wgsl';
import type { EpochReport } from '../model/driver';
import { classesOf } from '../model/graph';
import { RECON_COUNT, SAMPLES_PER_CLASS, sampleCountOf } from '../model/vae';
import { normals } from '../model/philox';
import type { App, Session } from './app';
import { drawGrid } from './charts';
import type { Dataset } from './data';

/** Images in each "Draw digits of class k" grid: two rows of eight. */
const CLASS_DRAW_COUNT = 16;

/**
 * Grids from the last test pass and the fixed prior draw (read now, or the ones an epoch's
 * report brought), and the explorer, for the current weights.
 */
export async function showModel(app: App, s: Session, report?: EpochReport): Promise<void> {
  const { el } = app;
  const { recon, samples } = report?.images ?? (await s.trainer.images());
  const { rows, cols, channels } = s.dataset;
  drawGrid(el.recon, recon, 2 * RECON_COUNT, rows, cols, RECON_COUNT, channels);
  drawGrid(
    el.samples,
    samples,
    sampleCountOf(s.model.sizes),
    rows,
    cols,
    classesOf(s.model.sizes) > 0 ? SAMPLES_PER_CLASS : 8,
    channels,
  );
  el.imagesEpoch.textContent = `after epoch ${s.epochsDone}`;
  await drawClassSamples(app, s);
  try {
    await app.explorer.refresh();
  } catch (e) {
    app.say(`Latent explorer: ${(e as Error).message}`, 'error');
  }
}

export function showClassControls({ el }: App, dataset: Dataset, classes: number): void {
  el.classDraw.hidden = classes === 0;
  el.samplesCaption.textContent =
    classes > 0
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
async function drawClassSamples({ el, state, explorer }: App, s: Session): Promise<void> {
  const classes = classesOf(s.model.sizes);
  if (classes === 0) return;
  const k = Number(el.drawClass.value) || 0;
  const { L } = s.model.sizes;
  const z = Float32Array.from(normals(CLASS_DRAW_COUNT * L, s.settings.seed, state.classDraws, PHILOX_STREAM.sample));
  // Through the explorer's queue: the two share the session's Inference buffers.
  const images = await explorer.serial(() =>
    s.inference.decode(z, CLASS_DRAW_COUNT, new Uint32Array(CLASS_DRAW_COUNT).fill(k)),
  );
  if (s !== state.session) return;
  drawGrid(el.classSamples, images, CLASS_DRAW_COUNT, s.dataset.rows, s.dataset.cols, 8, s.dataset.channels);
}

/** The class picker and Draw again. */
export function wireClassDraws(app: App): void {
  const { el, state } = app;
  const redrawClass = (next: boolean) => {
    if (!state.session) return;
    if (next) state.classDraws++;
    void drawClassSamples(app, state.session).catch((e) =>
      app.say(`Drawing class samples: ${(e as Error).message}`, 'error'),
    );
  };
  el.drawClass.addEventListener('change', () => redrawClass(false));
  el.drawAgain.addEventListener('click', () => redrawClass(true));
}
