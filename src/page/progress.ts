/**
 * The progress panel: epoch and run bars, images per second and time left. Counts are
 * updated as losses come back; the panel redraws at most every REDRAW_MS.
 */
import { throttledRedraw } from './redraw';

/** Seconds spent training (pauses and test passes excluded) and the images trained in them. */
class RateMeter {
  private ms = 0;
  private since: number | null = null;
  images = 0;

  start(): void {
    this.since ??= performance.now();
  }

  stop(): void {
    if (this.since !== null) this.ms += performance.now() - this.since;
    this.since = null;
  }

  get rate(): number {
    const seconds = (this.ms + (this.since === null ? 0 : performance.now() - this.since)) / 1000;
    return seconds > 0 ? this.images / seconds : 0;
  }
}

export class ProgressView {
  meter = new RateMeter();
  private epoch = 0;
  private target = 0;
  private batch = 0;
  private batches = 0;
  private imagesInEpoch = 0;
  private count = 0;
  /** The last test pass's duration, for the time left. */
  testSeconds = 0;
  private readonly schedule = throttledRedraw(() => this.render());
  private finished = false;
  private readonly el = {
    epochBar: document.getElementById('epoch-bar') as HTMLProgressElement,
    epochLabel: document.getElementById('epoch-label')!,
    runBar: document.getElementById('run-bar') as HTMLProgressElement,
    runLabel: document.getElementById('run-label')!,
    speed: document.getElementById('speed')!,
    eta: document.getElementById('eta')!,
  };

  /** A new run (Start or Continue): the rate is measured afresh. */
  startRun(): void {
    this.meter = new RateMeter();
    this.finished = false;
  }

  startEpoch(epoch: number, target: number, batches: number, count: number): void {
    Object.assign(this, { epoch, target, batches, count, batch: 0, imagesInEpoch: 0 });
    this.meter.start();
    this.schedule();
  }

  /** Batch `batch` (0-based) of `rows` images is done. */
  addBatch(batch: number, rows: number): void {
    this.batch = batch + 1;
    this.imagesInEpoch += rows;
    this.meter.images += rows;
    this.schedule();
  }

  finish(): void {
    this.finished = true;
    this.schedule();
  }

  clear(): void {
    this.target = 0;
    this.meter = new RateMeter();
    this.el.epochBar.value = this.el.runBar.value = 0;
    this.el.epochLabel.textContent = this.el.runLabel.textContent = this.el.eta.textContent = '–';
    this.el.speed.textContent = '– images/s';
  }

  private render(): void {
    if (this.target === 0) return;
    const epochFraction = this.count ? this.imagesInEpoch / this.count : 0;
    this.el.epochBar.value = epochFraction;
    this.el.epochLabel.textContent = `epoch ${this.epoch} of ${this.target} · batch ${this.batch} of ${this.batches}`;
    const runFraction = Math.min(1, (this.epoch - 1 + epochFraction) / this.target);
    this.el.runBar.value = runFraction;
    this.el.runLabel.textContent = `${(100 * runFraction).toFixed(0)}% of ${this.target} epochs`;
    const rate = this.meter.rate;
    this.el.speed.textContent = rate > 0 ? `${Math.round(rate).toLocaleString('en')} images/s` : '– images/s';
    if (this.finished) this.el.eta.textContent = 'done';
    else if (rate > 0) {
      const images = (this.target - this.epoch) * this.count + (this.count - this.imagesInEpoch);
      this.el.eta.textContent = `about ${duration(images / rate + (this.target - this.epoch + 1) * this.testSeconds)} left`;
    }
  }
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '–';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}
