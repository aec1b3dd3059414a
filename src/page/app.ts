/**
 * The page's one state object and the views it drives. main.ts makes one App; every module of
 * the page takes it as an argument, so what the page holds (the device, the model, the picked
 * files, what storage keeps) is in one place, written where it changes and read everywhere else.
 */
import type { Gpu } from '../gpu/device';
import type { RunGate } from '../model/driver';
import type { Inference } from '../model/inference';
import type { Trainer } from '../model/trainer';
import type { VaeModel } from '../model/vae';
import type { LossChart } from './charts';
import type { Controls, Settings } from './controls';
import type { Dataset, PickedFile } from './data';
import type { Explorer } from './explorer';
import type { GatheredFolder } from './image-folder';
import type { ModelChoice, ModelPicker } from './model-picker';
import type { ObjectiveControls } from './objective';
import type { ProgressView } from './progress';
import type { PageTuneCache } from './tune-cache';

/** One model on the GPU with its dataset. */
export interface Session {
  dataset: Dataset;
  settings: Settings;
  model: VaeModel;
  /** How the model picker names it: a preset, or its spec (the model's own, in model.sizes.spec). */
  choice: ModelChoice;
  trainer: Trainer;
  inference: Inference;
  /** Completed epochs (a stopped epoch does not count; Start repeats it). */
  epochsDone: number;
  /** The picked files the dataset came from (null for MNIST), stored beside the run. */
  files: PickedFile[] | null;
}

/** 'waiting': another tab of this page owns the saved run (./tab-lock.ts). */
export type Phase = 'booting' | 'waiting' | 'ready' | 'busy' | 'running' | 'failed';

export interface State {
  gpu: Gpu | null;
  session: Session | null;
  phase: Phase;
  picked: { kind: 'fashion' | 'files' | 'cifar10' | 'images'; files: PickedFile[]; dataset: Dataset } | null;
  /** The image folder last picked or dropped, kept so another size or fit rule decodes it again. */
  pickedFolder: GatheredFolder | null;
  mnist: Promise<Dataset> | null;
  /** The running training's pause and stop (null when nothing trains). */
  gate: RunGate | null;
  /** Every epoch this page completed, as the driver reported it (for tests, and the same figures the CLI writes to metrics.jsonl). */
  readonly epochReports: { epoch: number; trainLoss: number; testLoss: number }[];
  /** Images per second of each completed epoch this page trained. */
  readonly epochRates: number[];
  /** What browser storage holds: nothing, a run (and the session that saved or restored it), or a record this page could not restore. */
  stored: { epoch: number; owner: Session } | 'unrestorable' | null;
  /** The picked files in storage (null: none; undefined: not known yet). */
  storedFiles: PickedFile[] | null | undefined;
  /** Whether the browser promised to keep our storage under disk pressure; asked once, when there is first something to keep. */
  persistence: Promise<boolean> | null;
  /** Draws for "Draw digits of class k": each press of Draw again takes the next (the library's sample() scheme). */
  classDraws: number;
}

export function initialState(): State {
  return {
    gpu: null,
    session: null,
    phase: 'booting',
    picked: null,
    pickedFolder: null,
    mnist: null,
    gate: null,
    epochReports: [],
    epochRates: [],
    stored: null,
    storedFiles: undefined,
    persistence: null,
    classDraws: 0,
  };
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** The page's elements, by what they are. */
export function findElements() {
  return {
    adapter: $('adapter'),
    noWebgpu: $('no-webgpu'),
    noWebgpuTitle: $('no-webgpu-title'),
    noWebgpuDetail: $('no-webgpu-detail'),
    app: $('app'),
    dataset: $<HTMLSelectElement>('dataset'),
    datasetFilesRow: $('dataset-files-row'),
    datasetFiles: $<HTMLInputElement>('dataset-files'),
    datasetHint: $('dataset-hint'),
    datasetStatus: $('dataset-status'),
    start: $<HTMLButtonElement>('start'),
    pause: $<HTMLButtonElement>('pause'),
    stop: $<HTMLButtonElement>('stop'),
    reset: $<HTMLButtonElement>('reset'),
    message: $('message'),
    recon: $<HTMLCanvasElement>('recon'),
    samples: $<HTMLCanvasElement>('samples'),
    imagesEpoch: $('images-epoch'),
    imagesRow: $('dataset-images-row'),
    folder: $<HTMLInputElement>('dataset-folder'),
    imagesHint: $('images-hint'),
    imageSize: $<HTMLInputElement>('image-size'),
    imageSizeReason: $('image-size-reason'),
    imageFit: $<HTMLSelectElement>('image-fit'),
    imageChannels: $<HTMLSelectElement>('image-channels'),
    autotune: $<HTMLInputElement>('autotune'),
    download: $<HTMLButtonElement>('download'),
    checkpointFile: $<HTMLInputElement>('checkpoint-file'),
    saved: $('saved'),
    conditional: $<HTMLInputElement>('conditional'),
    samplesCaption: $('samples-caption'),
    classDraw: $('class-draw'),
    drawClass: $<HTMLSelectElement>('draw-class'),
    drawAgain: $<HTMLButtonElement>('draw-again'),
    classSamples: $<HTMLCanvasElement>('class-samples'),
    lossChart: $<HTMLCanvasElement>('loss-chart'),
  };
}
export type Elements = ReturnType<typeof findElements>;

export interface App {
  readonly state: State;
  readonly el: Elements;
  readonly controls: Controls;
  readonly objectiveControls: ObjectiveControls;
  readonly modelPicker: ModelPicker;
  readonly chart: LossChart;
  readonly progress: ProgressView;
  readonly explorer: Explorer;
  /** Tuned kernel plans, kept in this browser's storage (./tune-cache.ts). */
  readonly tuneCache: PageTuneCache;
  /** The URL's cut of the dataset (`?limit=` and `?testLimit=`). */
  readonly limits: { train?: number; test?: number };
  /** Shows a line in the message area (and logs errors to the console). */
  say(text: string, kind?: 'info' | 'error'): void;
  /** Enables and disables the buttons and fields for the phase and the session. */
  updateButtons(): void;
}

/** Read through a call: `phase` changes under awaits (device loss), which TypeScript's narrowing cannot see. */
export function failed(app: App): boolean {
  return app.state.phase === 'failed';
}
