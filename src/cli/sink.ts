/**
 * Where a run's events go (src/cli/protocol.ts): the reference program's console lines, the
 * PNGs, metrics.jsonl and the checkpoint, each written atomically into --out.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { makeGrid } from '../io/grid';
import { DEFAULT_OBJECTIVE, weightedKl } from '../model/settings';
import { writeAtomic } from '../node/files';
import { encodePng } from '../node/png';
import { tuneCacheDir, tuneCacheFile, type FileTuneCache } from '../node/tune-cache';
import type { RunEvent } from './protocol';

/** What the sink needs to know of the run. */
export interface SinkRun {
  out: string;
  logInterval: number;
  batchSize: number;
  trainCount: number;
  /** The side of the images, for the PNG grids. */
  rows: number;
  cols: number;
  /** 1 (grayscale PNGs) or 3 (planar R, G, B images: colour PNGs); absent: 1. */
  channels?: number;
  /** Images in each sample_N.png. */
  samples: number;
  beta?: number;
  klWarmup?: number;
  /** The first epoch this run trains (after a resume, the checkpoint's epoch + 1). */
  firstEpoch: number;
  /** The checkpoint file this run continues (--resume), if any. */
  resume?: string;
  /** --autotune's cache, to say where a plan was kept. */
  tuneCache?: FileTuneCache;
  /** Awaited after each epoch's checkpoint is on disk, while the page waits. */
  afterCheckpoint?(epoch: number): Promise<void>;
}

type Counters = Extract<RunEvent, { type: 'done' }>['counters'];

/**
 * metrics.jsonl: one JSON line per completed epoch, {"epoch", "trainLoss", "testLoss"}, at full
 * precision (the log rounds to 4 decimals). Rewritten with each checkpoint, so the two agree; a
 * resume keeps the lines of the epochs before it.
 */
function earlierMetrics(path: string, firstEpoch: number): string[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => {
      try {
        return line !== '' && (JSON.parse(line) as { epoch: number }).epoch < firstEpoch;
      } catch {
        return false; // a line this program did not write
      }
    });
}

export class RunSink {
  readonly checkpointPath: string;
  /** The epoch whose checkpoint this run last wrote (0: none yet). */
  savedEpoch = 0;
  /** The run's traffic, once it has finished. */
  done: Counters | undefined;
  private readonly metricsPath: string;
  private readonly metrics: string[];
  private readonly showObjective: boolean;
  private readonly objectiveName: string;
  private trainLoss = NaN;
  private trainObjective: number | undefined;

  constructor(private readonly run: SinkRun) {
    this.checkpointPath = resolve(run.out, 'checkpoint.safetensors');
    this.metricsPath = resolve(run.out, 'metrics.jsonl');
    this.metrics = earlierMetrics(this.metricsPath, run.firstEpoch);
    // The objective is printed beside the loss only when it is not the loss itself (β ≠ 1 or a warm-up).
    this.showObjective = weightedKl({ beta: run.beta, klWarmup: run.klWarmup });
    this.objectiveName = `objective (recon + β·KL, β = ${run.beta ?? DEFAULT_OBJECTIVE.beta}${run.klWarmup ? `, warmed up over ${run.klWarmup} steps` : ''})`;
  }

  /** The newest checkpoint that holds this run's progress, and its epoch; null before any has been written or resumed. */
  lastCheckpoint(): { file: string; epoch: number } | null {
    if (this.savedEpoch > 0) return { file: this.checkpointPath, epoch: this.savedEpoch };
    return this.run.resume ? { file: resolve(this.run.resume), epoch: this.run.firstEpoch - 1 } : null;
  }

  readonly event = async (e: RunEvent): Promise<void> => {
    const { run, showObjective, objectiveName } = this;
    switch (e.type) {
      case 'losses':
        e.losses.forEach((loss, i) => {
          const batch = e.firstBatch + i;
          if (batch % run.logInterval !== 0) return;
          const size = Math.min(run.batchSize, run.trainCount - batch * run.batchSize);
          const percent = ((100 * batch) / Math.ceil(run.trainCount / run.batchSize)).toFixed(0);
          console.log(
            `Train Epoch: ${e.epoch} [${batch * size}/${run.trainCount} (${percent}%)]\tLoss: ${(loss / size).toFixed(6)}` +
              (showObjective && e.objectives ? `\tObjective: ${(e.objectives[i] / size).toFixed(6)}` : ''),
          );
        });
        break;
      case 'epoch':
        console.log(`====> Epoch: ${e.epoch} Average loss: ${e.averageLoss.toFixed(4)}`);
        if (showObjective && e.averageObjective !== undefined) {
          console.log(`====> Epoch: ${e.epoch} Average ${objectiveName}: ${e.averageObjective.toFixed(4)}`);
        }
        this.trainLoss = e.averageLoss;
        this.trainObjective = e.averageObjective;
        break;
      case 'test':
        console.log(`====> Test set loss: ${e.averageLoss.toFixed(4)}`);
        if (showObjective && e.averageObjective !== undefined) {
          console.log(
            `====> Test set ${objectiveName.replace(/, warmed up over \d+ steps/, ', after the warm-up')}: ${e.averageObjective.toFixed(4)}`,
          );
        }
        this.metrics.push(
          JSON.stringify({
            epoch: e.epoch,
            trainLoss: this.trainLoss,
            testLoss: e.averageLoss,
            ...(showObjective ? { trainObjective: this.trainObjective, testObjective: e.averageObjective } : {}),
          }),
        );
        break;
      case 'images': {
        const save = (name: string, b64: string, n: number) => {
          const floats = new Float32Array(new Uint8Array(Buffer.from(b64, 'base64')).buffer);
          const grid = makeGrid(floats, n, run.rows, run.cols, 8, 2, run.channels ?? 1);
          writeAtomic(join(run.out, name), encodePng(grid.width, grid.height, grid.pixels, grid.channels));
        };
        save(`reconstruction_${e.epoch}.png`, e.recon, 16);
        save(`sample_${e.epoch}.png`, e.samples, run.samples);
        break;
      }
      case 'checkpoint':
        writeAtomic(this.checkpointPath, Buffer.from(e.data, 'base64'));
        writeAtomic(this.metricsPath, new TextEncoder().encode(this.metrics.map((line) => `${line}\n`).join('')));
        this.savedEpoch = e.epoch;
        await run.afterCheckpoint?.(e.epoch);
        break;
      case 'stopped': {
        const kept = this.lastCheckpoint();
        console.error(
          `webgpu-vae: stopped during epoch ${e.epoch}; ` +
            (kept
              ? `${kept.file} holds the last completed epoch (${kept.epoch})`
              : 'no epoch had finished, so there is no checkpoint yet'),
        );
        break;
      }
      case 'done':
        this.done = e.counters;
        break;
      case 'tune':
        if (e.from === 'skipped') console.log(`webgpu-vae: --autotune skipped: ${e.text}`);
        else {
          const file = tuneCacheFile(tuneCacheDir(), e.key!);
          console.log(`webgpu-vae: ${e.text}`);
          if (e.from === 'cache') console.log(`webgpu-vae: (cached in ${file}; delete it to tune again)`);
          // An unwritable cache has said so once already; the plan is used all the same.
          else if (run.tuneCache?.unwritable === undefined) console.log(`webgpu-vae: tuned plan cached in ${file}`);
        }
        break;
    }
  };
}
