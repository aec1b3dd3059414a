/**
 * Drawing on canvases: the loss chart (hand-drawn: two series on a log axis need no library)
 * and image grids in torchvision's layout.
 */
import { throttledRedraw } from './redraw';
import { makeGrid } from '../io/grid';

const COLORS = { train: '#2f6fdf', test: '#e8590c', axis: '#667', grid: '#e3e5ea', text: '#333' };

/** Redraws at most this often, however fast the losses arrive. */

export interface LossHistory {
  /** Flat (x, y) pairs: x in epochs (fractional for steps), y the loss per image. */
  train: number[];
  test: number[];
}

export class LossChart {
  private history: LossHistory = { train: [], test: [] };
  private epochs = 1;
  private readonly schedule = throttledRedraw(() => this.draw());

  constructor(private readonly canvas: HTMLCanvasElement) {
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  addTrain(x: number, y: number): void {
    this.history.train.push(x, y);
    this.schedule();
  }

  addTest(x: number, y: number): void {
    this.history.test.push(x, y);
    this.schedule();
  }

  /** The x axis runs to the run's last epoch. */
  setEpochs(epochs: number): void {
    this.epochs = epochs;
    this.schedule();
  }

  get data(): LossHistory {
    return { train: [...this.history.train], test: [...this.history.test] };
  }

  set data(h: LossHistory) {
    this.history = { train: [...h.train], test: [...h.test] };
    this.schedule();
  }

  /** Drops the points after epoch `x` (a stopped epoch's steps, when the run continues from its start). */
  truncate(x: number): void {
    const keep = (a: number[]) => {
      let n = 0;
      while (n < a.length && a[n] <= x + 1e-9) n += 2;
      return a.slice(0, n);
    };
    this.history = { train: keep(this.history.train), test: keep(this.history.test) };
    this.schedule();
  }

  clear(): void {
    this.history = { train: [], test: [] };
    this.schedule();
  }

  draw(): void {
    const { canvas } = this;
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (width === 0 || height === 0) return;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    const ctx = canvas.getContext('2d')!;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = '12px system-ui, sans-serif';

    const { train, test } = this.history;
    const ys = [...train.filter((_, i) => i % 2 === 1), ...test.filter((_, i) => i % 2 === 1)].filter(
      (y) => y > 0 && Number.isFinite(y),
    );
    const left = 52,
      right = 12,
      top = 10,
      bottom = 34;
    const plotW = width - left - right;
    const plotH = height - top - bottom;
    if (ys.length === 0) {
      ctx.fillStyle = COLORS.axis;
      ctx.fillText('The loss appears here once training starts.', left, top + plotH / 2);
      return;
    }
    const xMax = Math.max(this.epochs, train.at(-2) ?? 0, test.at(-2) ?? 0);
    // Log y: the first steps' loss is ~5× the trained one, and later progress is a few percent.
    let lo = Math.log10(Math.min(...ys));
    let hi = Math.log10(Math.max(...ys));
    if (hi - lo < 0.02) {
      lo -= 0.01;
      hi += 0.01;
    }
    const pad = (hi - lo) * 0.05;
    lo -= pad;
    hi += pad;
    const X = (x: number) => left + (x / xMax) * plotW;
    const Y = (y: number) => top + (1 - (Math.log10(y) - lo) / (hi - lo)) * plotH;

    // Horizontal grid at 1-2-5 steps per decade (every integer multiple when the range is narrow).
    ctx.strokeStyle = COLORS.grid;
    ctx.fillStyle = COLORS.text;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const ticks: number[] = [];
    for (let d = Math.floor(lo); d <= Math.ceil(hi); d++) {
      for (let m = 1; m <= 9; m++) {
        const v = m * 10 ** d;
        if (Math.log10(v) >= lo && Math.log10(v) <= hi) ticks.push(v);
      }
    }
    const shown = ticks.length > 8 ? ticks.filter((v) => /^[125]/.test(String(v))) : ticks;
    for (const v of shown) {
      ctx.beginPath();
      ctx.moveTo(left, Y(v));
      ctx.lineTo(left + plotW, Y(v));
      ctx.stroke();
      ctx.fillText(String(Number(v.toPrecision(3))), left - 6, Y(v));
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const every = Math.max(1, Math.ceil(xMax / 10));
    for (let e = 0; e <= xMax; e += every) ctx.fillText(String(e), X(e), top + plotH + 6);
    ctx.fillText('epoch', left + plotW / 2, top + plotH + 20);
    ctx.save();
    ctx.translate(12, top + plotH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = 'middle';
    ctx.fillText('loss per image', 0, 0);
    ctx.restore();
    ctx.strokeStyle = COLORS.axis;
    ctx.strokeRect(left, top, plotW, plotH);

    ctx.lineWidth = 1.25;
    ctx.strokeStyle = COLORS.train;
    ctx.beginPath();
    for (let i = 0; i < train.length; i += 2)
      (i === 0 ? ctx.moveTo : ctx.lineTo).call(ctx, X(train[i]), Y(train[i + 1]));
    ctx.stroke();
    ctx.strokeStyle = ctx.fillStyle = COLORS.test;
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (let i = 0; i < test.length; i += 2) (i === 0 ? ctx.moveTo : ctx.lineTo).call(ctx, X(test[i]), Y(test[i + 1]));
    ctx.stroke();
    for (let i = 0; i < test.length; i += 2) {
      ctx.beginPath();
      ctx.arc(X(test[i]), Y(test[i + 1]), 3.5, 0, 2 * Math.PI);
      ctx.fill();
    }

    // Legend with the latest values.
    ctx.textAlign = 'right';
    ctx.textBaseline = 'top';
    const last = (a: number[]) => (a.length ? a[a.length - 1].toFixed(2) : '–');
    ctx.fillStyle = COLORS.train;
    ctx.fillText(`train (per step) ${last(train)}`, left + plotW - 8, top + 8);
    ctx.fillStyle = COLORS.test;
    ctx.fillText(`test (per epoch) ${last(test)}`, left + plotW - 8, top + 24);
    ctx.lineWidth = 1;
  }
}

/**
 * Draws `n` images of rows×cols floats in [0, 1] as a grid `nrow` wide, one canvas pixel per
 * image pixel; with 3 channels each image is its R, G and B planes (NCHW) and is drawn in colour.
 */
export function drawGrid(
  canvas: HTMLCanvasElement,
  images: Float32Array,
  n: number,
  rows: number,
  cols: number,
  nrow: number,
  channels = 1,
): void {
  const grid = makeGrid(images, n, rows, cols, nrow, 2, channels);
  canvas.width = grid.width;
  canvas.height = grid.height;
  const ctx = canvas.getContext('2d')!;
  const rgba = ctx.createImageData(grid.width, grid.height);
  const C = grid.channels;
  for (let i = 0; i < grid.width * grid.height; i++) {
    // Grayscale repeats its one value into R, G and B; colour takes each from its own channel.
    for (let c = 0; c < 3; c++) rgba.data[4 * i + c] = grid.pixels[C * i + (C === 3 ? c : 0)];
    rgba.data[4 * i + 3] = 255;
  }
  ctx.putImageData(rgba, 0, 0);
}

/** Empties a grid canvas (after Reset). */
export function clearCanvas(canvas: HTMLCanvasElement): void {
  canvas.getContext('2d')!.clearRect(0, 0, canvas.width, canvas.height);
}
