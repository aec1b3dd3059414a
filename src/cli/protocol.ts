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
  /** Tune the kernel plan at start-up (src/model/autotune.ts), through the Node side's file cache. */
  autotune?: boolean;
}

export type RunEvent =
  | { type: 'losses'; epoch: number; firstBatch: number; losses: number[] }
  | { type: 'epoch'; epoch: number; averageLoss: number; seconds: number }
  | { type: 'test'; epoch: number; averageLoss: number; seconds: number }
  | { type: 'images'; epoch: number; recon: string; samples: string }
  | { type: 'checkpoint'; epoch: number; data: string }
  | { type: 'stopped'; epoch: number }
  /** What --autotune did: tuned (its report), took a cached plan, or was skipped for a resumed plan. */
  | { type: 'tune'; from: 'tuner' | 'cache' | 'skipped'; text: string; key?: string }
  | { type: 'done'; counters: { dispatchesPerStep: number; submits: number; bytesUploaded: number; bytesReadBack: number } };
