import type { Likelihood } from '../model/graph';

/** What the headless page and the Node CLI say to each other (JSON over puppeteer). */
export interface RunConfig {
  trainUrl: string;
  testUrl: string;
  trainCount: number;
  testCount: number;
  pixels: number;
  /** Encoder widths, input side first. */
  hidden: number[];
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
  /** β, its warm-up and the likelihood (absent: the seed model's). */
  beta?: number;
  klWarmup?: number;
  likelihood?: Likelihood;
}

export type RunEvent =
  | { type: 'losses'; epoch: number; firstBatch: number; losses: number[]; objectives?: number[] }
  | { type: 'epoch'; epoch: number; averageLoss: number; seconds: number; averageObjective?: number }
  | { type: 'test'; epoch: number; averageLoss: number; seconds: number; averageObjective?: number }
  | { type: 'images'; epoch: number; recon: string; samples: string }
  | { type: 'checkpoint'; epoch: number; data: string }
  | { type: 'stopped'; epoch: number }
  | { type: 'done'; counters: { dispatchesPerStep: number; submits: number; bytesUploaded: number; bytesReadBack: number } };
