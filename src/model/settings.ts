/**
 * A training run's settings: the reference program's defaults, the ranges every host (the
 * CLI, the page, the library) accepts, and Adam's hyper-parameters. One source, so the hosts
 * cannot drift apart.
 */
import type { AdamHyper } from '../gpu/ops';

export interface RunSettings {
  epochs: number;
  batchSize: number;
  lr: number;
  /** Encoder widths, input side first; the decoder mirrors them. */
  hidden: number[];
  latent: number;
  seed: number;
  /** β on the KL term and the warm-up's Adam steps (absent: DEFAULT_OBJECTIVE, the reference model's). */
  beta?: number;
  klWarmup?: number;
}

/** The reference program: 10 epochs, batch 128, Adam lr 1e-3, 784-400-20; seed of our choosing. */
export const DEFAULT_SETTINGS: Readonly<RunSettings> = {
  epochs: 10,
  batchSize: 128,
  lr: 1e-3,
  hidden: [400],
  latent: 20,
  seed: 1,
};

/** torch.optim.Adam's defaults, which the reference program keeps. */
export const ADAM_BETAS = { beta1: 0.9, beta2: 0.999 } as const;
export const ADAM_EPS = 1e-8;

/** Adam at learning rate `lr` with the reference's betas and eps. */
export function adamAt(lr: number): AdamHyper {
  return { lr, ...ADAM_BETAS, eps: ADAM_EPS };
}

/** Inclusive integer ranges; `hidden` bounds each width. */
export const SETTING_RANGES = {
  epochs: [1, 100_000],
  batchSize: [1, 4096],
  hidden: [1, 8192],
  latent: [1, 1024],
  seed: [0, 0xffffffff],
} as const satisfies Record<Exclude<keyof RunSettings, 'lr' | 'beta' | 'klWarmup'>, readonly [number, number]>;

/** Values per image at most, C·H·W (a 256×256 grayscale image, a 147×147 colour one). */
export const INPUT_SIZE_MAX = 65536;

/** Hidden layers at most (the encoder's; the decoder has as many). */
export const MAX_DEPTH = 8;

/** Above this, Adam diverges on MNIST at once; refusing it early is kinder than a NaN later. */
export const LR_MAX = 10;

/**
 * Training steps recorded into one GPU submit. More is slightly faster on a software adapter;
 * fewer makes pause, stop and loss reports more immediate. Every host uses this.
 */
export const STEPS_PER_SUBMIT = 16;

/** The reason `text` is not a width list ("400", "512,256"), or the widths. */
export function parseHidden(text: string): number[] | { reason: string } {
  const parts = text.split(',').map((p) => p.trim());
  const [min, max] = SETTING_RANGES.hidden;
  const widths = parts.map(Number);
  if (parts.length > MAX_DEPTH || parts.some((p, i) => !/^\d+$/.test(p) || widths[i] < min || widths[i] > max)) {
    return {
      reason: `must be 1 to ${MAX_DEPTH} comma-separated widths, each a whole number from ${min} to ${max} (e.g. 400, or 512,256)`,
    };
  }
  return widths;
}

/** The reason `lr` is not an accepted learning rate, or null. */
export function lrReason(lr: number): string | null {
  return Number.isFinite(lr) && lr > 0 && lr <= LR_MAX
    ? null
    : `must be a number above 0 and at most ${LR_MAX}, e.g. 0.001 or 1e-3`;
}

/**
 * Image folders (the CLI's `--images DIR`, the page's folder picker) are decoded to square
 * grayscale images of this many pixels a side: 28 (MNIST's) by default, at most 256 (256² is
 * INPUT_SIZE_MAX).
 */
export const IMAGE_SIZE_DEFAULT = 28;

/** One image's shape (C, H, W) where no dataset says otherwise: MNIST's, the reference model's 784 pixels. */
export const DEFAULT_INPUT_SHAPE: readonly number[] = [1, IMAGE_SIZE_DEFAULT, IMAGE_SIZE_DEFAULT];
export const IMAGE_SIZE_RANGE = [4, 256] as const;

/**
 * How an image becomes a square: `center-crop` scales the short side to the size and keeps the
 * centre (torchvision's Resize + CenterCrop), `fit` scales the long side to the size and pads
 * the rest with black, `stretch` scales each side on its own.
 */
export const FIT_RULES = ['center-crop', 'fit', 'stretch'] as const;
export type FitRule = (typeof FIT_RULES)[number];
export const FIT_DEFAULT: FitRule = 'center-crop';

/**
 * Image channels: 1 (grayscale, the default) or 3 (R, G, B). A colour image is kept planar,
 * NCHW as PyTorch's ToTensor gives it: its C planes of H·W pixels one after another, so the
 * model sees D = C·H·W values and a convolution reads them as (C, H, W).
 */
export const CHANNEL_COUNTS = [1, 3] as const;
export type Channels = (typeof CHANNEL_COUNTS)[number];
export const CHANNELS_DEFAULT: Channels = 1;

/** The reason C·side² values do not fit a model (INPUT_SIZE_MAX), or null. */
export function imageValuesReason(channels: number, side: number): string | null {
  const values = channels * side * side;
  if (values <= INPUT_SIZE_MAX) return null;
  const most = Math.floor(Math.sqrt(INPUT_SIZE_MAX / channels));
  return `${channels}×${side}×${side} = ${values} values per image is more than the ${INPUT_SIZE_MAX} a model takes; a side of at most ${most} fits ${channels} channel${channels === 1 ? '' : 's'}`;
}
/** Classes a conditional VAE may have at most (its one-hot columns widen two layers). */
export const CLASSES_MAX = 1024;
/** And at least: one class would condition on a constant (0 classes is the unconditional VAE). */
export const CLASSES_MIN = 2;
// ---- β on the KL term, its warm-up, and the likelihood ------------------------------------------

/**
 * The objective is recon + β_t·KL with β_t = β·min(1, s/N) at Adam step s (1-based: the first
 * step gets β/N, step N and later β), N = klWarmup; N = 0 is no warm-up. β = 1 without warm-up
 * is the reference model, bit for bit (it keeps the reference model's loss kernels).
 */
export interface ObjectiveSettings {
  beta: number;
  /** Adam steps of the linear KL warm-up (0: none). */
  klWarmup: number;
}

export const DEFAULT_OBJECTIVE: Readonly<ObjectiveSettings> = { beta: 1, klWarmup: 0 };

/** β from 0 (a plain autoencoder with noise) to 1000 (far past any β-VAE paper's). */
export const BETA_RANGE = [0, 1000] as const;
/** Warm-up steps: up to a million (about 2,000 MNIST epochs at batch 128). */
export const KL_WARMUP_RANGE = [0, 1_000_000] as const;

/** The reason `beta` is not an accepted β, or null. */
export function betaReason(beta: number): string | null {
  return Number.isFinite(beta) && beta >= BETA_RANGE[0] && beta <= BETA_RANGE[1]
    ? null
    : `must be a number from ${BETA_RANGE[0]} to ${BETA_RANGE[1]}, e.g. 4 or 0.5 (1 is the plain VAE)`;
}

/**
 * The reason `steps` is not an accepted KL warm-up, or null. A whole number: the warm-up reaches
 * the GPU as a u32 uniform, which would truncate a fraction without a word.
 */
export function klWarmupReason(steps: number): string | null {
  return Number.isInteger(steps) && steps >= KL_WARMUP_RANGE[0] && steps <= KL_WARMUP_RANGE[1]
    ? null
    : `must be a whole number of Adam steps from ${KL_WARMUP_RANGE[0]} to ${KL_WARMUP_RANGE[1]}, e.g. 1000 (0 is no warm-up)`;
}

/** Whether these settings need the general objective (anything but the reference model's β = 1, no warm-up). */
export function weightedKl(o: Partial<ObjectiveSettings>): boolean {
  return (o.beta ?? DEFAULT_OBJECTIVE.beta) !== 1 || (o.klWarmup ?? DEFAULT_OBJECTIVE.klWarmup) > 0;
}

/**
 * The Gaussian likelihood's σ: a fixed value, or `learned` (one per pixel, the parameter
 * log_sigma, starting at σ = 1). 0.1 suits pixels in [0, 1]: an error of one grey level in ten
 * costs ½ nat.
 */
export const DEFAULT_SIGMA = 0.1;
/** σ from 1e-3 (1/1000 of the pixel range) to 1e3; e^(−2·log σ) stays far from float32's limits. */
export const SIGMA_RANGE = [1e-3, 1e3] as const;
/**
 * The learned σ's range as log σ: Adam clamps the parameter log_sigma to it after every update
 * (adam.wgsl.ts AdamClamp), and a checkpoint whose log_sigma leaves it is refused. The bounds
 * are ln SIGMA_RANGE rounded to float32 inwards, so the GPU's float32 parameter holds them
 * exactly and a checkpoint the engine wrote always passes the check.
 */
export const LOG_SIGMA_RANGE: readonly [number, number] = [
  float32Inwards(Math.log(SIGMA_RANGE[0]), 1),
  float32Inwards(Math.log(SIGMA_RANGE[1]), -1),
];

/** `x` rounded to a float32, moved one float32 step towards `direction` (+1 or −1) if rounding went the other way. */
function float32Inwards(x: number, direction: 1 | -1): number {
  const r = Math.fround(x);
  if ((r - x) * direction >= 0) return r;
  const bits = new Float32Array([r]);
  const int = new Int32Array(bits.buffer);
  int[0] += (r < 0 ? -1 : 1) * direction; // float32 bits of a non-zero value step by magnitude
  return bits[0]!;
}

/** The reason `text` is not a σ ("0.1", "learned"), or the σ. */
export function parseSigma(text: string): number | 'learned' | { reason: string } {
  if (text.trim() === 'learned') return 'learned';
  const sigma = Number(text);
  return text.trim() !== '' && Number.isFinite(sigma) && sigma >= SIGMA_RANGE[0] && sigma <= SIGMA_RANGE[1]
    ? sigma
    : {
        reason: `must be a number from ${SIGMA_RANGE[0]} to ${SIGMA_RANGE[1]} (e.g. 0.1), or "learned" for one σ per pixel`,
      };
}
