/** What the headless page and the Node CLI say to each other (JSON over puppeteer). */
import type { Likelihood } from '../model/graph';
import type { ModelSpec } from '../model/spec';
import type { FitRule } from '../model/settings';

/** What the headless page is sent: the run, and where its data is served. */
export interface RunConfig extends EngineRun {
  trainUrl: string;
  testUrl: string;
  /** A conditional VAE's labels, one byte per image. */
  trainLabelsUrl?: string;
  testLabelsUrl?: string;
}

/** One run of the engine (src/cli/engine.ts), on whichever runtime. */
export interface EngineRun {
  trainCount: number;
  testCount: number;
  pixels: number;
  /** Encoder widths, input side first. */
  hidden: number[];
  /** A spec's model (absent: the mlp preset of the sizes here); its likelihood and classes are the run's. */
  model?: ModelSpec;
  latent: number;
  batchSize: number;
  lr: number;
  epochs: number;
  seed: number;
  stepsPerSubmit: number;
  dataset: string;
  /** Resume from this checkpoint (base64 safetensors). */
  resume?: string;
  /** First epoch to run (after a resume). */
  firstEpoch: number;
  /** A conditional VAE of this many classes. */
  classes?: number;
  /** β, its warm-up and the likelihood (absent: the reference model's). */
  beta?: number;
  klWarmup?: number;
  likelihood?: Likelihood;
  /** Image channels (absent: 1): 3 is planar R, G, B, recorded in the checkpoints. */
  channels?: number;
  /** `--images`: the side and fit rule its images were decoded with, recorded in the checkpoints. */
  images?: { size: number; fit: FitRule };
  /** `--images`: the folder's class names, label 0 first, recorded in the checkpoints and checked on resume. */
  classNames?: string[];
  /** Tune the kernel plan at start-up (src/model/autotune.ts), through the Node side's file cache. */
  autotune?: boolean;
}

export type RunEvent =
  | { type: 'losses'; epoch: number; firstBatch: number; losses: number[]; objectives?: number[] }
  | { type: 'epoch'; epoch: number; averageLoss: number; seconds: number; averageObjective?: number }
  | { type: 'test'; epoch: number; averageLoss: number; seconds: number; averageObjective?: number }
  | { type: 'images'; epoch: number; recon: string; samples: string }
  | { type: 'checkpoint'; epoch: number; data: string }
  | { type: 'stopped'; epoch: number }
  /** What --autotune did: tuned (its report), took a cached plan, or was skipped for a resumed plan. */
  | { type: 'tune'; from: 'tuner' | 'cache' | 'skipped'; text: string; key?: string }
  | {
      type: 'done';
      counters: { dispatchesPerStep: number; submits: number; bytesUploaded: number; bytesReadBack: number };
    };

/** `--images DIR`: the folder's files, concatenated at `url`, for the headless page to decode. */
export interface ImageFolderRequest {
  url: string;
  /** Each file's path in the folder ('/'-separated) and its bytes' place in the concatenation. */
  files: { path: string; offset: number; length: number }[];
  size: number;
  fit: FitRule;
  /** 1 (grayscale) or 3 (planar R, G, B). */
  channels: number;
  /** The folder, as errors name it. */
  where: string;
  /** Files Node skipped without sending them (unreadable, too large, not an image by name), for the dataset's list and a refusal's. */
  skipped: { path: string; reason: string }[];
}

/** The decoded folder (src/data/image-folder.ts ImageFolderData), its byte arrays as base64. */
export interface ImageFolderReply {
  layout: 'train-test' | 'held-out';
  classNames: string[];
  train: { count: number; pixels: string; labels: string };
  test: { count: number; pixels: string; labels: string };
  skipped: { path: string; reason: string }[];
}
