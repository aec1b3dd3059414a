/**
 * A training run's settings: the reference program's defaults and the ranges every host (the
 * CLI, the page) accepts. One source, so the hosts cannot drift apart.
 */
export interface RunSettings {
  epochs: number;
  batchSize: number;
  lr: number;
  hidden: number;
  latent: number;
  seed: number;
}

/** The reference program: 10 epochs, batch 128, Adam lr 1e-3, 784-400-20; seed of our choosing. */
export const DEFAULT_SETTINGS: RunSettings = { epochs: 10, batchSize: 128, lr: 1e-3, hidden: 400, latent: 20, seed: 1 };

/** Inclusive integer ranges; the learning rate must lie in (0, LR_MAX]. */
export const SETTING_RANGES = {
  epochs: [1, 100_000],
  batchSize: [1, 4096],
  hidden: [1, 8192],
  latent: [1, 1024],
  seed: [0, 0xffffffff],
} as const satisfies Record<Exclude<keyof RunSettings, 'lr'>, readonly [number, number]>;

/** Above this, Adam diverges on MNIST at once; refusing it early is kinder than a NaN later. */
export const LR_MAX = 10;
